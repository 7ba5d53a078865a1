"""A client written only from docs/protocol.md: bare pyzmq REQ + SUB, no symblctl code."""

from __future__ import annotations

import json
import uuid

import pytest
import zmq
from conftest import DaemonProc, wait_until
from speechgen import SENTENCES, pcm16, synth, wer


@pytest.mark.speech
def test_bare_pyzmq_client_from_the_docs(daemon: DaemonProc) -> None:
    ctx = zmq.Context()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(daemon.control)

    def call(cmd: str, payload: bytes | None = None, **args: object) -> dict:
        frames = [json.dumps({"v": 1, "id": uuid.uuid4().hex, "cmd": cmd, "args": args}).encode()]
        if payload is not None:
            frames.append(payload)
        req.send_multipart(frames)
        assert req.poll(30_000), "no reply"
        reply = json.loads(req.recv())
        assert reply["ok"], reply
        return reply["result"]

    conn = call("start", source={"type": "push", "sampleRate": 16000})
    cid = conn["connectionId"]
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(daemon.events)
    token = uuid.uuid4().hex
    sub.setsockopt(zmq.SUBSCRIBE, f"connection.{cid}.".encode())
    sub.setsockopt(zmq.SUBSCRIBE, f"sync.{token}".encode())
    synced = False
    for _ in range(25):  # the documented sync handshake
        call("subscribe", connectionId=cid, token=token)
        if sub.poll(200):
            topic, _ = sub.recv_multipart()
            if topic == f"sync.{token}".encode():
                synced = True
                break
    assert synced
    backlog = call("history", connectionId=cid, afterSeq=0)["events"]
    assert backlog[0]["type"] == "connection_started"

    pcm = pcm16(synth(SENTENCES[6]))
    for i in range(0, len(pcm), 3200):
        call("send_audio", pcm[i:i + 3200], connectionId=cid)
    call("send_audio", connectionId=cid, end=True)

    seen = [e["seq"] for e in backlog]
    texts = []

    def completed() -> bool:
        """Take the next event off the SUB socket; true once it is conversation_completed."""
        if not sub.poll(1000):
            return False
        topic, body = sub.recv_multipart()
        if topic.startswith(b"sync."):
            return False  # a marker from an earlier subscribe retry (the doc says to ignore them)
        event = json.loads(body)
        assert topic == f"connection.{cid}.{event['type']}".encode()
        if event["seq"] <= seen[-1]:
            return False
        assert event["seq"] == seen[-1] + 1, "gap on a fast local subscriber"
        seen.append(event["seq"])
        if event["type"] == "message_response":
            texts.extend(m["payload"]["content"] for m in event["data"]["messages"])
        return event["type"] == "conversation_completed"

    wait_until("conversation_completed on the SUB socket", completed, 60, every=0)
    assert wer(SENTENCES[6], texts) <= 0.25, texts
    sub.close()
    req.close()
    ctx.term()
