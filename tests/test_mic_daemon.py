"""The microphone through the real daemon and a real (private) PulseAudio server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DaemonProc, messages, wait_for_events, wait_until
from speechgen import SENTENCES, synth, wer
from virtmic import VirtMic, missing_tools

from symblctl.client import DaemonError

pytestmark = pytest.mark.skipif(bool(missing_tools()), reason=f"PulseAudio tools missing: {missing_tools()}")


@pytest.fixture(scope="module")
def mic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtMic]:
    m = VirtMic(tmp_path_factory.mktemp("pulse"))
    m.start()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def mic_daemon(mic: VirtMic, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    env = {k: v for k, v in mic.env.items() if k in ("XDG_RUNTIME_DIR", "PULSE_RUNTIME_PATH", "PULSE_SERVER",
                                                    "XDG_CONFIG_HOME")}
    d = DaemonProc(tmp_path_factory.mktemp("symbld-mic"), env=env).start()
    yield d
    assert d.stop() == 0, d.log()


@pytest.mark.speech
def test_symblctl_start_mic_follows_and_ctrl_c_stops(mic: VirtMic, mic_daemon: DaemonProc) -> None:
    wav = synth(SENTENCES[0])
    proc = subprocess.Popen([sys.executable, "-m", "symblctl.cli", "--control", mic_daemon.control, "--events",
                             mic_daemon.events, "--json", "start", "--mic"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    lines: list[bytes] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, b"")), daemon=True)
    reader.start()
    try:
        wait_until("the connection started and the mic records",
                   lambda: any(b'"connection_started"' in x for x in lines) and mic.source_outputs(), 60)
        mic.play(wav)
        wait_until("a message printed", lambda: any(b'"message_response"' in x for x in lines), 60)
        proc.send_signal(signal.SIGINT)  # Ctrl-C: stop cleanly, print what the stop flushed
        proc.wait(60)
        reader.join(10)
        err = proc.stderr.read() if proc.stderr else b""
    finally:
        proc.kill()
    assert proc.returncode == 130, err.decode()  # interrupted, after the connection was stopped
    events = [json.loads(line) for line in b"".join(lines).decode().splitlines() if line.startswith("{")]
    assert wer(SENTENCES[0], messages(events)) <= 0.25, messages(events)
    assert events[0]["type"] == "connection_started" and events[0]["data"]["source"]["kind"] == "mic"
    assert events[-1]["type"] == "conversation_completed"


@pytest.mark.speech
def test_two_connections_share_one_mic_and_pause_resume(mic: VirtMic, mic_daemon: DaemonProc) -> None:
    with mic_daemon.client() as c:
        a = c.start(source={"type": "mic"})["connectionId"]
        b = c.start(source={"type": "mic"})["connectionId"]
        assert c.request("pause", connectionId=b)["state"] == "paused"
        mic.play(synth(SENTENCES[3]))
        wait_for_events(c, a, lambda ev: bool(messages(ev)))
        assert c.request("resume", connectionId=b)["state"] == "capturing"
        mic.play(synth(SENTENCES[14]))
        ev_a = wait_for_events(c, a, lambda ev: len(messages(ev)) >= 2)
        ev_b = wait_for_events(c, b, lambda ev: bool(messages(ev)))
        c.stop(a)
        c.stop(b)
        ev_b = c.all_history(b)
    assert wer([SENTENCES[3], SENTENCES[14]], messages(ev_a)) <= 0.25, messages(ev_a)
    # b was paused during the first sentence: it heard only the second.
    assert wer(SENTENCES[14], messages(ev_b)) <= 0.25, messages(ev_b)
    assert "status" not in " ".join(messages(ev_b)).lower()


@pytest.mark.speech
def test_device_lost_and_back_keeps_the_connection(mic: VirtMic, mic_daemon: DaemonProc) -> None:
    with mic_daemon.client() as c:
        cid = c.start(source={"type": "mic"})["connectionId"]
        mic.play(synth(SENTENCES[1]))
        wait_for_events(c, cid, lambda ev: bool(messages(ev)))
        mic.kill()  # the audio server dies
        wait_for_events(c, cid, lambda ev: any(e["type"] == "device_lost" for e in ev), timeout=20)
        assert c.get(cid)["state"] == "live"
        mic.start()  # and comes back
        wait_for_events(c, cid, lambda ev: any(e["type"] == "device_restored" for e in ev), timeout=20)
        mic.play(synth(SENTENCES[6]))
        events = wait_for_events(c, cid, lambda ev: len(messages(ev)) >= 2, timeout=30)
        c.stop(cid)
    assert wer([SENTENCES[1], SENTENCES[6]], messages(events)) <= 0.25, messages(events)


def test_devices_lists_the_default_input(mic_daemon: DaemonProc) -> None:
    with mic_daemon.client() as c:
        devs = c.request("devices")["devices"]
    assert any(d["default"] for d in devs)


def test_no_audio_server_gives_one_clear_error_and_files_still_work(tmp_path: Path) -> None:
    env = {"PULSE_SERVER": f"unix:{tmp_path}/no-such-server", "XDG_RUNTIME_DIR": str(tmp_path / "xdg"),
           "PULSE_RUNTIME_PATH": str(tmp_path / "xdg" / "pulse")}
    d = DaemonProc(tmp_path / "d", env=env).start()
    try:
        with d.client() as c:
            with pytest.raises(DaemonError) as e:  # at once, within the client's timeout (no retry)
                c.start(source={"type": "mic"})
            assert e.value.code == "device_unavailable"
            assert "PulseAudio" in e.value.message or "audio server" in e.value.message
            cid = c.start(source={"type": "file", "path": str(synth(SENTENCES[2])), "realtime": False})
            c.stop(cid["connectionId"])
            assert c.ping()["pong"]
    finally:
        d.kill()
