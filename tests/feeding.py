"""Push spoken sentences to a connection the way a client should: on ``busy`` (the engine is behind),
retry the same chunk shortly (docs/protocol.md), then end the audio."""

from __future__ import annotations

import time

from speechgen import pcm16, synth

from symblctl.client import Client, DaemonError


def send_retrying(client: Client, cid: str, pcm: bytes, deadline_s: float = 120.0) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            client.send_audio(cid, pcm)
            return
        except DaemonError as e:
            if e.code != "busy" or time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # back-off between retries, not a wait for a condition


def speak(client: Client, cid: str, sentences: list[str], speed: int = 140, end: bool = True) -> None:
    for s in sentences:
        send_retrying(client, cid, pcm16(synth(s, speed=speed)) + bytes(24000))
    if end:
        client.end_audio(cid)
