"""``finalize``: what was heard so far becomes final at once, and the connection goes on.

Speech is pushed without any trailing silence, so the endpoint (350 ms of silence) can never close the
utterance: a final that arrives before ``stop`` came from ``finalize``.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
from conftest import DaemonProc, messages, wait_for_events, wait_until
from speechgen import SENTENCES, pcm16, synth, wer

import symblctl
from symblctl.client import Client, DaemonError

pytestmark = [pytest.mark.speech, pytest.mark.timeout(180)]


def speech_without_trailing_silence(text: str) -> bytes:
    """The sentence with its trailing silence cut: the audio ends on the last word's sound."""
    x = np.frombuffer(pcm16(synth(text)), "<i2")
    loud = np.flatnonzero(np.abs(x.astype(np.int32)) > 500)
    return x[: int(loud[-1]) + 1].tobytes()


def push(client: Client, cid: str, pcm: bytes) -> None:
    for i in range(0, len(pcm), 3200):
        client.send_audio(cid, pcm[i : i + 3200])


def finals_and_messages(events: list[dict]) -> tuple[int, int]:
    finals = sum(1 for e in events if e["type"] == "transcript_response" and e["data"]["isFinal"])
    return finals, sum(1 for e in events if e["type"] == "message_response")


def test_finalize_publishes_what_was_heard_and_the_connection_goes_on(daemon: DaemonProc, client: Client) -> None:
    cid = client.start(source={"type": "push"})["connectionId"]
    push(client, cid, speech_without_trailing_silence(SENTENCES[1]))
    assert client.finalize(cid) == {"connectionId": cid, "utteranceClosed": True}
    events = wait_for_events(client, cid, lambda ev: finals_and_messages(ev)[1] == 1, what="the finalized message")
    assert wer(SENTENCES[1], messages(events)) <= 0.2, messages(events)
    assert client.get(cid)["state"] == "live"

    # Nothing open now: nothing to finalize, no event.
    assert client.finalize(cid)["utteranceClosed"] is False

    # The connection accepts audio and finalizes again, from the CLI this time.
    push(client, cid, speech_without_trailing_silence(SENTENCES[2]))
    out = subprocess.run([sys.executable, "-m", "symblctl.cli", "--control", daemon.control, "--events",
                          daemon.events, "finalize", cid], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "final follows"
    events = wait_for_events(client, cid, lambda ev: finals_and_messages(ev)[1] == 2, what="the second message")
    said = messages(events)
    assert wer(SENTENCES[2], said[1:]) <= 0.2, said
    assert not any(e["type"] in ("connection_stopped", "conversation_completed") for e in events)

    client.stop(cid)
    with pytest.raises(DaemonError) as e:
        client.finalize(cid)
    assert e.value.code == "invalid_state"


def test_finalize_unknown_connection(client: Client) -> None:
    with pytest.raises(DaemonError) as e:
        client.finalize("no-such-connection")
    assert e.value.code == "unknown_connection"


def test_sdk_connection_finalize(daemon: DaemonProc) -> None:
    api = symblctl.StreamingApi(control=daemon.control, events=daemon.events)
    connection = api.start_connection(insight_types=["question"])
    got: list[str] = []
    lock = threading.Lock()

    def on_message(frame: dict) -> None:
        with lock:
            got.extend(m["payload"]["content"] for m in frame["messages"])

    try:
        connection.subscribe({"message_response": on_message})
        connection.send_audio(speech_without_trailing_silence(SENTENCES[3]))
        assert connection.finalize()["utteranceClosed"] is True
        wait_until("the finalized message reaches the callback", lambda: list(got), timeout=60)
        assert wer(SENTENCES[3], got) <= 0.2, got
        assert connection.refresh().state == "live"
    finally:
        connection.stop()
        connection.close()
