"""The contract every audio source meets.

A source is opened by the session from the ``source`` argument of ``start`` and is then
iterated on the session's own thread::

    for pcm in source.frames():   # bytes: 16 kHz, mono, signed 16-bit little endian
        engine_stream.feed(pcm)

- ``frames()`` yields chunks of any length (typically 20 ms = 640 bytes) as they become
  available and returns when the source is exhausted (end of file, far end hung up,
  ``close()`` called). It raises ``SourceError`` when the source fails for good (SIP 486,
  unreadable file); the session then fails with that error's code and message.
- ``close()`` may be called from any thread and must make ``frames()`` return promptly
  (within ~100 ms); it must never hang, even when the underlying device has stalled.
- Sources report side news (``device_lost``, ``call_ringing``, ...) through
  ``SourceContext.emit(event_type, data)``; the session publishes them on the bus.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

SAMPLE_RATE = 16_000
SAMPLE_WIDTH = 2  # bytes, signed 16-bit little endian
CHANNELS = 1
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * SAMPLE_WIDTH * FRAME_MS // 1000  # 640


class SourceError(Exception):
    """A source cannot deliver audio. ``code`` is one of the control protocol's error codes."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


@dataclass
class SourceContext:
    """What a source gets from the daemon: its connection id, config and an event sink."""

    connection_id: str
    emit: Callable[[str, dict[str, Any]], None]
    config: dict[str, Any] = field(default_factory=dict)


class AudioSource(Protocol):
    kind: str

    def frames(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...

    def describe(self) -> dict[str, Any]:
        """A small JSON-able description for ``status`` / ``get`` (kind, device, counters)."""
        ...
