"""The contract every engine meets.

An engine is created once per daemon (it may hold a loaded model) and opens one stream per
connection::

    stream = engine.open(StreamConfig(...), emit)
    stream.feed(pcm)      # 16 kHz mono s16le; cheap, never blocks on decoding
    stream.finish()       # end of audio: blocks until every final result was emitted
    stream.close()        # release resources; idempotent

``emit(event_type, data)`` is thread-safe and may be called from any engine thread. Event
types and ``data`` shapes are Symbl's (``../docs/events.md``):

- ``transcript_response``: live text of the current utterance, ``isFinal`` false while it
  grows, then one ``isFinal`` true;
- ``message_response``: the finished sentence(s) of an utterance, after its final;
- ``insight_response`` / ``topic_response`` / ``tracker_response`` (from the analytics that
  run on finished messages).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Emit = Callable[[str, dict[str, Any]], None]


class EngineError(Exception):
    """The engine cannot serve this stream (bad config, model missing, remote refused)."""

    def __init__(self, message: str, details: dict[str, Any] | None = None, code: str = "engine_error") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


@dataclass
class StreamConfig:
    """Per-connection settings, straight from the ``start`` request (Symbl's names)."""

    connection_id: str
    conversation_id: str
    insight_types: list[str] = field(default_factory=lambda: ["question", "action_item", "follow_up"])
    confidence_threshold: float = 0.5
    language_code: str = "en-US"  # BCP-47 as asked (symbld.languages.parse checked it), or "auto"
    translate: bool = False  # English text whatever was spoken (Whisper's translate task)
    meeting_title: str | None = None
    speaker: dict[str, Any] | None = None  # {"userId": ..., "name": ...}
    trackers: list[dict[str, Any]] = field(default_factory=list)
    tracker_interim_results: bool = False
    custom_vocabulary: list[str] = field(default_factory=list)
    timezone_offset_minutes: int | None = None  # minutes east of UTC (Symbl's timezoneOffset)
    started_at: float = 0.0  # wall clock (time.time()) of the conversation's start
    extra: dict[str, Any] = field(default_factory=dict)  # engine-specific options


class EngineStream(Protocol):
    def feed(self, pcm: bytes) -> None: ...

    def finish(self) -> None: ...

    def close(self) -> None: ...


class Engine(Protocol):
    name: str

    def open(self, config: StreamConfig, emit: Emit) -> EngineStream: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class Subscription(Protocol):
    def close(self) -> None: ...


@runtime_checkable
class RemoteEngine(Engine, Protocol):
    """An engine whose connections live elsewhere and can be listened to by id (Symbl's subscribe)."""

    def subscribe(self, connection_id: str, on_event: Emit, *, telephony: bool = False,
                  on_end: Callable[[str], None] | None = None) -> Subscription: ...
