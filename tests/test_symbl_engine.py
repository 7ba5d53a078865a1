"""The ``symbl`` client engine against the Symbl-compatible server, both real, on loopback.

The server is backed by a real symbld subprocess (offline engine), so the words asserted here
travelled: test → engine → WebSocket → server → daemon → ASR → daemon PUB → server → engine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until
from speechgen import SENTENCES, pcm16, silence, synth, wer
from test_symbl_server import APP_ID, APP_SECRET, REPO, stop_process

from symblctl.client import Client
from symbld.engines.base import EngineError, StreamConfig
from symbld.gateways.symbl.auth import Credentials, CredentialsError, TokenClient, load_credentials
from symbld.gateways.symbl.engine import SymblEngine
from symbld.gateways.symbl.server import ServerHandle, serve_symbl

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def server(daemon_endpoints: tuple[str, str]) -> Iterator[ServerHandle]:
    control, events = daemon_endpoints
    handle = serve_symbl("127.0.0.1", 0, lambda: Client(control, events),
                         {"app_id": APP_ID, "app_secret": APP_SECRET, "first_frame_delay": 0.1,
                          "idle_timeout": 2.0, "token_ttl": 4})
    try:
        yield handle
    finally:
        handle.close()


def engine_for(port: int, **over: Any) -> SymblEngine:
    return SymblEngine({"base_url": f"http://127.0.0.1:{port}", "app_id": APP_ID, "app_secret": APP_SECRET,
                        "keepalive_interval": 0.5, "reconnect_initial_delay": 0.2, "reconnect_max_delay": 1.0,
                        "reconnect_max_seconds": 30, "stop_timeout": 60, **over})


class Collector:
    """emit() target: keeps events; ``wait_for(pred)`` polls with a bound."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._cond = threading.Condition()

    def __call__(self, etype: str, data: dict[str, Any]) -> None:
        with self._cond:
            self.events.append((etype, data))
            self._cond.notify_all()

    def wait_for(self, pred: Callable[[], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(pred, timeout)

    def messages_text(self) -> str:
        return " ".join(m["payload"]["content"] for t, d in self.events if t == "message_response"
                        for m in d["messages"])

    def has_words(self, sentence: str, limit: float = 0.35) -> bool:
        return wer(sentence, self.messages_text_since(sentence)) <= limit

    def messages_text_since(self, sentence: str) -> str:
        # the message(s) best matching this sentence (each sentence here is one utterance)
        texts = [m["payload"]["content"] for t, d in self.events if t == "message_response" for m in d["messages"]]
        return min(texts, key=lambda t: wer(sentence, t)) if texts else ""


def stream_config(cid: str, **over: Any) -> StreamConfig:
    return StreamConfig(connection_id=cid, conversation_id="1234567890123456", started_at=time.time(),
                        speaker={"userId": "jane@example.com", "name": "Jane"}, **over)


def feed_paced(stream: Any, pcm: bytes, speed: float = 4.0) -> None:
    """Feed in 100 ms pieces at ``speed`` × real time (a live source, only faster)."""
    step = 3200
    for i in range(0, len(pcm), step):
        stream.feed(pcm[i:i + step])
        time.sleep(0.1 / speed)  # pacing the feed, not waiting for a condition


@pytest.mark.speech
def test_streams_file_words_and_shapes(server: ServerHandle) -> None:
    events = Collector()
    engine = engine_for(server.port)
    stream = engine.open(stream_config("engine-words-1"), events)
    try:
        feed_paced(stream, pcm16(synth(SENTENCES[0])) + silence(0.6) + pcm16(synth(SENTENCES[6])) + silence(0.6))
        stream.finish()
    finally:
        stream.close()
    types = [t for t, _ in events.events]
    finals = [d for t, d in events.events if t == "transcript_response" and d["isFinal"]]
    assert len(finals) >= 2, types
    assert wer(SENTENCES[0], events.messages_text_since(SENTENCES[0])) <= 0.35, events.messages_text()
    assert wer(SENTENCES[6], events.messages_text_since(SENTENCES[6])) <= 0.35, events.messages_text()
    # Same shapes as the offline engine (docs/events.md).
    assert set(finals[0]) >= {"type", "id", "isFinal", "payload", "punctuated", "duration", "user"}
    assert finals[0]["payload"]["content"] == finals[0]["payload"]["content"].lower()
    assert set(finals[0]["duration"]) == {"startTime", "endTime", "timeOffset", "duration"}
    message = next(d for t, d in events.events if t == "message_response")["messages"][0]
    assert isinstance(message["metadata"]["words"], str) and message["from"]["userId"] == "jane@example.com"
    interim_ids = {d["id"] for t, d in events.events if t == "transcript_response"}
    assert len(interim_ids) == len(finals)  # one id per utterance, shared by its interims and final
    assert stream.reconnects == 0 and stream.error is None


@pytest.mark.speech
def test_insights_arrive(server: ServerHandle) -> None:
    events = Collector()
    stream = engine_for(server.port).open(stream_config("engine-insight-1", insight_types=["question"]), events)
    try:
        feed_paced(stream, pcm16(synth(SENTENCES[3])) + silence(0.6))
        stream.finish()
    finally:
        stream.close()
    insights = [i for t, d in events.events if t == "insight_response" for i in d["insights"]]
    assert any(i["type"] == "question" for i in insights), [t for t, _ in events.events]
    ids = {m["id"] for t, d in events.events if t == "message_response" for m in d["messages"]}
    assert all(i["messageReference"]["id"] in ids for i in insights)


def test_bad_credentials_fail_clearly(server: ServerHandle) -> None:
    engine = SymblEngine({"base_url": f"http://127.0.0.1:{server.port}", "app_id": APP_ID,
                          "app_secret": "0" * 128})
    with pytest.raises(EngineError) as err:
        engine.open(stream_config("engine-badcreds"), Collector())
    assert "Combination of appId and appSecret is not valid." in err.value.message
    assert "0" * 128 not in str(err.value)
    with pytest.raises(EngineError) as unreachable:
        engine_for(free_port()).open(stream_config("engine-nobody"), Collector())
    assert "unreachable" in unreachable.value.message


def test_credentials_sources(tmp_path: Path) -> None:
    assert load_credentials({"app_id": "a", "app_secret": "b"}, env={}) == Credentials("a", "b")
    assert load_credentials({}, env={"SYMBL_APP_ID": "x", "SYMBL_APP_SECRET": "y"}) == Credentials("x", "y")
    conf = tmp_path / "symbl.conf"
    conf.write_text("[credentials]\napp_id = fid\napp_secret = fsecret\n")
    conf.chmod(0o644)
    with pytest.raises(CredentialsError, match="chmod 600"):
        load_credentials({"credentials_file": str(conf)}, env={})
    conf.chmod(0o600)
    assert load_credentials({"credentials_file": str(conf)}, env={}) == Credentials("fid", "fsecret")
    (tmp_path / "symbl-app-secret").write_text("sd-secret\n")
    creds = load_credentials({"app_id": "sid"}, env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert creds == Credentials("sid", "sd-secret") and "sd-secret" not in repr(creds)
    with pytest.raises(CredentialsError):
        load_credentials({}, env={})


class SteppedClock:
    """The ``time`` module as seen by one module, with ``monotonic`` moved by the test (an injected clock)."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def monotonic(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def test_token_cached_and_renewed_before_expiry(server: ServerHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    from symbld.gateways.symbl import auth

    clock = SteppedClock()
    monkeypatch.setattr(auth, "time", clock)  # only the token client's module reads this clock
    tokens = TokenClient(f"http://127.0.0.1:{server.port}", Credentials(APP_ID, APP_SECRET))
    first = tokens.get()
    assert tokens.get() == first and tokens.fetches == 1
    # The server's token_ttl is 4 s, but the lifetime it states is counted on its own (real) clock, so
    # the steps are taken from what the client made of it: renewal due at half-life, before expiry.
    lifetime = tokens._expires_at - clock.now
    renew_in = tokens._renew_at - clock.now
    assert 0 < lifetime <= 4 and renew_in == pytest.approx(lifetime / 2)
    clock.now += renew_in - 0.1  # still the cached token just before half-life
    assert tokens.get() == first and tokens.fetches == 1
    clock.now += 0.2  # past half-life, well before expiry: renewed
    tokens.get()
    assert tokens.fetches == 2
    clock.now += 0.2
    tokens.get()
    assert tokens.fetches == 2  # the new token is cached in its turn


def test_keepalive_holds_an_idle_connection(server: ServerHandle) -> None:
    """The server drops sockets idle for 2 s; __PING__ every 0.5 s keeps ours, none drops the other."""
    kept = engine_for(server.port).open(stream_config("engine-idle-keep"), Collector())
    bare = engine_for(server.port, keepalive_interval=0).open(stream_config("engine-idle-bare"), Collector())
    try:
        # The control: without keep-alive the idle socket is dropped (and reconnected). Waited for,
        # not slept: on a loaded machine the server's idle timer can fire late.
        wait_until("the server to drop the idle socket", lambda: bare.reconnects >= 1, 30)
        assert kept.reconnects == 0  # opened first, so idle at least as long, and kept
    finally:
        for s in (kept, bare):
            s.finish()
            s.close()


@pytest.mark.speech
def test_subscribe_by_id_listens(server: ServerHandle) -> None:
    engine = engine_for(server.port)
    stream = engine.open(stream_config("engine-sub-1"), Collector())
    heard = Collector()
    ended: list[str] = []
    sub = engine.subscribe("engine-sub-1", heard, on_end=ended.append)
    try:
        feed_paced(stream, pcm16(synth(SENTENCES[4])) + silence(0.6))
        stream.finish()
        assert heard.wait_for(lambda: any(t == "message_response" for t, _ in heard.events), 20)
        assert wer(SENTENCES[4], heard.messages_text()) <= 0.35, heard.messages_text()
        wait_until("the subscription to end", lambda: ended, 10)
        assert ended == ["completed"]
    finally:
        sub.close()
        stream.close()
    with pytest.raises(EngineError, match="Connection not found") as unknown:
        engine.subscribe("no-such-connection", heard)
    assert unknown.value.details["status"] == 404


def test_telephony_client(server: ServerHandle) -> None:
    phone = engine_for(server.port).telephony()
    with pytest.raises(EngineError, match="uri"):
        phone._post({"operation": "start", "endpoint": {"type": "sip"}})
    try:
        call = phone.start_sip("sip:nobody@127.0.0.1:9", actions=[{"invokeOn": "stop", "name": "sendSummaryEmail",
                                                                   "parameters": {"emails": ["a@example.com"]}}])
    except EngineError as exc:  # a daemon without telephony answers 501
        assert exc.details.get("status") == 501, exc.message
        return
    assert call["conversationId"].isdigit()
    stopped = phone.stop(call["connectionId"])  # answers even when the call already ended
    assert stopped["conversationId"] == call["conversationId"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server_process(port: int, daemon_endpoints: tuple[str, str], log_path: Path) -> subprocess.Popen:
    """The server as its own process (so it can be SIGKILLed); returns once it listens."""
    with open(log_path, "a") as out:  # a file, not a pipe: nobody reads its logs while it runs
        proc = subprocess.Popen(
            [sys.executable, "-m", "symbld.gateways.symbl.server", "--listen", f"127.0.0.1:{port}",
             "--control", daemon_endpoints[0], "--events", daemon_endpoints[1], "--first-frame-delay", "0.1"],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO), "SYMBL_APP_ID": APP_ID, "SYMBL_APP_SECRET": APP_SECRET},
        )
    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    try:
        wait_until("the server listens", listening, 20)
    except BaseException:
        proc.kill()
        raise
    return proc


@pytest.mark.speech
def test_server_killed_mid_stream_reconnects_without_losing_audio(daemon_endpoints: tuple[str, str],
                                                                   tmp_path: Path) -> None:
    port = free_port()
    proc = start_server_process(port, daemon_endpoints, tmp_path / "server.log")
    events = Collector()
    stream = None
    try:
        stream = engine_for(port).open(stream_config("engine-reconnect-1"), events)
        feed_paced(stream, pcm16(synth(SENTENCES[1])) + silence(0.6))
        assert events.wait_for(lambda: any(t == "message_response" for t, _ in events.events), 30)
        proc.kill()  # SIGKILL: no goodbye, and the restarted server signs tokens with a new key
        proc.wait(5)
        wait_until("the stream notices the drop", lambda: not stream._connected, 30)
        feed_paced(stream, pcm16(synth(SENTENCES[3])) + silence(0.6), speed=8)  # spoken during the outage
        proc = start_server_process(port, daemon_endpoints, tmp_path / "server.log")
        assert events.wait_for(lambda: wer(SENTENCES[3], events.messages_text_since(SENTENCES[3])) <= 0.35, 40), \
            events.messages_text()
        stream.finish()
        assert stream.reconnects >= 1 and stream.error is None and stream.dropped_bytes == 0
        assert wer(SENTENCES[1], events.messages_text_since(SENTENCES[1])) <= 0.35
    finally:
        if stream is not None:
            stream.close()
        stop_process(proc)


@pytest.mark.speech
def test_failover_to_the_offline_engine(daemon_endpoints: tuple[str, str], tmp_path: Path) -> None:
    from symbld.engines.local import LocalEngine

    local = LocalEngine({"num_workers": 1, "cpu_threads": 1})
    local.load()
    port = free_port()
    proc = start_server_process(port, daemon_endpoints, tmp_path / "server.log")
    events = Collector()
    stream = None
    try:
        engine = engine_for(port, failover="local", failover_after=1.0, reconnect_max_delay=0.3)
        engine.fallback = local
        stream = engine.open(stream_config("engine-failover-1"), events)
        feed_paced(stream, pcm16(synth(SENTENCES[1])) + silence(0.6))
        assert events.wait_for(lambda: any(t == "message_response" for t, _ in events.events), 30)
        proc.kill()  # and never comes back
        proc.wait(5)
        wait_until("the stream notices the drop", lambda: not stream._connected, 30)
        feed_paced(stream, pcm16(synth(SENTENCES[3])) + silence(0.6), speed=8)
        assert events.wait_for(lambda: any(t == "engine_failover" for t, _ in events.events), 15)
        stream.finish()
        assert stream.fallback is not None and stream.error is None
        assert wer(SENTENCES[3], events.messages_text_since(SENTENCES[3])) <= 0.35, events.messages_text()
        # unreachable already at open(): straight to the offline engine
        at_open = Collector()
        early = engine_for(free_port(), failover="local")
        early.fallback = local
        s2 = early.open(stream_config("engine-failover-2"), at_open)
        s2.close()
        assert at_open.events[0][0] == "engine_failover"
    finally:
        if stream is not None:
            stream.close()
        stop_process(proc)
        local.close()
