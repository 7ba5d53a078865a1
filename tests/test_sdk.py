"""The Symbl-SDK-shaped library (symblctl.Streaming / Telephony / Connection) against a real symbld.

Speech is espeak-ng pushed as PCM (or spoken by a real sipp callee over RTP); assertions are on
the words recognised and on the exact event sequence the daemon published.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DaemonProc, events_until_complete, free_rtp_port, udp_port_taken, wait_until
from speechgen import PHONE_KEY_WORDS, PHONE_SENTENCE, SENTENCES, in_order, pcm16, phone_audio, synth, wer

import symblctl
from symblctl import Connection, DaemonError, DaemonUnavailable

SIPP_SCENARIO = Path(__file__).parent / "sipp" / "uas_speak_pcmu.xml"
SIP_SENTENCE = PHONE_SENTENCE


@pytest.fixture(scope="module")
def api(daemon: DaemonProc) -> symblctl.StreamingApi:
    return symblctl.StreamingApi(control=daemon.control, events=daemon.events)


@pytest.fixture
def env_endpoints(daemon: DaemonProc, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the module-level symblctl.Streaming/Telephony/stop at the test daemon."""
    monkeypatch.setenv("SYMBLD_CONTROL", daemon.control)
    monkeypatch.setenv("SYMBLD_EVENTS", daemon.events)


def texts(messages: list[dict[str, Any]]) -> str:
    return " ".join(m["payload"]["content"] for r in messages for m in r["messages"])


class Recorder:
    """Callbacks that record what they get (from the dispatch thread)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.got: list[tuple[str, Any]] = []
        self.delay = delay
        self.done = threading.Event()

    def on(self, name: str) -> Any:
        def callback(payload: Any) -> None:
            if self.delay:
                time.sleep(self.delay)
            self.got.append((name, payload))
            if name == "conversation_completed" or (name == "*" and payload["type"] == "conversation_completed"):
                self.done.set()
        return callback

    def of(self, name: str) -> list[Any]:
        return [p for n, p in self.got if n == name]


# -- streaming -------------------------------------------------------------------------------------
def test_stream_subscribe_send_stop(api: symblctl.StreamingApi) -> None:
    conn = api.start_connection(insight_types=["question", "action_item"], config={"meetingTitle": "SDK test"},
                                speaker={"userId": "jane@example.com", "name": "Jane"})
    rec = Recorder()
    conn.subscribe({k: rec.on(k) for k in ("message_response", "insight_response", "transcript_response",
                                           "connection_started", "conversation_completed")})  # returns at once
    assert conn.state == "live" and len(conn.connectionId) >= 16 and conn.conversationId
    conn.send_audio(pcm16(synth(SENTENCES[0])))
    same = conn.stop()
    assert same is conn and conn.state == "stopped" and conn.info["audioSeconds"] > 2
    assert conn.wait(30) and rec.done.is_set()
    assert wer(SENTENCES[0], texts(rec.of("message_response"))) <= 0.15
    msg = rec.of("message_response")[0]
    assert msg["type"] == "message_response" and msg["messages"][0]["from"]["name"] == "Jane"  # Symbl's frame
    assert any(i["type"] == "question" for r in rec.of("insight_response") for i in r["insights"])
    assert any(t["isFinal"] for t in rec.of("transcript_response"))
    assert rec.of("connection_started")[0]["connectionId"] == conn.connectionId  # lifecycle: our payload
    completed = rec.of("conversation_completed")
    assert [{k: v for k, v in c.items() if k != "summaryUrl"} for c in completed] == [
        {"conversationId": conn.conversationId, "connectionId": conn.connectionId}]
    assert completed[0]["summaryUrl"].startswith("http://127.0.0.1:")  # its summary page: test_summary_page.py
    conn.close()


def test_events_before_subscribe_are_delivered(api: symblctl.StreamingApi, daemon: DaemonProc) -> None:
    conn = api.start_connection()
    conn.send_audio(pcm16(synth(SENTENCES[1])))
    conn.stop()  # every event is published before we subscribe
    rec = Recorder()
    conn.subscribe({"*": rec.on("*"), "message_response": rec.on("message_response")})
    assert rec.done.wait(20)
    with daemon.client() as c:
        published = events_until_complete(c, conn.connectionId)
    assert [e["seq"] for _, e in rec.got if isinstance(e, dict) and "seq" in e] == [e["seq"] for e in published]
    assert wer(SENTENCES[1], texts(rec.of("message_response"))) <= 0.15
    conn.close()


def test_late_slow_subscriber_gets_every_event_once_in_order(api: symblctl.StreamingApi,
                                                             daemon: DaemonProc) -> None:
    """Subscribe while audio flows, with a callback slower than the events: nothing lost or doubled."""
    conn = api.start_connection()
    first, rest = pcm16(synth(SENTENCES[2])), [pcm16(synth(s)) for s in SENTENCES[3:6]]
    conn.send_audio(first)
    with daemon.client() as c:  # let some events be published before anyone listens
        wait_until("three events published", lambda: c.get(conn.connectionId)["lastSeq"] >= 3, 20, every=0.05)
    rec = Recorder(delay=0.1)
    conn.subscribe({"*": rec.on("*")})
    for pcm in rest:  # keeps publishing (interim transcripts, messages, insights) while the callback lags
        for i in range(0, len(pcm), 3200):
            conn.send_audio(pcm[i:i + 3200])
    conn.stop()
    assert conn.wait(60), "the dispatcher did not reach conversation_completed"
    with daemon.client() as c:
        published = events_until_complete(c, conn.connectionId)
    got = [e["seq"] for _, e in rec.got]
    assert got == [e["seq"] for e in published] == list(range(1, len(published) + 1))
    assert [e["type"] for _, e in rec.got] == [e["type"] for e in published]
    assert len(published) > 10 and conn.delivered == len(published)
    conn.close()


def test_callback_errors_do_not_stop_dispatch(api: symblctl.StreamingApi) -> None:
    conn = api.start_connection()
    rec = Recorder()

    def broken(_: Any) -> None:
        raise RuntimeError("a bug in the user's callback")

    conn.subscribe({"transcript_response": broken, "message_response": rec.on("message_response")})
    conn.subscribe({"conversation_completed": rec.on("conversation_completed")})  # adds, keeps the others
    conn.send_audio(pcm16(synth(SENTENCES[6])))
    conn.stop()
    assert conn.wait(30) and rec.done.is_set()
    assert conn.callback_errors >= 1 and conn.dispatch_error is None
    assert wer(SENTENCES[6], texts(rec.of("message_response"))) <= 0.25
    conn.close()


def test_subscribe_replaces_a_callback(api: symblctl.StreamingApi) -> None:
    conn = api.start_connection()
    old, new = Recorder(), Recorder()
    conn.subscribe({"message_response": old.on("m")})
    conn.subscribe({"message_response": new.on("m"), "conversation_completed": new.on("conversation_completed")})
    conn.send_audio(pcm16(synth(SENTENCES[7])))
    conn.stop()
    assert conn.wait(30)
    assert new.of("m") and not old.of("m")
    conn.close()


def test_symbl_message_callback_shape(api: symblctl.StreamingApi) -> None:
    """The streaming SDK's ``message`` key: recognition_result frames read as in Symbl's docs sample."""
    conn = api.start_connection()
    rec = Recorder()
    conn.subscribe({"message": rec.on("message"), "conversation_completed": rec.on("conversation_completed")})
    conn.send_audio(pcm16(synth(SENTENCES[8])))
    conn.stop()
    assert conn.wait(30)
    finals = [r["message"]["punctuated"]["transcript"] for r in rec.of("message")
              if r["message"]["type"] == "recognition_result" and r["message"]["isFinal"]]
    assert wer(SENTENCES[8], " ".join(finals)) <= 0.15
    assert rec.of("message")[-1]["message"]["type"] == "conversation_completed"
    conn.close()


def test_repr_and_module_level_stop(env_endpoints: None) -> None:
    conn = symblctl.Streaming.start_connection(config={"speechRecognition": {"sampleRateHertz": 8000}})
    text = str(conn)
    assert conn.connectionId in repr(conn) and conn.conversationId in text and "state=live" in text
    assert "8000 Hz" in repr(conn)  # the pushed rate follows config.speechRecognition.sampleRateHertz
    final = symblctl.stop(conn.connectionId)
    assert isinstance(final, Connection) and final.conversationId == conn.conversationId
    assert final.state == "stopped" and "state=stopped" in repr(final)
    again = symblctl.stop(conn.connectionId)  # already stopped: the final object, not an error
    assert again.state == "stopped" and again.conversationId == conn.conversationId
    assert conn.stop().state == "stopped"  # the Connection's own stop is idempotent too
    with pytest.raises(DaemonError) as unknown:
        symblctl.stop("0123456789abcdef")
    assert unknown.value.code == "unknown_connection"
    for c in (conn, final, again):
        c.close()


def test_bad_arguments_fail_at_start(api: symblctl.StreamingApi) -> None:
    with pytest.raises(DaemonError) as bad_action:
        api.start_connection(actions=[{"invokeOn": "stop", "name": "sendSMS", "parameters": {"emails": ["a@b.c"]}}])
    assert bad_action.value.code == "bad_request" and "sendSMS" in bad_action.value.message
    with pytest.raises(DaemonError) as bad_mail:
        api.start_connection(actions=[{"invokeOn": "stop", "name": "sendSummaryEmail",
                                       "parameters": {"emails": ["nope"]}}])
    assert "at `$.actions[0].parameters.emails[0]`" in bad_mail.value.message
    with pytest.raises(TypeError):
        api.start_connection(config="en-US")  # type: ignore[arg-type]
    with pytest.raises(DaemonError) as bad_insight:
        api.start_connection(insight_types=["gossip"])
    assert bad_insight.value.code == "bad_request"


def test_send_audio_from_mic_without_a_mic_is_a_clear_error(api: symblctl.StreamingApi, daemon: DaemonProc) -> None:
    """This daemon has no audio server: the error says so (test_examples speaks into a virtual mic)."""
    with daemon.client() as c:
        has_attach = any(cmd["name"] == "attach_mic" for cmd in c.describe()["commands"])
    conn = api.start_connection()
    try:
        with pytest.raises(DaemonError) as refused:
            conn.send_audio_from_mic()
        if has_attach:
            assert refused.value.code == "device_unavailable" and refused.value.message
        else:
            assert refused.value.code == "unknown_command" and "attach_mic" in refused.value.message
    finally:
        conn.stop()
        conn.close()


def test_daemon_gone_raises_instead_of_hanging(fresh_daemon: DaemonProc) -> None:
    api = symblctl.StreamingApi(control=fresh_daemon.control, events=fresh_daemon.events, timeout=2.0)
    conn = api.start_connection()
    rec = Recorder()
    conn.subscribe({"message_response": rec.on("m"), "error": rec.on("error")})
    fresh_daemon.kill()  # SIGKILL: the socket files stay behind, nothing answers
    for call in (conn.stop, lambda: conn.send_audio(b"\0" * 3200), conn.refresh,
                 lambda: api.start_connection()):
        with pytest.raises(DaemonUnavailable, match="not running"):
            call()  # within the api's 2 s timeout and one retry; a hang would meet the test's timeout
    assert conn.wait(10), "the dispatch thread should notice the daemon is gone and end"
    assert rec.of("error")[0]["error"]["code"] == "unavailable" and conn.dispatch_error is not None
    conn.close(timeout=2)
    gone = symblctl.StreamingApi(control="ipc:///nonexistent/symbld/control", events="ipc:///nonexistent/e")
    with pytest.raises(DaemonUnavailable, match="not running"):
        gone.start_connection()  # no socket file: refused without waiting


# -- telephony ---------------------------------------------------------------------------------------
def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_sip(control: str, events: str) -> None:
    if shutil.which("sipp") is None:
        pytest.skip("sipp (Debian package sip-tester) is not installed")
    with symblctl.Client(control, events) as c:
        sip = c.describe()["audioSources"].get("sip", {})
    assert sip.get("available"), f"this symbld has no telephony: {sip.get('reason', 'sip not listed')}"


@contextlib.contextmanager
def speaking_callee(workdir: Path) -> Iterator[str]:
    """A real sipp UAS on loopback that answers, says SIP_SENTENCE over RTP (PCMU) and hangs up.

    Yields the SIP URI to dial."""
    workdir.mkdir(parents=True, exist_ok=True)
    phone_audio(workdir / "speech.ulaw")
    port = free_udp_port()
    proc = subprocess.Popen(["sipp", "-sf", str(SIPP_SCENARIO), "-i", "127.0.0.1", "-p", str(port),
                             "-mi", "127.0.0.1", "-mp", str(free_rtp_port()), "-m", "1", "-nostdin", "-timeout", "30s",
                             "-default_behaviors", "all,-abortunexp"],
                            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until("sipp binds its SIP port", lambda: udp_port_taken(port) or proc.poll() is not None, 10)
        yield f"sip:8002@127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()


def test_start_sip_hears_the_callee(daemon: DaemonProc, tmp_path: Path) -> None:
    require_sip(daemon.control, daemon.events)
    tel = symblctl.TelephonyApi(control=daemon.control, events=daemon.events)
    with speaking_callee(tmp_path) as uri:
        conn = tel.start_sip(uri=uri, data={"session": {"name": "Phone sync"}})
        rec = Recorder()
        conn.subscribe({k: rec.on(k) for k in ("message_response", "call_answered", "conversation_completed")})
        assert conn.info["meetingTitle"] == "Phone sync" and "sip" in repr(conn)
        assert conn.wait(40), "the call did not end (the callee hangs up after speaking)"
    assert rec.of("call_answered")
    assert in_order(PHONE_KEY_WORDS, texts(rec.of("message_response")))  # what 8 kHz G.711 keeps with margin
    conn.close()


def test_start_pstn_without_gateway_is_a_clear_error(daemon: DaemonProc) -> None:
    tel = symblctl.TelephonyApi(control=daemon.control, events=daemon.events)
    with pytest.raises(DaemonError) as refused:
        tel.start_pstn(phone_number="+15551234567")
    assert refused.value.code == "bad_request" and "gateway" in refused.value.message
