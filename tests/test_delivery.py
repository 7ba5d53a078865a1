"""Delivery at the edges: the last events reach a live subscriber when the daemon is stopped, and the
frame limits are where docs/protocol.md puts them (an audio frame of up to 1 MiB)."""

from __future__ import annotations

import contextlib
import json
import select
import signal
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import zmq
from conftest import DaemonProc, wait_until

from symblctl.client import Client, DaemonError

MIB = 1 << 20


def _synced_sub(ctx: zmq.Context, daemon: DaemonProc, client: Client, cid: str) -> zmq.Socket:
    """A SUB on the connection's topic whose subscription is in effect (the documented sync handshake)."""
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(daemon.events)
    token = uuid.uuid4().hex
    sub.setsockopt(zmq.SUBSCRIBE, f"connection.{cid}.".encode())
    sub.setsockopt(zmq.SUBSCRIBE, f"sync.{token}".encode())
    _sync(client, cid, token, lambda: sub.recv_multipart()[0] if sub.poll(200) else None)
    return sub


def _sync(client: Client, cid: str, token: str, next_topic: Callable[[], bytes | None]) -> None:
    """The documented handshake: ask for a marker on our sync topic until it arrives, so our subscription is in
    effect at the PUB. ``next_topic`` gives the topic of the next message within a short wait, or None."""
    def synced() -> bool:
        client.request("subscribe", connectionId=cid, token=token)
        while (topic := next_topic()) is not None:
            if topic == f"sync.{token}".encode():
                return True
        return False

    wait_until("the subscription in effect", synced, timeout=30)


def test_a_live_subscriber_gets_conversation_completed_when_the_daemon_is_terminated(fresh_daemon: DaemonProc) -> None:
    ctx = zmq.Context()
    try:
        with fresh_daemon.client() as client:
            cid = client.start(source={"type": "push", "sampleRate": 16000})["connectionId"]
            sub = _synced_sub(ctx, fresh_daemon, client, cid)
            client.send_audio(cid, b"\x00\x00" * 16000)  # live, mid-connection: audio in, no end
        assert fresh_daemon.stop(signal.SIGTERM) == 0
        seen = []
        while sub.poll(10_000):  # the daemon is gone: what was queued to us arrives, then nothing more
            topic, body = sub.recv_multipart()
            if topic.startswith(b"connection."):
                seen.append(json.loads(body)["type"])
            if seen and seen[-1] == "conversation_completed":
                break
        assert seen[-2:] == ["connection_stopped", "conversation_completed"], seen
        sub.close()
    finally:
        ctx.term()


@pytest.fixture
def push(fresh_daemon: DaemonProc) -> tuple[Client, str]:
    client = fresh_daemon.client()
    cid = client.start(source={"type": "push", "sampleRate": 16000})["connectionId"]
    yield client, cid
    client.close()


def test_an_audio_frame_of_exactly_1_mib_is_accepted(push: tuple[Client, str]) -> None:
    client, cid = push
    assert client.send_audio(cid, b"\x00" * MIB)["accepted"] == MIB


def test_an_audio_frame_of_1_mib_and_one_byte_is_too_large(push: tuple[Client, str]) -> None:
    client, cid = push
    with pytest.raises(DaemonError) as e:
        client.send_audio(cid, b"\x00" * (MIB + 2))  # the smallest whole-sample frame over the limit
    assert e.value.code == "too_large"
    with pytest.raises(DaemonError) as e:
        client.send_audio(cid, b"\x00" * (MIB + 1))
    assert e.value.code == "too_large"
    assert client.send_audio(cid, b"\x00" * 3200)["accepted"] == 3200  # the connection goes on


def _request(req: zmq.Socket, request_id: str, cmd: str, **args: object) -> dict:
    req.send(json.dumps({"v": 1, "id": request_id, "cmd": cmd, "args": args}).encode())
    assert req.poll(30_000), "no reply"
    reply = json.loads(req.recv())
    assert reply["ok"], reply
    return reply["result"]


def test_events_a_command_causes_carry_its_request_id(daemon: DaemonProc, client: Client) -> None:
    ctx = zmq.Context()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(daemon.control)
    try:
        start_id, speaker_id = f"start-{uuid.uuid4().hex}", f"speaker-{uuid.uuid4().hex}"
        cid = _request(req, start_id, "start", source={"type": "push", "sampleRate": 16000})["connectionId"]
        _request(req, speaker_id, "speaker_event", connectionId=cid, type="started_speaking", user={"name": "Ann"})
        client.end_audio(cid)
        events = wait_until("conversation_completed", lambda: (h := client.all_history(cid))
                            and h[-1]["type"] == "conversation_completed" and h)
        caused = {e["type"]: e.get("requestId") for e in events}
        assert caused["connection_started"] == start_id
        assert caused["speaker_event"] == speaker_id
        assert caused["conversation_completed"] is None  # the session's own doing, not a request's
    finally:
        req.close()
        ctx.term()


BACKLOG_CONNECTIONS = 48
TITLE = "t" * 4096  # connection_started and connection_stopped carry it: ~4.5 KB each


class StalledSubscriber:
    """A SUB peer that speaks ZMTP 3.0 itself over the IPC socket, so that not reading really is not reading:
    a libzmq SUB's I/O thread would read on into its queue, and drop at its high-water mark, whatever the
    application does. Here what is not read stays in the kernel and then in the daemon's PUB queue."""

    def __init__(self, endpoint: str, *topics: bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(endpoint.removeprefix("ipc://"))
        self.buf = b""
        # libzmq reads the signature's padding as a ZMTP 1.0 length: it must end in 1 (0xff 0*7 1 0x7f).
        greeting = b"\xff" + b"\x00" * 7 + b"\x01\x7f" + bytes([3, 0]) + b"NULL".ljust(20, b"\x00") + b"\x00" * 32
        ready = b"\x05READY" + b"\x0bSocket-Type" + (3).to_bytes(4, "big") + b"SUB"
        self.sock.sendall(greeting)
        self._read(64)  # the daemon's greeting, then our READY and subscription
        self.sock.sendall(bytes([0x04, len(ready)]) + ready
                          + b"".join(bytes([0x00, 1 + len(t)]) + b"\x01" + t for t in topics))  # SUBSCRIBE messages
        flags, _ = self._frame()
        assert flags & 0x04, "the daemon's READY"

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _frame(self) -> tuple[int, bytes]:
        flags = self._read(1)[0]
        size = int.from_bytes(self._read(8 if flags & 0x02 else 1), "big")
        return flags, self._read(size)

    def ready(self, timeout: float) -> bool:
        """A message has begun to arrive within ``timeout`` (its rest follows at once)."""
        return bool(self.buf) or bool(select.select([self.sock], [], [], timeout)[0])

    def message(self) -> list[bytes]:
        """The next message; EOFError once the daemon has closed the connection."""
        parts = []
        while True:
            flags, body = self._frame()
            parts.append(body)
            if not flags & 0x01:
                return parts


def test_events_queued_behind_a_stalled_subscriber_still_reach_it_after_the_socket_closes(tmp_path: Path) -> None:
    """The linger, discriminated: a subscriber that reads nothing while ~400 KB of events pile up, more
    than the kernel's socket buffers hold, so at SIGTERM most of them, and every conversation_completed,
    are still queued in the PUB socket. It starts reading only once the daemon has closed that socket: with
    a linger of 0 the queue is dropped there and this test fails; with the bounded linger every
    connection's conversation_completed arrives."""
    d = DaemonProc(tmp_path / "d", config=f"max_connections = {BACKLOG_CONNECTIONS}\n").start()
    token = uuid.uuid4().hex
    sub = StalledSubscriber(d.events, b"connection.", f"sync.{token}".encode())
    try:
        with d.client() as client:
            first = client.start(source={"type": "push"}, diarization=False)["connectionId"]
            _sync(client, first, token, lambda: sub.message()[0] if sub.ready(0.2) else None)
            # From here the subscriber reads nothing until the daemon has closed its events socket.
            started = [first] + [client.start(source={"type": "push"}, diarization=False,
                                              config={"meetingTitle": TITLE})["connectionId"]
                                 for _ in range(BACKLOG_CONNECTIONS - 1)]
        d.proc.send_signal(signal.SIGTERM)
        wait_until("the daemon closed its events socket", lambda: "events_socket_closed" in d.log_path.read_text(),
                   timeout=60, every=0.01)
        completed = set()
        with contextlib.suppress(EOFError):
            while len(completed) < len(started):
                topic, body = sub.message()
                event = json.loads(body) if topic.startswith(b"connection.") else {}  # not a late sync reply
                if event.get("type") == "conversation_completed":
                    completed.add(event["connectionId"])
        assert completed == set(started), f"{len(completed)} of {len(started)} conversation_completed arrived"
        assert d.proc.wait(60) == 0
    finally:
        sub.sock.close()
        d.kill()
