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

from symbld import languages
from symbld.audio.base import AudioSource, SourceError
from symbld.core import recovery
from symbld.core.bus import EventBus
from symbld.core.flow import FlowControl, FlowSettings
from symbld.core.ids import iso_now
from symbld.engines.base import Engine, EngineError, EngineStream, StreamConfig
from symbld.errors import ControlError
from symbld.insights.outgoing import OutgoingFilter

log = structlog.get_logger(__name__)

STARTING, LIVE, STOPPING, STOPPED, FAILED = "starting", "live", "stopping", "stopped", "failed"
SPOOLED = "spooled"  # the daemon stopped before decoding all of it; the next start finishes it
ENDED = (STOPPED, FAILED, SPOOLED)


class Session:
    def __init__(self, *, config: StreamConfig, source: AudioSource, engine: Engine, engine_name: str,
                 bus: EventBus, analyzer_factory: Callable[..., Any] | None = None,
                 on_ended: Callable[[Session], None] | None = None, stop_timeout: float = 60.0,
                 flow: FlowSettings | None = None,
                 transform: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None) -> None:
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
        self._counts_lock = threading.Lock()  # emit runs on the session, decode and source threads
        self.audio_seconds = 0.0
        self.last_frame_at: float | None = None
        self.backlog: dict[str, Any] = {}  # the engine's last backlog report (engines that give one)
        self.language: str | None = None  # the newest message's metadata.language
        self.behind = False
        self._stop_timeout = stop_timeout
        self._flow_settings = flow or FlowSettings()
        self._flow: FlowControl | None = None
        self._tee: recovery.AudioTee | None = None
        self._transform = transform  # recovered sessions mark their events and shift their times
        self._abandon = threading.Event()  # shutdown cannot wait: spool what is left (abandon())
        self.losses = {"audioSecondsDropped": 0.0, "finalsDropped": 0}
        self._on_ended = on_ended
        self._stream: EngineStream | None = None
        self._analyzer = analyzer_factory(config, self.emit) if analyzer_factory else None
        self._outgoing = OutgoingFilter(config)  # sentiment + redaction, before the bus journals anything
        self._labeller = _labeller(config)  # speaker labels on one mixed channel (docs/diarization.md)
        if self._labeller is not None:  # the engine tells when an utterance closes: its print starts then
            config.extra["on_utterance"] = self._labeller.prefetch
            self._labeller.on_ready = self._settle_speakers  # a late final's prints came: publish its revisions
        # A result and the revisions of its labels go out in order: a late print's revision never before its message.
        self._labelled = threading.RLock()
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
        if event_type == "transcript_response" and self._tee is not None and data.get("isFinal"):
            d = data.get("duration") or {}
            self._tee.mark_decoded(float(d.get("timeOffset", 0)) + float(d.get("duration", 0)))
        if self._labeller is not None and event_type in ("transcript_response", "message_response"):
            if event_type == "transcript_response" and data.get("isFinal"):
                self._labeller.await_prints(data, self._paced())  # live: 100 ms at most, then a provisional label
            with self._labelled:
                try:
                    data, revisions = self._labeller.label(event_type, data)
                except Exception:  # a speaker label is never worth a lost transcript
                    self.log.exception("diarization_failed")
                    revisions = []
                self._publish(event_type, data)
                for revision in revisions:
                    self.emit("speaker_revision", revision)
            return
        self._publish(event_type, data)

    def _publish(self, event_type: str, data: dict[str, Any]) -> None:
        if event_type == "speaker_revision" and data.get("parts"):  # a late print split a message: its parts
            data = {**data, "parts": self._as_published({"messages": data["parts"]})["messages"]}
        if self._transform is not None:
            data = self._transform(event_type, data)
        with self._counts_lock:
            self.counts[event_type] += 1
        if self._outgoing.active:  # sentiment + redaction: before anything is journaled or published
            data = self._outgoing.apply(event_type, data)
        self.bus.publish(self.connection_id, self.conversation_id, event_type, data)
        if event_type == "message_response":
            self._note_language(data)
        if self._analyzer is not None:
            if event_type == "message_response":
                self._analyzer.on_messages(data.get("messages", []))
            elif event_type == "transcript_response":
                self._analyzer.on_transcript(data)

    def _paced(self) -> bool:
        """The audio comes as it is spoken, so someone may be waiting on its finals: a mic, a file played in
        real time, audio pushed no more than a second ahead of the wall clock (the engine's rule for "ahead")."""
        if getattr(self.source, "realtime", True) is False:
            return False
        if self.started_at is None:
            return True
        return self.audio_seconds - (time.time() - self.started_at) <= 1.0

    def _as_published(self, data: dict[str, Any]) -> dict[str, Any]:
        """Messages the labeller made after their message went out (a late print's split), with their times
        as a message_response's are published (a recovered session shifts them). Redaction needs nothing
        here: it masks every string of every event, the revision's parts included."""
        return self._transform("message_response", data) if self._transform is not None else data

    def _settle_speakers(self, wait_all: bool = False) -> None:
        """Late prints came (the labeller's settling thread; ``wait_all``: the connection's end, after the
        engine's last final): publish the revisions of the messages they attribute to another speaker."""
        if self._labeller is None:
            return
        if wait_all:
            self._labeller.wait_pending()
        with self._labelled:
            for revision in self._labeller.settle():
                self.emit("speaker_revision", revision)

    def _note_language(self, data: dict[str, Any]) -> None:
        """The language of the newest message: the connection object's ``language`` (in auto, the
        detected one)."""
        for m in data.get("messages") or []:
            lang = (m.get("metadata") or {}).get("language")
            if isinstance(lang, str):
                self.language = lang

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the engine stream (errors raise here, before anything is published) and go live."""
        try:
            self._stream = self.engine.open(self.config, self.emit)
        except EngineError as e:
            self.source.close()
            raise ControlError.from_error(e, "engine_error") from None
        self.started_at = time.time()
        feed: Callable[[bytes], None] = self._stream.feed
        if self._labeller is not None:  # the labeller hears exactly what the engine hears, at its positions
            feed = _tee(feed, self._labeller.feed)
        if self._flow_settings.spool_dir is not None:
            self._tee = recovery.AudioTee(self._flow_settings.spool_dir / f"{self.connection_id}.pcm", feed)
            feed = self._tee.feed
        self._flow = FlowControl(stream=self._stream, feed=feed, source_kind=self.source.kind,
                                 settings=self._flow_settings, connection_id=self.connection_id, emit=self.emit,
                                 stopped=self._abandon)
        self.state = LIVE
        self.emit("connection_started", self.as_dict())
        self._thread.start()

    def _run(self) -> None:
        assert self._stream is not None
        try:
            assert self._flow is not None
            for n, pcm in enumerate(self.source.frames(), 1):
                if self._abandon.is_set():
                    self._keep_for_recovery(pcm)
                else:
                    self._flow.feed(pcm)
                self.audio_seconds += len(pcm) / 32000
                self.last_frame_at = time.monotonic()
                if self._tee is not None and n % 500 == 0:
                    self._tee.roll(bool(self.backlog_now().get("pendingFinals")))
            if not self._abandon.is_set():
                self._flow.finish()
            if self._abandon.is_set():
                self._spool_out()
                return
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
        if self._abandon.is_set():  # shutdown closed the stream under finish(): spool the rest
            self._spool_out()
            return
        left = self.backlog_now()
        if left.get("pendingFinals"):  # finish() gave up: count what was lost, never hide it
            self.losses["finalsDropped"] += int(left["pendingFinals"])
            self.losses["audioSecondsDropped"] += float(left.get("queuedSeconds", 0.0))
            self.log.error("finals_dropped", **left)
        if self._tee is not None:
            self._tee.close()
        try:
            self._settle_speakers(wait_all=True)  # the last finals' late prints: revised before the end
        except Exception:
            self.log.exception("diarization_failed")
        self._keep_speaker_prints()
        if self._analyzer is not None:
            try:
                self._analyzer.flush()
            except Exception:
                self.log.exception("analytics_flush_failed")
        self._close_quietly()
        self._stream = None  # the registry keeps the last 100 ended sessions: keep them small
        self._let_go()
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

    def _keep_speaker_prints(self) -> None:
        """Its speakers' prints, for enrolling one of them by name later (diarization/speaker_prints.py)."""
        keep = self.config.extra.get("keep_speaker_prints")
        if self._labeller is None or keep is None:
            return
        try:
            keep(self._labeller.speaker_prints())
        except Exception:  # a full disk costs later enrolment, never the end of the connection
            self.log.exception("speaker_prints_not_kept")

    def backlog_now(self) -> dict[str, Any]:
        probe = getattr(self._stream, "backlog", None)
        return probe() if probe is not None else {}

    # -- shutdown that cannot wait for the engine ------------------------------------------------
    def abandon(self) -> None:
        """The daemon must exit now: stop decoding, keep what is left on disk for the next start."""
        if self.ended or self._tee is None:
            return
        self._abandon.set()
        self._stopping.set()
        rush = getattr(self.source, "rush", None)  # a file or recovered audio: read the rest into the spool
        if rush is not None:
            rush()
        else:
            self.source.close()
        stream = self._stream
        if stream is not None:
            stream.close()  # queued finals dropped here are in the spool (after the last final)

    def _keep_for_recovery(self, pcm: bytes) -> None:
        assert self._tee is not None
        self._tee.keep(pcm)

    def _spool_out(self) -> None:
        """Runs on the session thread after abandon(): note, event, end (no connection_stopped)."""
        assert self._tee is not None and self._flow is not None
        self._flow.spill(self._tee.keep)  # a live source's spooled audio goes into the same file
        if self._stream is not None:
            self._stream.close()
        tee = self._tee
        resume = max(tee.decoded(), tee.base)
        seconds = round((tee.fed - resume) / 32000, 3)
        if tee.failed:
            self.losses["audioSecondsDropped"] += seconds
        tee.close(keep=not tee.failed)
        shift = float(self.config.extra.get("recovery_shift", 0.0))
        if not tee.failed:
            recovery.save(tee, self.config, self.config.started_at, shift, "shutdown")
        self.ended_at = time.time()
        self.state = SPOOLED
        self.emit("audio_spooled", {"connectionId": self.connection_id, "reason": "shutdown",
                                    "spooledSeconds": seconds, "resumeAtSeconds": round(resume / 32000 + shift, 3),
                                    "decodedAtNextStart": not tee.failed, **self.losses})
        self._close_quietly()
        self._stream = None
        self._let_go()
        self._analyzer = None
        self.bus.close_connection(self.connection_id)
        self._ended.set()
        self.log.warning("session_spooled", seconds=seconds)
        if self._on_ended is not None:
            self._on_ended(self)

    def _let_go(self) -> None:
        """Nothing of an ended session may hold its engine stream or its audio buffers."""
        if self._labeller is not None:
            self._labeller.let_go()
        if self._flow is not None:
            self._flow.detach()
        if self._tee is not None:
            self._tee.detach()

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

    def finalize(self, wait: float = 10.0) -> bool | None:
        """Make what the engine heard so far final, the connection going on (the ``finalize`` command).

        Pushed audio is finalized in order: after every byte sent before the request was fed (a mark in
        the push queue, run on the session thread). True: an utterance was open and its final follows;
        False: nothing was open; None: the queued audio was not read within ``wait`` (the engine is
        behind), and the finalize happens when it is.
        """
        if self.state != LIVE or self._stream is None:
            raise ControlError("invalid_state", f"connection {self.connection_id} is {self.state}",
                               {"connectionId": self.connection_id, "state": self.state})
        close_now = getattr(self._stream, "finalize", None)
        if close_now is None:
            raise ControlError("bad_request", f"the {self.engine_name} engine cannot finalize before the end of "
                               "the audio; stop the connection instead", {"engine": self.engine_name})
        mark = getattr(self.source, "mark", None)
        if mark is None:  # a live capture: the engine is fed as it arrives
            return bool(close_now())
        done = threading.Event()
        result: list[bool] = []

        def run() -> None:
            result.append(bool(close_now()))
            done.set()

        try:
            mark(run)
        except SourceError as e:
            raise ControlError.from_error(e, "invalid_state") from None
        return result[0] if done.wait(wait) else None

    def _counts_copy(self) -> dict[str, int]:
        with self._counts_lock:
            return dict(self.counts)

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

    def diarization_work(self) -> dict[str, Any]:
        """What its voice prints cost and how they kept up (empty when it does not diarize)."""
        return self._labeller.work() if self._labeller is not None else {}

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
            **languages.connection_fields(c.language_code, c.translate, self.language),
            "speaker": c.speaker,
            "diarization": c.extra.get("diarization"),
            **({"diarizationWork": self.diarization_work()} if self._labeller is not None else {}),
            "createdAt": iso_now(self.created_at),
            "startedAt": iso_now(self.started_at) if self.started_at else None,
            "endedAt": iso_now(self.ended_at) if self.ended_at else None,
            "durationSeconds": round(end - (self.started_at or end), 3),
            "audioSeconds": round(self.audio_seconds, 3),
            "lastSeq": self.bus.last_seq(self.connection_id),
            "events": self._counts_copy(),
            "error": self.error,
            "backlog": {**self.backlog, "behind": self.behind},
            # Flow control: holds, spooling, and every loss (zero unless the disk failed).
            "flow": {**(self._flow.as_dict() if self._flow else {}), **self.losses,
                     "audioSecondsDropped": round(self.losses["audioSecondsDropped"]
                                                  + (self._flow.dropped_seconds if self._flow else 0.0), 3)},
        }


def _labeller(config: StreamConfig) -> Any:
    settings = config.extra.get("diarization")
    if not settings:
        return None
    from symbld.diarization.labeller import Labeller  # the [diarize] extra: only where it runs

    return Labeller(config.connection_id, settings, config.extra.get("voices"))


def _tee(first: Callable[[bytes], None], second: Callable[[bytes], None]) -> Callable[[bytes], None]:
    def feed(pcm: bytes) -> None:
        second(pcm)
        first(pcm)

    return feed


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
