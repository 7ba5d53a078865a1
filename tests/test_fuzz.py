"""Hostile input on the control socket: every request answered or cleanly refused, daemon alive,
a live connection (real speech pushed in real time) unharmed and still transcribing.

Two fuzzers, both bounded in count and time: hypothesis over the request envelope (valid JSON
with wrong types, unknown commands, random args), and a raw-bytes fuzzer (random frames, huge
frames, deep JSON, invalid UTF-8, multipart garbage). They talk through a DEALER socket with an
empty delimiter frame, so each request's reply can be matched one to one.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator

import pytest
import zmq
from conftest import DaemonProc, events_until_complete
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from speechgen import SENTENCES, pcm16, silence, synth, wer

from symbld.control.envelope import MAX_REQUEST_BYTES
from symbld.errors import ERROR_CODES

REPLY_TIMEOUT_MS = 5000
# Commands the envelope fuzzer may name: all but shutdown (it would end the test, by design).
SAFE_COMMANDS = ["ping", "describe", "status", "get", "stop", "history", "subscribe", "send_audio", "start"]
SPOKEN = SENTENCES[:3]


class RawPeer:
    """A DEALER that sends arbitrary frames after an empty delimiter and reads the one reply."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.ctx = zmq.Context()
        self.sock: zmq.Socket | None = None
        self.reconnect()

    def reconnect(self) -> None:
        if self.sock is not None:
            self.sock.close(linger=0)
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(self.endpoint)

    def ask(self, frames: list[bytes]) -> dict | None:
        assert self.sock is not None
        self.sock.send_multipart([b"", *frames])
        if not self.sock.poll(REPLY_TIMEOUT_MS):
            return None
        reply = self.sock.recv_multipart()
        assert reply[0] == b"" and len(reply) == 2, f"malformed reply envelope {reply!r}"
        return json.loads(reply[1])

    def close(self) -> None:
        assert self.sock is not None
        self.sock.close(linger=0)
        self.ctx.term()


def _check_reply(reply: dict | None, frames: list[bytes]) -> dict:
    assert reply is not None, f"no reply to {[f[:80] for f in frames]!r}"
    assert reply["v"] == 1 and isinstance(reply["ok"], bool)
    if not reply["ok"]:
        err = reply["error"]
        assert err["code"] in ERROR_CODES, err
        assert isinstance(err["message"], str) and err["message"]
    return reply


class LiveConnection:
    """A push connection fed real speech at real-time pace from its own thread and client."""

    def __init__(self, daemon: DaemonProc) -> None:
        self.daemon = daemon
        self.client = daemon.client()
        self.cid = self.client.start(source={"type": "push"})["connectionId"]
        gap = silence(0.8)
        self.audio = b"".join(pcm16(synth(s)) + gap for s in SPOKEN)
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        try:
            with self.daemon.client() as c:
                chunk = 3200  # 100 ms
                t0 = time.monotonic()
                for i in range(0, len(self.audio), chunk):
                    c.send_audio(self.cid, self.audio[i:i + chunk])
                    delay = t0 + (i + chunk) / 32000 - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
        except Exception as e:  # noqa: BLE001 - the feeder thread's failure, re-raised by finish()
            self.errors.append(e)

    def finish(self) -> list[dict]:
        self._thread.join(60)
        assert not self.errors, self.errors
        self.client.end_audio(self.cid)
        events = events_until_complete(self.client, self.cid, timeout=90)
        self.client.close()
        return events


@pytest.fixture(scope="module")
def live(daemon: DaemonProc) -> Iterator[LiveConnection]:
    conn = LiveConnection(daemon)
    yield conn
    conn.client.close()


@pytest.fixture(scope="module")
def peer(daemon: DaemonProc) -> Iterator[RawPeer]:
    p = RawPeer(daemon.control)
    yield p
    p.close()


# -- the envelope fuzzer ---------------------------------------------------------------------------
json_scalars = (st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=False)
                | st.text(max_size=40))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=5), max_leaves=30)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "v": st.integers(-3, 3) | json_values,
        "id": st.text(max_size=30) | st.integers() | json_values,
        "cmd": st.sampled_from(SAFE_COMMANDS) | st.text(max_size=20) | json_values,
        "args": st.dictionaries(st.sampled_from(["connectionId", "afterSeq", "limit", "source", "types", "token",
                                                 "end", "sampleRate", "engine", "config", "insightTypes"])
                                | st.text(max_size=10), json_values, max_size=6) | json_values,
    },
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(env=envelopes, audio=st.none() | st.binary(max_size=64))
def test_envelope_fuzz_every_request_answered(peer: RawPeer, live: LiveConnection, env: dict,
                                              audio: bytes | None) -> None:
    if env.get("cmd") == "shutdown" or live.cid in json.dumps(env):
        return  # the one command that may legitimately end things; the live connection is not a target
    frames = [json.dumps(env).encode()] + ([audio] if audio is not None else [])
    reply = _check_reply(peer.ask(frames), frames)
    if isinstance(env.get("id"), str):
        assert reply["id"] == env["id"]


# -- the raw-bytes fuzzer --------------------------------------------------------------------------
def _raw_cases(rng: random.Random) -> Iterator[tuple[str, list[bytes]]]:
    yield "empty", []
    yield "empty frame", [b""]
    yield "invalid utf-8", [b'{"cmd": "ping", "x": "\xff\xfe"}']
    yield "lone surrogate escape", [b'{"cmd": "ping", "id": "\\ud800"}']
    yield "json scalar", [b"42"]
    yield "json array", [b'["ping"]']
    yield "json null", [b"null"]
    yield "deep arrays", [b"[" * 200_000 + b"]" * 200_000]
    yield "deep objects", [(b'{"a":' * 5000) + b"1" + b"}" * 5000]
    yield "deep args under the parser's limit", [json.dumps({"cmd": "ping", "args": {"a": [[[[[[[[[[[[[[[[[[[[[[[[[
        [[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}).encode()]
    yield "wrong types", [b'{"v": "1", "id": [], "cmd": 5, "args": []}']
    yield "bool id", [b'{"id": true, "cmd": "ping"}']
    yield "future version", [b'{"v": 99, "cmd": "ping"}']
    yield "huge number", [b'{"cmd": "history", "args": {"connectionId": "x", "limit": 1' + b"0" * 5000 + b"}}"]
    yield "nan", [b'{"cmd": "history", "args": {"connectionId": "x", "afterSeq": NaN}}']
    yield "three frames", [b'{"cmd": "ping"}', b"a", b"b"]
    yield "twenty frames", [b"x"] * 20
    yield "just over the request limit", [b'{"cmd": "ping", "pad": "' + b"a" * MAX_REQUEST_BYTES + b'"}']
    yield "audio frame over its limit", [b'{"cmd": "send_audio", "args": {"connectionId": "x"}}', b"\0" * (2 << 20)]
    yield "odd audio", [b'{"cmd": "send_audio", "args": {"connectionId": "x"}}', b"\0\1\2"]
    for i in range(150):
        n = rng.randint(1, 4)
        frames = [rng.randbytes(rng.choice([0, 1, 7, 64, 1000, 20_000])) for _ in range(n)]
        if i % 3 == 0:  # near-JSON: a valid request with random bytes spliced in
            body = bytearray(b'{"v": 1, "id": "r%d", "cmd": "status", "args": {}}' % i)
            pos = rng.randrange(len(body))
            body[pos:pos + rng.randint(1, 4)] = rng.randbytes(rng.randint(0, 4))
            frames[0] = bytes(body)
        yield f"random {i}", frames


def test_raw_bytes_fuzz_every_request_answered(peer: RawPeer, live: LiveConnection, daemon: DaemonProc) -> None:
    rng = random.Random(9)
    for name, frames in _raw_cases(rng):  # (a hang meets the test's timeout)
        reply = _check_reply(peer.ask(frames), frames)
        assert reply["ok"] or reply["error"]["code"] != "internal", f"{name}: {reply}"
    assert daemon.proc is not None and daemon.proc.poll() is None


def test_frames_over_the_socket_cap_drop_the_sender_not_the_daemon(peer: RawPeer, daemon: DaemonProc) -> None:
    """Past the socket's hard cap (4 MiB) libzmq disconnects the sender; nothing else is affected."""
    peer.sock.send_multipart([b"", b"\0" * (5 << 20)])  # type: ignore[union-attr]
    assert not peer.sock.poll(1000)  # type: ignore[union-attr]
    peer.reconnect()
    assert _check_reply(peer.ask([b'{"id": "after", "cmd": "ping"}']), [])["ok"]
    with daemon.client() as c:
        assert c.ping()["pong"]


def test_many_peers_garbage_at_once(daemon: DaemonProc) -> None:
    """Several hostile peers in parallel: each gets its replies, nobody starves."""
    errors: list[BaseException] = []

    def hammer(seed: int) -> None:
        try:
            rng = random.Random(seed)
            p = RawPeer(daemon.control)
            try:
                for _ in range(60):
                    frames = [rng.randbytes(rng.randint(0, 300)) for _ in range(rng.randint(1, 3))]
                    _check_reply(p.ask(frames), frames)
            finally:
                p.close()
        except Exception as e:  # noqa: BLE001 - a hammer thread's failure, reported after join
            errors.append(e)

    threads = [threading.Thread(target=hammer, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]


def test_live_connection_unharmed_after_fuzzing(live: LiveConnection, daemon: DaemonProc) -> None:
    """Runs last (file order): the speech pushed during the fuzzing was transcribed as said."""
    events = live.finish()
    assert events[-1]["type"] == "conversation_completed"
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), "gap or duplicate in the live connection's events"
    said = [m["payload"]["content"] for e in events if e["type"] == "message_response" for m in e["data"]["messages"]]
    assert wer(" ".join(SPOKEN), " ".join(said)) <= 0.25, said
    with daemon.client() as c:
        status = c.status()
        assert c.get(live.cid)["state"] == "stopped"
    assert status["live"] == 0, "the fuzzers left connections running"
