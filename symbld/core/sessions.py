"""Sessions: one Symbl "connection" each, tying one audio source to one engine stream.

State machine: starting → live → stopping → stopped | failed. The session's own thread pulls
frames from the source and feeds the engine; when the source ends (stop, end of file, far end
hung up) or fails, the same thread flushes the engine (``finish``) and the analytics, so a
connection always ends with every final result published, failed ones included.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog

from symbld.audio.base import AudioSource, SourceError
from symbld.core.bus import EventBus
from symbld.core.errors import ControlError
from symbld.core.ids import iso_now
from symbld.engines.base import Engine, EngineError, EngineStream, StreamConfig
from symbld.insights.outgoing import OutgoingFilter

log = structlog.get_logger(__name__)

STARTING, LIVE, STOPPING, STOPPED, FAILED = "starting", "live", "stopping", "stopped", "failed"
ENDED = (STOPPED, FAILED)


class Session:
    def __init__(self, *, config: StreamConfig, source: AudioSource, engine: Engine, engine_name: str,
                 bus: EventBus, analyzer_factory: Callable[..., Any] | None = None,
                 on_ended: Callable[[Session], None] | None = None, stop_timeout: float = 60.0) -> None:
        self.config = config
        self.connection_id = config.connection_id
        self.conversation_id = config.conversation_id
        self.source = source
        self.engine = engine
        self.engine_name = engine_name
        self.bus = bus
        self.state = STARTING
        self.error: dict[str, Any] | None = None
        self.created_at = time.time()
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.counts: Counter[str] = Counter()
        self.audio_seconds = 0.0
        self.last_frame_at: float | None = None
        self.backlog: dict[str, Any] = {}  # the engine's last backlog report (engines that give one)
        self.behind = False
        self._stop_timeout = stop_timeout
        self._on_ended = on_ended
        self._stream: EngineStream | None = None
        self._analyzer = analyzer_factory(config, self.emit) if analyzer_factory else None
        self._outgoing = OutgoingFilter(config)  # sentiment + redaction, before the bus journals anything
        self._closers: list[Callable[[], None]] = []
        self._engine_failed = False
        # A remote engine that fails for good after open() (bad credentials, server gone) tells us here.
        config.extra.setdefault("on_fatal", self._on_engine_fatal)
        self._stopping = threading.Event()
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"session-{self.connection_id[:8]}", daemon=True)
        self.log = log.bind(connection_id=self.connection_id)

    # -- events -------------------------------------------------------------------------------
    def emit(self, event_type: str, data: dict[str, Any]) -> None:
        """Publish one event of this connection (thread-safe; engines and sources call it)."""
        self.counts[event_type] += 1
        if self._outgoing.active:
            data = self._outgoing.apply(event_type, data)
        self.bus.publish(self.connection_id, self.conversation_id, event_type, data)
        if self._analyzer is not None:
            if event_type == "message_response":
                self._analyzer.on_messages(data.get("messages", []))
            elif event_type == "transcript_response":
                self._analyzer.on_transcript(data)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the engine stream (errors raise here, before anything is published) and go live."""
        try:
            self._stream = self.engine.open(self.config, self.emit)
        except EngineError as e:
            self.source.close()
            raise ControlError.from_error(e, "engine_error") from None
        self.started_at = time.time()
        self.state = LIVE
        self.emit("connection_started", self.as_dict())
        self._thread.start()

    def _run(self) -> None:
        assert self._stream is not None
        try:
            for pcm in self.source.frames():
                self._stream.feed(pcm)
                self.audio_seconds += len(pcm) / 32000
                self.last_frame_at = time.monotonic()
            if self._engine_failed:
                self._finish(FAILED, "engine_failed")
                return
            reason = "stopped" if self._stopping.is_set() else "source_ended"
            self._finish(STOPPED, reason)
        except SourceError as e:
            self.error = {"code": e.code, "message": e.message, "details": e.details}
            self.log.warning("source_failed", code=e.code, error=e.message)
            self._finish(FAILED, "source_failed")
        except Exception as e:
            self.log.exception("session_crashed")
            self.error = {"code": "internal", "message": f"{type(e).__name__}: {e}", "details": {}}
            self._finish(FAILED, "internal")

    def _finish(self, final_state: str, reason: str) -> None:
        """Flush everything that was captured, then announce the end. Runs on the session thread."""
        self.state = STOPPING
        try:
            if self._stream is not None:
                self._stream.finish()
        except Exception as e:  # the engine failing to flush must not leave the session hanging
            self.log.exception("engine_finish_failed")
            self.error = self.error or {"code": "engine_error", "message": str(e), "details": {}}
            final_state = FAILED
        if self._analyzer is not None:
            try:
                self._analyzer.flush()
            except Exception:
                self.log.exception("analytics_flush_failed")
        self._close_quietly()
        self._stream = None  # the registry keeps up to 1000 ended sessions: keep them small
        self._analyzer = None
        self.ended_at = time.time()
        self.state = final_state
        body = self.as_dict()
        body["reason"] = reason
        self.emit("connection_failed" if final_state == FAILED else "connection_stopped", body)
        self.emit("conversation_completed", {"conversationId": self.conversation_id,
                                             "connectionId": self.connection_id})
        self.bus.close_connection(self.connection_id)
        self._ended.set()
        self.log.info("session_ended", state=final_state, reason=reason, audio_s=round(self.audio_seconds, 2))
        if self._on_ended is not None:
            self._on_ended(self)

    def _close_quietly(self) -> None:
        for closer in (getattr(self._stream, "close", None), getattr(self._analyzer, "close", None)):
            if closer is not None:
                try:
                    closer()
                except Exception:
                    self.log.exception("close_failed")

    def _on_engine_fatal(self, error: Exception) -> None:
        self.error = {"code": getattr(error, "code", "engine_error"), "message": str(getattr(error, "message", error)),
                      "details": getattr(error, "details", {})}
        self.log.warning("engine_failed", error=self.error["message"])
        self._engine_failed = True
        self.source.close()  # ends the feed loop; _run then fails the session after flushing

    def on_close(self, closer: Callable[[], None]) -> None:
        """Something feeding this connection (an attached microphone) to stop before the source closes."""
        self._closers.append(closer)

    def stop(self, timeout: float | None = None) -> dict[str, Any]:
        """Stop capturing, flush finals, and return the final connection object."""
        if self.state in ENDED:
            raise ControlError("invalid_state", f"connection {self.connection_id} is already {self.state}",
                               {"connectionId": self.connection_id, "state": self.state})
        self._stopping.set()
        for closer in self._closers:
            closer()
        self.source.close()
        if not self._ended.wait(self._stop_timeout if timeout is None else timeout):
            self.log.error("stop_timed_out")
            raise ControlError("busy", f"connection {self.connection_id} did not finish flushing in time; "
                               "it is still stopping", {"connectionId": self.connection_id})
        return self.as_dict()

    def check_backlog(self, behind_s: float = 5.0, caught_up_s: float = 2.0) -> None:
        """Tell, never silently lag: an ``engine_backlog`` event each time the engine falls behind
        (a final waiting ``behind_s``) or catches up (below ``caught_up_s``). Daemon housekeeping calls it."""
        probe = getattr(self._stream, "backlog", None)
        if probe is None or self.ended:
            return
        self.backlog = probe()
        waited = float(self.backlog.get("behindSeconds", 0.0))
        behind = waited >= behind_s or (self.behind and waited >= caught_up_s)
        if behind != self.behind:
            self.behind = behind
            self.emit("engine_backlog", {"behind": behind, **self.backlog})
            (self.log.warning if behind else self.log.info)("engine_backlog", behind=behind, **self.backlog)

    def wait(self, timeout: float | None = None) -> bool:
        return self._ended.wait(timeout)

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def as_dict(self) -> dict[str, Any]:
        c = self.config
        end = self.ended_at or time.time()
        return {
            "connectionId": self.connection_id,
            "conversationId": self.conversation_id,
            "state": self.state,
            "engine": self.engine_name,
            "source": self.source.describe(),
            "insightTypes": list(c.insight_types),
            "meetingTitle": c.meeting_title,
            "speaker": c.speaker,
            "createdAt": iso_now(self.created_at),
            "startedAt": iso_now(self.started_at) if self.started_at else None,
            "endedAt": iso_now(self.ended_at) if self.ended_at else None,
            "durationSeconds": round(end - (self.started_at or end), 3),
            "audioSeconds": round(self.audio_seconds, 3),
            "lastSeq": self.bus.last_seq(self.connection_id),
            "events": dict(self.counts),
            "error": self.error,
            "backlog": {**self.backlog, "behind": self.behind},
        }


class SessionRegistry:
    """All connections of this daemon run, live and ended (ended ones kept for ``get``/``stop`` errors)."""

    def __init__(self, max_live: int = 16, keep_ended: int = 100,
                 on_pruned: Callable[[str], None] | None = None) -> None:
        self.max_live = max_live
        self.keep_ended = keep_ended
        self._on_pruned = on_pruned  # an ended connection left memory: its history now lives in the journal
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def add(self, session: Session) -> None:
        with self._lock:
            if session.connection_id in self._sessions:
                raise ControlError("bad_request", f"connection id {session.connection_id} is already in use",
                                   {"connectionId": session.connection_id})
            if sum(1 for s in self._sessions.values() if not s.ended) >= self.max_live:
                raise ControlError("limit_exceeded", f"at most {self.max_live} live connections",
                                   {"limit": self.max_live})
            self._sessions[session.connection_id] = session
            ended = [k for k, s in self._sessions.items() if s.ended]
            pruned = ended[: max(0, len(ended) - self.keep_ended)]
            for k in pruned:
                del self._sessions[k]
        for k in pruned:
            if self._on_pruned is not None:
                self._on_pruned(k)

    def remove(self, connection_id: str) -> None:
        with self._lock:
            self._sessions.pop(connection_id, None)

    def find(self, connection_id: str) -> Session | None:
        with self._lock:
            return self._sessions.get(connection_id)

    def get(self, connection_id: str) -> Session:
        s = self.find(connection_id)
        if s is None:
            raise ControlError("unknown_connection", f"no connection {connection_id!r}",
                               {"connectionId": connection_id})
        return s

    def all(self) -> list[Session]:
        with self._lock:
            return list(self._sessions.values())

    def live(self) -> list[Session]:
        return [s for s in self.all() if not s.ended]
