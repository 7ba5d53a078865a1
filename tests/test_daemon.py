"""The daemon as a process: control protocol, bad input, file/push/stdin sessions, lifecycle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import zmq
from conftest import DaemonProc, events_until_complete, messages
from speechgen import EIGHT_KHZ_WORDS, SENTENCES, in_order, pcm16, synth, wav_file, wer

from symblctl.client import Client, DaemonError, DaemonUnavailable

TWO = SENTENCES[:2]


def _raw(daemon: DaemonProc, *frames: bytes, timeout_ms: int = 5000) -> dict:
    """One request over a bare REQ socket, as any ZeroMQ client would send it."""
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(daemon.control)
    try:
        s.send_multipart(list(frames))
        assert s.poll(timeout_ms), "no reply from symbld"
        return json.loads(s.recv())
    finally:
        s.close()


def _file_of(sentences: list[str], tmp: Path, rate: int = 16000, channels: int = 1) -> Path:
    """A WAV of the sentences with a second of silence between, at any rate/channel count."""
    gap = np.zeros(16000, np.int16)
    parts = []
    for s in sentences:
        parts += [np.frombuffer(pcm16(synth(s)), np.int16), gap]
    mono = np.concatenate(parts)
    if rate != 16000:
        import soxr

        mono = (soxr.resample(mono.astype(np.float32) / 32768, 16000, rate) * 32767).astype(np.int16)
    data = np.repeat(mono[:, None], channels, axis=1)
    return wav_file(tmp / f"speech-{rate}-{channels}.wav", data.astype("<i2").tobytes(), rate, channels)


# -- the protocol ---------------------------------------------------------------------------------

def test_ping_and_describe_over_bare_req(daemon: DaemonProc) -> None:
    r = _raw(daemon, b'{"v": 1, "id": "p1", "cmd": "ping"}')
    assert r == {"v": 1, "id": "p1", "ok": True, "result": r["result"]}
    assert r["result"]["pong"] is True
    d = _raw(daemon, b'{"v": 1, "id": "d1", "cmd": "describe"}')["result"]
    assert d["protocol"] == 1 and d["defaultEngine"] == "local"
    assert d["engines"]["local"]["name"] == "local"
    assert d["engines"]["local"]["model"] == "tiny.en"  # which model decodes
    assert {"transcript_response", "message_response", "insight_response"} <= set(d["eventTypes"])
    assert d["endpoints"] == {"control": daemon.control, "events": daemon.events}
    assert d["audioSources"]["file"]["available"] and d["audioSources"]["push"]["available"]
    assert {"ping", "describe", "start", "stop", "status", "get", "subscribe", "history", "shutdown"} <= {
        c["name"] for c in d["commands"]}
    assert "unknown_connection" in d["errorCodes"]


@pytest.mark.parametrize(("frames", "code"), [
    ([b"this is not json"], "bad_json"),
    ([b"\xff\xfe\x00garbage"], "bad_json"),
    ([b"[1, 2, 3]"], "bad_json"),
    ([b'{"v": 1, "id": "x"}'], "bad_request"),
    ([b'{"v": 1, "id": "x", "cmd": "fly"}'], "unknown_command"),
    ([b'{"v": 1, "id": "x", "cmd": "get", "args": {}}'], "bad_request"),
    ([b'{"v": 1, "id": "x", "cmd": "get", "args": {"connectionId": 7}}'], "bad_request"),
    ([b'{"v": 1, "id": "x", "cmd": "history", "args": {"connectionId": "a", "afterSeq": "zero"}}'], "bad_request"),
    ([b'{"v": 1, "id": "x", "cmd": "get", "args": {"connectionId": "nope"}}'], "unknown_connection"),
    ([b'{"v": 1, "id": "x", "cmd": "stop", "args": {"connectionId": "nope"}}'], "unknown_connection"),
    ([b'{"v": 9, "id": "x", "cmd": "ping"}'], "unsupported_version"),
    ([b'{"v": 1, "id": "x", "cmd": "ping"}', b"a", b"b"], "bad_request"),
    ([b'{"v": 1, "id": "x", "cmd": "start", "args": {"source": {"type": "file", "path": "/nonexistent.wav"}}}'],
     "bad_request"),
    ([b'{"v": 1, "id": "x", "cmd": "start", "args": {"source": {"type": "laser"}}}'], "bad_request"),
    ([b'{"v": 1, "id": "x", "cmd": "start", "args": {"source": {"type": "push"}, "insightTypes": ["gossip"]}}'],
     "bad_request"),
    ([b'{"v": 1, "id": "x", "cmd": "start", "args": {"source": {"type": "push", "sampleRate": 12345}}}'],
     "bad_request"),
    ([b'{"v": 1, "id": "x", "cmd": "start", "args": {"source": {"type": "push"}, "engine": "cloud9"}}'],
     "bad_request"),
])
def test_bad_requests_get_one_clear_typed_error(daemon: DaemonProc, frames: list[bytes], code: str) -> None:
    r = _raw(daemon, *frames)
    assert r["ok"] is False
    assert r["error"]["code"] == code, r
    assert r["error"]["message"]
    if frames[0].startswith(b'{"v": 1, "id": "x"'):
        assert r["id"] == "x"  # the reply carries the request's id whenever it can be read
    assert _raw(daemon, b'{"id": "after", "cmd": "ping"}')["ok"]  # and the daemon carries on


def test_non_audio_file_is_refused_at_start(daemon: DaemonProc, tmp_path: Path, client: Client) -> None:
    bogus = tmp_path / "notes.wav"
    bogus.write_text("these are not samples\n" * 100)
    with pytest.raises(DaemonError) as e:
        client.start(source={"type": "file", "path": str(bogus)})
    assert e.value.code == "bad_request" and "not a readable audio file" in e.value.message


def test_huge_and_deep_requests_are_refused(daemon: DaemonProc) -> None:
    r = _raw(daemon, b'{"cmd": "ping", "pad": "' + b"x" * (2 << 20) + b'"}')
    assert r["error"]["code"] == "too_large"
    deep = b'{"id": "d", "cmd": "ping", "args": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    r = _raw(daemon, deep)
    assert r["error"]["code"] in ("bad_json", "bad_request")
    assert _raw(daemon, b'{"cmd": "ping"}')["ok"]


def test_client_vanishing_mid_request_does_not_hurt(daemon: DaemonProc) -> None:
    ctx = zmq.Context.instance()
    for _ in range(20):
        s = ctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(daemon.control)
        s.send(b'{"id": "gone", "cmd": "describe"}')
        s.close()  # gone before the reply
    assert _raw(daemon, b'{"cmd": "ping"}')["ok"]


# -- sessions with speech ------------------------------------------------------------------------------

@pytest.mark.speech
def test_file_session_any_rate_transcribes_in_order(daemon: DaemonProc, client: Client, tmp_path: Path) -> None:
    path = _file_of(TWO, tmp_path, rate=44100, channels=2)
    conn = client.start(source={"type": "file", "path": str(path), "realtime": False})
    assert conn["state"] == "live" and conn["conversationId"].isdigit()
    events = events_until_complete(client, conn["connectionId"])
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), "seq must be 1, 2, 3, … with no gap"
    assert events[0]["type"] == "connection_started"
    assert [e["type"] for e in events[-2:]] == ["connection_stopped", "conversation_completed"]
    assert wer(TWO, messages(events)) <= 0.2, messages(events)
    # Each utterance: its final transcript comes before its message_response.
    finals = [e for e in events if e["type"] == "transcript_response" and e["data"]["isFinal"]]
    msgs = [e for e in events if e["type"] == "message_response"]
    assert len(finals) >= 2 and len(msgs) >= 2
    assert finals[0]["seq"] < msgs[0]["seq"]
    m = msgs[0]["data"]["messages"][0]
    assert {"id", "from", "payload", "channel", "metadata", "dismissed", "duration"} <= set(m)
    assert isinstance(m["metadata"]["words"], str) and json.loads(m["metadata"]["words"])
    for e in events:
        assert e["connectionId"] == conn["connectionId"] and e["conversationId"] == conn["conversationId"]


@pytest.mark.speech
def test_realtime_file_gives_interims_then_final(daemon: DaemonProc, client: Client, tmp_path: Path) -> None:
    path = _file_of([SENTENCES[4]], tmp_path)
    conn = client.start(source={"type": "file", "path": str(path)})  # paced in real time
    with client.events(conn["connectionId"]) as stream:
        events = list(stream)
    kinds = [(e["type"], e["data"].get("isFinal")) for e in events if e["type"] in ("transcript_response",
                                                                                       "message_response")]
    first_final = kinds.index(("transcript_response", True))
    assert ("transcript_response", False) in kinds[:first_final], f"no interim before the final: {kinds}"
    assert kinds.index(("message_response", None)) > first_final
    assert wer(SENTENCES[4], messages(events)) <= 0.2


@pytest.mark.speech
def test_push_audio_at_8khz_and_stop_loses_nothing(daemon: DaemonProc, client: Client) -> None:
    import soxr

    pcm = b"".join(pcm16(synth(s)) + bytes(16000) for s in TWO)
    x = np.frombuffer(pcm, np.int16).astype(np.float32) / 32768
    pcm8 = (soxr.resample(x, 16000, 8000) * 32767).astype("<i2").tobytes()
    conn = client.start(source={"type": "push", "sampleRate": 8000})
    cid = conn["connectionId"]
    for i in range(0, len(pcm8), 1600):
        client.send_audio(cid, pcm8[i:i + 1600], sample_rate=8000)
    with pytest.raises(DaemonError) as e:
        client.send_audio(cid, b"\x00" * 101)
    assert e.value.code == "bad_request"  # half a sample
    with pytest.raises(DaemonError) as e:
        client.send_audio(cid, b"\x00" * 100, sample_rate=16000)
    assert e.value.code == "bad_request" and "8000" in e.value.message
    final = client.stop(cid)  # at once: everything already pushed must still be transcribed
    assert final["state"] == "stopped" and final["conversationId"] == conn["conversationId"]
    events = client.all_history(cid)
    # Nothing lost, in order: the words of both sentences that 8 kHz keeps with margin (EIGHT_KHZ_WORDS,
    # checked by test_fixture_margin.py), the first sentence's before the second's.
    assert in_order(EIGHT_KHZ_WORDS[0] + EIGHT_KHZ_WORDS[1], " ".join(messages(events))), messages(events)
    with pytest.raises(DaemonError) as e:
        client.stop(cid)
    assert e.value.code == "invalid_state"
    with pytest.raises(DaemonError) as e:
        client.send_audio(cid, b"\x00\x00")
    assert e.value.code == "invalid_state"


@pytest.mark.speech
def test_symblctl_stdin_session(daemon: DaemonProc) -> None:
    pcm = pcm16(synth(SENTENCES[3]))
    out = subprocess.run(
        [sys.executable, "-m", "symblctl.cli", "--control", daemon.control, "--events", daemon.events, "--json",
         "start", "--stdin"], input=pcm, capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()
    events = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert events[-1]["type"] == "conversation_completed"
    assert wer(SENTENCES[3], messages(events)) <= 0.2, messages(events)


def test_other_connections_survive_a_failing_one(daemon: DaemonProc, client: Client) -> None:
    a = client.start(source={"type": "push"})
    with pytest.raises(DaemonError):
        client.start(source={"type": "file", "path": "/dev/null"})
    _raw(daemon, b"\x00\x01garbage")
    st = client.get(a["connectionId"])
    assert st["state"] == "live"
    client.stop(a["connectionId"])


def test_status_and_get(daemon: DaemonProc, client: Client) -> None:
    conn = client.start(source={"type": "push"}, config={"meetingTitle": "Standup"})
    st = client.status()
    mine = [c for c in st["connections"] if c["connectionId"] == conn["connectionId"]]
    assert mine and mine[0]["state"] == "live" and mine[0]["meetingTitle"] == "Standup"
    assert st["live"] >= 1
    assert st["models"]["local"] == "tiny.en"
    client.stop(conn["connectionId"])
    assert client.get(conn["connectionId"])["state"] == "stopped"


def test_client_chosen_connection_id(daemon: DaemonProc, client: Client) -> None:
    conn = client.start(source={"type": "push"}, connectionId="my-own-id-123")
    assert conn["connectionId"] == "my-own-id-123"
    with pytest.raises(DaemonError) as e:
        client.start(source={"type": "push"}, connectionId="my-own-id-123")
    assert e.value.code == "bad_request"
    client.stop("my-own-id-123")


# -- the process -----------------------------------------------------------------------------------

def test_a_client_left_in_a_garbage_cycle_is_collected(daemon: DaemonProc) -> None:
    """A Client that a traceback (or anything) holds in a cycle is collected: with a context of its own, the
    garbage collector hung in Context.term() for ever. In a child process, so a hang fails on its timeout."""
    code = ("import gc, sys; from symblctl.client import Client\n"
            "c = Client(sys.argv[1], sys.argv[2]); c.ping(); c.me = c; del c\n"
            "gc.collect(); print('collected')")
    r = subprocess.run([sys.executable, "-c", code, daemon.control, daemon.events], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "collected", r.stderr


def test_symblctl_without_daemon_fails_fast(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "symblctl.cli", "--control", f"ipc://{tmp_path}/none",
                          "status"], capture_output=True, timeout=30)  # a deadline for a hang
    assert out.returncode == 3
    assert f"symbld is not running at ipc://{tmp_path}/none" in out.stderr.decode()
    with pytest.raises(DaemonUnavailable):
        Client(f"ipc://{tmp_path}/none").ping()


def test_second_daemon_refuses_and_stale_socket_does_not_block(tmp_path: Path) -> None:
    first = DaemonProc(tmp_path / "d").start()
    try:
        second = subprocess.run(first.command(), capture_output=True, timeout=120, env=first.env)
        assert second.returncode == 1
        assert "already running" in second.stderr.decode() and first.control in second.stderr.decode()
        assert Client(first.control, first.events).ping()["pong"]  # the first is untouched
        first.kill()  # SIGKILL leaves the socket files behind
        assert (first.run_dir / "control").exists()
        first.start()
        assert Client(first.control, first.events).ping()["pid"] == first.proc.pid
    finally:
        first.kill()


def test_runtime_dir_is_private(daemon: DaemonProc) -> None:
    assert (daemon.run_dir.stat().st_mode & 0o777) == 0o700
    assert (daemon.state_dir / "journal").stat().st_mode & 0o077 == 0


@pytest.mark.speech
def test_sigterm_flushes_finals_and_exits_zero(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path / "d").start()
    try:
        c = d.client()
        conn = c.start(source={"type": "push"})
        c.send_audio(conn["connectionId"], pcm16(synth(SENTENCES[0])))  # no end, no stop: SIGTERM must flush
        c.close()
        assert d.stop(signal.SIGTERM) == 0
        assert not (d.run_dir / "control").exists()
        journal = d.state_dir / "journal" / f"{conn['connectionId']}.jsonl"
        events = [json.loads(line) for line in journal.read_text().splitlines()]
        assert events[-1]["type"] == "conversation_completed"
        assert wer(SENTENCES[0], messages(events)) <= 0.2
    finally:
        d.kill()


def test_requests_answered_while_a_slow_stop_runs(daemon: DaemonProc, client: Client) -> None:
    conn = client.start(source={"type": "push"})
    client.send_audio(conn["connectionId"], pcm16(synth(SENTENCES[5])))
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(daemon.client().stop(conn["connectionId"])))
    t.start()
    pings = 0
    while t.is_alive() and pings < 50:
        client.ping()
        pings += 1
    t.join(60)
    assert result["state"] == "stopped"
    assert pings >= 1


def test_config_precedence_file_env_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from symbld.config import load

    cfg = tmp_path / "c.toml"
    cfg.write_text('max_connections = 3\ndefault_engine = "local"\ncontrol = "ipc:///tmp/from-file"\n'
                   '[mic]\ndevice = "x"\n')
    monkeypatch.setenv("SYMBLD_CONTROL", "ipc:///tmp/from-env")
    c = load(str(cfg), {})
    assert c["max_connections"] == 3 and c["control"] == "ipc:///tmp/from-env" and c["mic"]["device"] == "x"
    c = load(str(cfg), {"control": "ipc:///tmp/from-flag"})
    assert c["control"] == "ipc:///tmp/from-flag"
    monkeypatch.delenv("SYMBLD_CONTROL")
    assert load(str(cfg), {})["control"] == "ipc:///tmp/from-file"
    assert os.environ.get("SYMBLD_CONTROL") is None
