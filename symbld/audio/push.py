"""Audio pushed by a local process over the control socket (``send_audio``, the SDK's send_audio)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from symblctl import protocol
from symbld.audio.base import SourceError
from symbld.audio.convert import StreamResampler

SUPPORTED_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)


class PushSource:
    """A bounded queue between ``send_audio`` (control thread) and the session thread.

    The queue holds ``max_seconds`` of audio; a client that pushes faster than real time past
    that gets ``busy`` and should retry, so nothing is dropped silently. The session stops reading
    this queue while the engine is behind (symbld.core.flow), so ``busy`` comes before the engine's
    bound, never after. The queue always holds at least one whole frame of the protocol's largest
    (1 MiB: more than 30 s at 16 kHz), so any frame the protocol accepts fits an empty queue; a larger
    one (from a mic pump, say) is ``too_large``.
    """

    kind = "push"

    def __init__(self, sample_rate: int = 16000, encoding: str = "LINEAR16", max_seconds: float = 30.0) -> None:
        if encoding != "LINEAR16":
            raise SourceError("bad_request", f"push audio encoding {encoding!r} is not supported; use LINEAR16",
                              {"supported": ["LINEAR16"]})
        if sample_rate not in SUPPORTED_RATES:
            raise SourceError("bad_request", f"push sampleRate {sample_rate} is not supported",
                              {"supported": list(SUPPORTED_RATES)})
        self.sample_rate = sample_rate
        self._capacity = max(int(max_seconds * sample_rate * 2), protocol.SendAudio.max_payload)
        self._queued = 0
        self._lock = threading.Lock()
        # Audio, a mark (mark()) or None (the end).
        self._q: queue.SimpleQueue[tuple[bytes, int] | Callable[[], None] | None] = queue.SimpleQueue()
        self._ended = False
        self._resamplers: dict[int, StreamResampler] = {sample_rate: StreamResampler(sample_rate)}
        self.bytes_received = 0

    def push(self, pcm: bytes, sample_rate: int | None = None) -> int:
        """Called from the control thread (or a mic pump). Returns bytes accepted; raises SourceError when refused.

        ``sample_rate`` defaults to the connection's; a microphone attached later pushes 16 kHz whatever that is.
        """
        rate = sample_rate or self.sample_rate
        if self._ended:
            raise SourceError("invalid_state", "the connection no longer accepts audio")
        if len(pcm) % 2:
            raise SourceError("bad_request", f"LINEAR16 audio must be whole 16-bit samples; got {len(pcm)} bytes",
                              {"bytes": len(pcm)})
        if len(pcm) > self._capacity:  # could never fit: "busy" would make a retrying client loop forever
            raise SourceError("too_large", f"audio frame of {len(pcm)} bytes is larger than the whole queue "
                              f"({self._capacity} bytes); send smaller frames", {"bytes": len(pcm),
                                                                                   "limit": self._capacity})
        with self._lock:
            if self._queued + len(pcm) > self._capacity:
                raise SourceError("busy", "audio queue full: the engine is behind; retry shortly",
                                  {"queuedBytes": self._queued})
            self._queued += len(pcm)
        self.bytes_received += len(pcm)
        self._q.put((pcm, rate))
        return len(pcm)

    def close(self) -> None:
        """No more audio will come. What was already pushed is still delivered: nothing captured is lost."""
        if not self._ended:
            self._ended = True
            self._q.put(None)

    def mark(self, action: Callable[[], None]) -> None:
        """Run ``action`` on the reading (session) thread once the audio pushed before it was read and fed
        (``finalize``: the final must include every byte sent before the command)."""
        if self._ended:
            raise SourceError("invalid_state", "the connection no longer accepts audio")
        self._q.put(action)

    def frames(self) -> Iterator[bytes]:
        while True:
            item = self._q.get()
            if callable(item):  # the consumer fed every frame yielded so far before asking for the next
                item()
                continue
            if item is None:
                for pending in self._resamplers.values():
                    tail = pending.process(np.zeros(0, np.int16), last=True)
                    if tail:
                        yield tail
                return
            pcm, rate = item
            with self._lock:
                self._queued -= len(pcm)
            rs = self._resamplers.get(rate)
            if rs is None:
                rs = self._resamplers[rate] = StreamResampler(rate)
            yield rs.process(np.frombuffer(pcm, "<i2"))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "sampleRate": self.sample_rate, "receivedBytes": self.bytes_received,
                "queuedBytes": self._queued, "capacityBytes": self._capacity}
