"""The seed's four SDK samples (examples/*.py, ``import symblctl as symbl``) run as programs.

Each runs as a subprocess against a real symbld (endpoints from SYMBLD_CONTROL/SYMBLD_EVENTS):
the SIP samples dial a real sipp callee that speaks, the mic sample hears speech played into a
private PulseAudio "microphone", and the subscribe sample streams a WAV. Assertions are on the
words the programs print (or that the daemon recorded), and on the summary email.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DaemonProc, events_until_complete, wait_until
from speechgen import PHONE_KEY_WORDS, SENTENCES, in_order, synth, wer
from test_actions import Inbox, free_port, smtp_server, smtp_toml
from test_sdk import require_sip, speaking_callee
from virtmic import VirtMic, missing_tools

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
pytestmark = pytest.mark.timeout(180)


def _portaudio_missing() -> bool:
    try:
        import sounddevice  # noqa: F401
    except OSError:
        return True
    return False


class Rig:
    """One daemon for the module, with an SMTP server and (when possible) a virtual microphone."""

    def __init__(self, daemon: DaemonProc, inbox: Inbox, mic: VirtMic | None) -> None:
        self.daemon, self.inbox, self.mic = daemon, inbox, mic

    def env(self, **extra: str) -> dict[str, str]:
        base = self.mic.env if self.mic is not None else dict(os.environ)
        return {**base, "SYMBLD_CONTROL": self.daemon.control, "SYMBLD_EVENTS": self.daemon.events,
                "PYTHONUNBUFFERED": "1", **extra}

    def run(self, name: str, *args: str, timeout: float = 90, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(EXAMPLES / name), *args], env=self.env(**env),
                              capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    root = tmp_path_factory.mktemp("examples")
    inbox, port = Inbox(), free_port()
    server = smtp_server(inbox, port)
    mic = None
    if not missing_tools() and not _portaudio_missing():
        mic = VirtMic(root / "pulse")
        mic.start()
    d = DaemonProc(root / "d", env=mic.env if mic is not None else None, config=smtp_toml(port))
    try:
        d.start()
        yield Rig(d, inbox, mic)
    finally:
        code = d.stop()
        server.stop()
        if mic is not None:
            mic.stop()
        assert code == 0, f"symbld exited with {code}:\n{d.log()}"


def connection_ids(text: str) -> list[str]:
    return re.findall(r"connectionId=([0-9a-f]{16,})", text)


def heard(rig: Rig, connection_id: str) -> str:
    with rig.daemon.client() as c:
        events = events_until_complete(c, connection_id, timeout=30)
    return " ".join(m["payload"]["content"] for e in events if e["type"] == "message_response"
                    for m in e["data"]["messages"])


def test_subscribe_sample_prints_the_spoken_words(rig: Rig) -> None:
    r = rig.run("subscribe.py", str(synth(SENTENCES[0])))
    assert r.returncode == 0, r.stderr
    assert "printing the first response {'type': 'transcript_response'" in r.stdout
    assert "printing the first response {'type': 'insight_response'" in r.stdout  # "Can you send ...?"
    finals = re.findall(r"'isFinal': True, 'payload': \{'content': '([^']*)'", r.stdout)
    assert finals and wer(SENTENCES[0], " ".join(finals)) <= 0.15, r.stdout[-2000:]
    assert "state=live" in r.stdout  # print(connection)


def test_start_sip_sample_dials_and_stops(rig: Rig, tmp_path: Path) -> None:
    require_sip(rig.daemon.control, rig.daemon.events)
    with speaking_callee(tmp_path) as uri:
        r = rig.run("start_sip.py", SYMBL_SIP_URI=uri, SYMBL_CALL_SECONDS="6")
    assert r.returncode == 0, r.stderr
    printed = [line for line in r.stdout.splitlines() if line.startswith("<symblctl.Connection")]
    first, last = printed[0], printed[-1]  # print(connection) after start_sip, then after stop
    assert "source=sip " + uri in first and "state=live" in first
    assert "state=stopped" in last and re.search(r"conversationId=\d+", last)
    ids = set(connection_ids(r.stdout))
    assert len(ids) == 1
    assert in_order(PHONE_KEY_WORDS, heard(rig, ids.pop()))  # the words G.711 keeps with margin


def test_complete_sample_prints_the_call_and_emails_the_summary(rig: Rig, tmp_path: Path) -> None:
    require_sip(rig.daemon.control, rig.daemon.events)
    before = len(rig.inbox.messages)
    with speaking_callee(tmp_path) as uri:
        # Runs until the callee hangs up (after speaking): subscribe keeps the program alive, like the SDK's.
        r = rig.run("complete_sample.py", SYMBL_SIP_URI=uri, SYMBL_EMAIL="ann@example.com")
    assert r.returncode == 0, r.stderr
    finals = re.findall(r"'isFinal': True, 'payload': \{'content': '([^']*)'", r.stdout)
    assert in_order(PHONE_KEY_WORDS, " ".join(finals)), r.stdout[-2000:]
    messages = rig.inbox.wait_for(before + 1, timeout=30)
    _, rcpts, msg = messages[-1]
    assert rcpts == ["ann@example.com"]
    assert "report" in msg.get_body(("plain",)).get_content().lower()


def test_send_audio_from_mic_sample_hears_the_microphone(rig: Rig) -> None:
    if rig.mic is None:
        r = rig.run("send_audio_from_mic.py", timeout=30)
        assert r.returncode != 0 and "DaemonError" in r.stderr and "[device_unavailable]" in r.stderr, r.stderr
        pytest.skip("no pulseaudio/libportaudio2: checked the clear error only")
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / "send_audio_from_mic.py")], env=rig.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        with rig.daemon.client() as c:  # wait for the sample's connection to be live with the mic attached
            def live() -> bool:
                assert proc.poll() is None, proc.stderr.read()  # type: ignore[union-attr]
                return bool(c.status()["live"] and rig.mic.source_outputs())

            wait_until("the sample's connection is live on the mic", live, 20)
        # No wait for its subscribe: the SDK delivers what was published before it from history.
        rig.mic.play(synth(SENTENCES[4]))
        wait_until("a message printed by the sample",
                   lambda: any("got this response from callback" in x for x in lines), 30)
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the sample stops the connection and exits
        out_rc = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    reader.join(5)
    stderr = proc.stderr.read() if proc.stderr else ""  # type: ignore[union-attr]
    assert out_rc == 0, stderr
    said = " ".join(re.findall(r"'payload': \{'content': '([^']*)'", "".join(lines)))
    assert said and wer(SENTENCES[4], said) <= 0.2, "".join(lines)[-2000:]
