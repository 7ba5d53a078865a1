"""Delivery at the edges: the last events reach a live subscriber when the daemon is stopped, and the
frame limits are where docs/protocol.md puts them (an audio frame of up to 1 MiB)."""

from __future__ import annotations

import json
import signal
import uuid

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

    def synced() -> bool:
        client.request("subscribe", connectionId=cid, token=token)
        while sub.poll(200):
            if sub.recv_multipart()[0] == f"sync.{token}".encode():
                return True
        return False

    wait_until("the subscription in effect", synced, timeout=30)
    return sub


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
