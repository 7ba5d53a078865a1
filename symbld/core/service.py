"""The daemon's connections as a service: start, feed, attach, find, stop, forget.

Control handlers (``symbld/control/commands/``) reach the daemon only through this object, and
through the methods the ``Service`` protocol in ``symbld/control/service.py`` lists. It owns no
socket and no thread of its own beyond the microphone pumps of attached microphones.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import msgspec

from symblctl import protocol
from symbld import languages
from symbld.audio.base import SourceContext, SourceError
from symbld.audio.push import PushSource
from symbld.config import section
from symbld.core.actions import normalised_actions
from symbld.core.bus import EventBus
from symbld.core.conversations import ConversationIndex
from symbld.core.conversations import resolve as resolve_connection_id
from symbld.core.flow import FlowSettings
from symbld.core.ids import new_connection_id, new_conversation_id
from symbld.core.journal import Journal
from symbld.core.sessions import Session, SessionRegistry
from symbld.core.sources import SourceFactory
from symbld.diarization import options as diarization_options
from symbld.diarization import speaker_prints
from symbld.diarization import voices as diarization_voices
from symbld.engines.base import Engine, RemoteEngine, StreamConfig, Subscription
from symbld.errors import ControlError
from symbld.insights import Analyzer
from symbld.insights.redaction import kinds_of
from symbld.insights.trackers import normalise_trackers


class Host(Protocol):
    """What the service needs of the process around it (``symbld.app.Daemon``)."""

    started_at: float
    cut_connections: list[dict[str, Any]]  # connections a crashed run left open (status reports them)

    def shutting_down(self) -> bool: ...
    def request_shutdown(self, reason: str) -> None: ...
    def live_changed(self) -> None: ...  # the set of live connections changed (systemd status line)
    def request_count(self) -> int: ...
    def symbl_server_info(self) -> dict[str, Any] | None: ...
    def nats_status(self) -> dict[str, Any]: ...


class ConnectionService:
    def __init__(self, config: dict[str, Any], *, state_dir: Path, engines: dict[str, Engine],
                 sessions: SessionRegistry, sources: SourceFactory, bus: EventBus, journal: Journal | None,
                 conversations: ConversationIndex | None, host: Host) -> None:
        self.config = config
        self.state_dir = state_dir
        self.engines = engines
        self.sessions = sessions
        self.sources = sources
        self.bus = bus
        self.journal = journal
        self.conversations = conversations
        self.host = host
        self.actions: Any = None  # the ActionRunner (summary e-mail) run when a connection ends; set by the daemon
        # A conversation's summary-page link while the daemon serves pages (set by the daemon: symbld.web.links).
        self.summary_url: Callable[[str], str | None] = lambda conversation_id: None
        self._attached_mics: dict[str, Any] = {}
        self._remote_subs: dict[str, Subscription] = {}

    # -- starting -----------------------------------------------------------------------------
    def start_session(self, args: protocol.Start) -> dict[str, Any]:
        """Start a connection from its decoded declaration (types and ranges hold; what is checked here is
        what no declaration can say: an engine that exists, an id not used before, a source that opens)."""
        if self.host.shutting_down():
            raise ControlError("busy", "symbld is shutting down")
        spec = args.source or args.telephony  # telephony: Symbl's name for a sip or pstn source
        if spec is None:
            raise ControlError("bad_request", 'start: give "source" (file, push, mic, sip, pstn) or "telephony"')
        engine_name = args.engine or self.config["default_engine"]
        engine = self.engines.get(engine_name)
        if engine is None:
            raise ControlError("bad_request", f"unknown engine {engine_name!r}; known: {sorted(self.engines)}",
                               {"known": sorted(self.engines)})
        stream_config = self._stream_config(args)
        stream_config.extra["diarization"] = diarization_options.resolve(args, _kind(spec), self.config)
        if args.connection_id and self.journal is not None and self.journal.exists(stream_config.connection_id):
            raise ControlError("bad_request", f"connection id {stream_config.connection_id} was used before (its "
                               "journal exists); choose another", {"connectionId": stream_config.connection_id,
                                                                    "reason": "journal_exists"})
        ctx = SourceContext(stream_config.connection_id, emit=lambda t, d: None, config=self.config)
        try:
            source = self.sources.open(spec, ctx)
        except SourceError as e:
            raise ControlError.from_error(e, "bad_request") from None
        try:
            stream_config.extra["diarization"] = diarization_options.ready(stream_config.extra["diarization"])
        except ControlError:
            source.close()
            raise
        if stream_config.extra["diarization"]:  # the enrolled voices it may name speakers after
            stream_config.extra["voices"] = diarization_voices.load(self.state_dir)
            stream_config.extra["keep_speaker_prints"] = functools.partial(
                speaker_prints.save, self.state_dir, stream_config.connection_id, stream_config.conversation_id)
        session = Session(config=stream_config, source=source, engine=engine, engine_name=engine_name,
                          bus=self.bus, analyzer_factory=self.analyzer_factory(engine),
                          stop_timeout=float(self.config["stop_timeout"]), on_ended=self.session_ended,
                          flow=FlowSettings.from_config(self.config, self.state_dir))
        ctx.emit = session.emit  # side news from the source goes out on this connection
        try:
            self.sessions.add(session)
        except ControlError:
            source.close()
            raise
        try:
            session.start()
        except ControlError:
            self.sessions.remove(session.connection_id)
            raise
        self.host.live_changed()
        return session.as_dict()

    def _stream_config(self, args: protocol.Start) -> StreamConfig:
        cfg = args.config or _NO_CONFIG
        tz = cfg.timezone_offset
        language, translate = _language_options(cfg, self.config)
        speaker = msgspec.to_builtins(args.speaker) if args.speaker is not None else None  # events carry it as is
        conversation_id = args.conversation_id or new_conversation_id()  # joining one: a speaker each
        return StreamConfig(
            connection_id=args.connection_id or new_connection_id(),
            conversation_id=conversation_id,
            insight_types=list(args.insight_types) if args.insight_types is not None else [
                "question", "action_item", "follow_up"],
            confidence_threshold=cfg.confidence_threshold,
            language_code=language.tag,
            translate=translate,
            meeting_title=cfg.meeting_title,
            speaker=speaker,
            trackers=normalise_trackers(args.trackers),
            tracker_interim_results=cfg.trackers is not None and cfg.trackers.interim_results,
            custom_vocabulary=list(args.custom_vocabulary),
            # Symbl's timezoneOffset is JavaScript's getTimezoneOffset(): minutes *west* of UTC (480 = UTC-8).
            timezone_offset_minutes=None if tz is None else -tz,
            started_at=time.time(),
            extra={"actions": normalised_actions(args.actions), "summary_url": self.summary_url(conversation_id),
                   **_privacy_options(args, cfg, self.config),
                   # the local engine reads its StreamSettings fields from extra: a per-connection override
                   **({"end_of_turn": args.end_of_turn} if args.end_of_turn else {})},
        )

    def analyzer_factory(self, engine: Engine) -> Any:
        if getattr(engine, "provides_insights", False):
            return None  # the engine's remote end computes them (Symbl cloud)
        return Analyzer

    def session_ended(self, session: Session) -> None:
        self.host.live_changed()
        actions = session.config.extra.get("actions")
        if actions and self.actions is not None:
            events = self.bus.all_events(session.connection_id)
            self.actions.on_connection_ended(session.as_dict(), events, actions)

    def push_audio(self, connection_id: str, payload: bytes | None, end: bool,
                   sample_rate: int | None = None) -> protocol.Accepted:
        session = self.sessions.get(connection_id)
        source = session.source
        if not isinstance(source, PushSource):
            raise ControlError("bad_request", f"connection {connection_id} reads from {source.kind}, not pushed audio; "
                               'start it with source {"type": "push"}', {"source": source.kind})
        if session.ended:
            raise ControlError("invalid_state", f"connection {connection_id} is {session.state}")
        if sample_rate is not None and sample_rate != source.sample_rate:
            raise ControlError("bad_request", f"audio at {sample_rate} Hz sent to a connection started at "
                               f"{source.sample_rate} Hz", {"expected": source.sample_rate, "got": sample_rate})
        if payload is None and not end:
            raise ControlError("bad_request", "send_audio: the audio goes in a second (binary) frame")
        accepted = 0
        try:
            if payload:
                accepted = source.push(payload)
            if end:
                source.close()
        except SourceError as e:
            raise ControlError.from_error(e, "bad_request") from None
        return protocol.Accepted(accepted=accepted)

    # -- microphone ---------------------------------------------------------------------------
    def input_devices(self) -> dict[str, Any]:
        try:
            from symbld.audio.mic import list_input_devices

            return {"devices": list_input_devices()}
        except SourceError as e:
            raise ControlError.from_error(e, "device_unavailable") from None

    def mic_feed_of(self, session: Session) -> Any:
        """The MicSource behind a connection: its own source, or one attached to its pushed audio."""
        if session.source.kind == "mic":
            return session.source
        return self._attached_mics.get(session.connection_id)

    def attach_mic(self, connection_id: str, device: str | int | None) -> dict[str, Any]:
        session = self.sessions.get(connection_id)
        source = session.source
        if not isinstance(source, PushSource):
            raise ControlError("bad_request", "attach_mic needs a connection started with pushed audio "
                               f'(source {{"type": "push"}}); this one reads from {source.kind}')
        if session.ended:
            raise ControlError("invalid_state", f"connection {connection_id} is {session.state}")
        if connection_id in self._attached_mics:
            raise ControlError("invalid_state", f"connection {connection_id} already has the microphone attached")
        hub = self.sources.mic_hub()
        try:
            hub.check(device)
            mic = hub.open(SourceContext(connection_id, emit=session.emit, config=self.config), device)
        except SourceError as e:
            raise ControlError.from_error(e, "bad_request") from None
        self._attached_mics[connection_id] = mic

        def pump() -> None:
            # Mic frames are 16 kHz mono; the push queue converts per chunk, whatever rate the connection took.
            try:
                for pcm in mic.frames():
                    try:
                        source.push(pcm, sample_rate=16000)
                    except SourceError:
                        break  # connection ended or its queue is full of unprocessed audio
            finally:
                mic.close()
                self._attached_mics.pop(connection_id, None)

        threading.Thread(target=pump, name=f"mic-pump-{connection_id[:8]}", daemon=True).start()
        session.on_close(mic.close)
        return {"connectionId": connection_id, "source": source.describe(), "mic": mic.describe()}

    def resolve_connection_id(self, value: str) -> str:
        """The connectionId named by ``value``: itself, or the connection of a conversationId."""
        return resolve_connection_id(
            value, known=self.known, index=self.conversations,
            live_by_conversation={s.conversation_id: s.connection_id for s in self.sessions.all()})

    def journaled_connection(self, connection_id: str) -> dict[str, Any]:
        """The last known object of a connection from an earlier run, from its journal."""
        if self.journal is None or not self.journal.exists(connection_id):
            raise ControlError("unknown_connection", f"no connection {connection_id!r}",
                               {"connectionId": connection_id})
        obj: dict[str, Any] = {"connectionId": connection_id, "state": "unknown"}
        for event in self.journal.read(connection_id):
            obj["conversationId"] = event.get("conversationId")
            obj["lastSeq"] = event.get("seq")
            if event.get("type") in ("connection_started", "connection_stopped", "connection_failed"):
                obj.update({k: v for k, v in event.get("data", {}).items() if k != "lastSeq"})
                obj["lastSeq"] = event.get("seq")
        obj["fromJournal"] = True
        return obj

    def subscribe_remote(self, connection_id: str) -> dict[str, Any] | None:
        """Listen-only subscription to a connection on the configured Symbl endpoint; its events are
        republished on our PUB under that connection id (and journaled like any other). None when no
        Symbl endpoint is configured."""
        engine = self.engines.get("symbl")
        if not isinstance(engine, RemoteEngine):
            return None
        # Only a configured [engine.symbl] means "ids I do not know may be the cloud's": otherwise an
        # unknown id is just unknown (no advice about Symbl credentials nobody asked for).
        if engine is None or not section(self.config, "engine", "symbl"):
            return None
        reply = {"events": self.config["events"], "topics": [f"connection.{connection_id}."], "connections": [],
                 "remote": True}
        if connection_id in self._remote_subs:
            return reply
        conversation = {"id": ""}

        def on_event(event_type: str, data: dict[str, Any]) -> None:
            conversation["id"] = data.get("conversationId") or conversation["id"]
            self.bus.publish(connection_id, conversation["id"], event_type, data)

        def on_end(_reason: str) -> None:
            self._remote_subs.pop(connection_id, None)
            self.bus.close_connection(connection_id)

        try:
            self._remote_subs[connection_id] = engine.subscribe(connection_id, on_event, on_end=on_end)
        except Exception as e:  # noqa: BLE001 - EngineError with the server's message, or a network error
            raise ControlError("engine_error", f"cannot subscribe to remote connection {connection_id}: {e}",
                               {"connectionId": connection_id}) from None
        return reply

    # -- lookups ---------------------------------------------------------------------------------

    @property
    def events_endpoint(self) -> str:
        return str(self.config["events"])

    def about(self) -> dict[str, Any]:
        """The daemon's part of ``describe``: engines, endpoints, audio sources, limits, the Symbl server."""
        return {
            "engines": {name: eng.describe() for name, eng in self.engines.items()},
            "defaultEngine": self.config["default_engine"],
            "endpoints": {"control": self.config["control"], "events": self.config["events"]},
            "audioSources": self.sources.describe(),
            "limits": {"maxConnections": self.sessions.max_live,
                       "historyPerConnection": self.config["history_per_connection"]},
            "symblServer": self.host.symbl_server_info(),
            "languages": languages.describe(self.config.get("language") or "en-US", self._model_languages()),
        }

    def _model_languages(self) -> dict[str, list[dict[str, Any]]]:
        """Engine → its models and the languages each serves (engines that have local models)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for name, eng in self.engines.items():
            models = getattr(eng, "models", None)
            if callable(models):
                out[name] = models()
        return out

    def counters(self) -> dict[str, Any]:
        """The daemon's part of ``status``: traffic, cut connections, models, drops, the journal."""
        return {
            "published": self.bus.published,
            "requests": self.host.request_count(),
            "cut": self.host.cut_connections,
            "models": {name: eng.describe().get("model") for name, eng in self.engines.items()},  # which model decodes
            "languages": self._model_languages(),
            # PUB drops silently at a subscriber's queue limit; clients that refill a gap say so.
            "drops": {"gapRefills": self.bus.refills, "refilledEvents": self.bus.refilled_events,
                      "queuePerSubscriber": self.config["event_queue_per_subscriber"]},
            # Disk full / I/O errors: events published but not yet journaled (kept in memory, retried).
            "journal": self.bus.backlog.state() if self.bus.backlog is not None else None,
        }

    def known(self, connection_id: str) -> bool:
        """A connection of this run, or one whose journal is on disk."""
        if self.sessions.find(connection_id) is not None:  # memory first: every request naming an id asks
            return True
        return bool(self.journal and self.journal.exists(connection_id))

    def conversation_connections(self, conversation_id: str, *, journal: bool = True) -> list[str]:
        """Every connection of a conversation (a speaker socket each): this run's, then (unless
        ``journal`` is false: memory only, no file read) the journal's."""
        found = [s.connection_id for s in self.sessions.all() if s.conversation_id == conversation_id]
        if journal and self.journal is not None:
            for cid in self.journal.connection_ids():
                if cid not in found and _first_event_conversation(self.journal.path(cid)) == conversation_id:
                    found.append(cid)
        return found

    def require_known(self, connection_id: str) -> None:
        if not self.known(connection_id):
            raise ControlError("unknown_connection", f"no connection {connection_id!r}",
                               {"connectionId": connection_id})

    def connection(self, connection_id: str) -> dict[str, Any]:
        """A connection's object: live from memory, else its last known state from the journal."""
        session = self.sessions.find(connection_id)
        return session.as_dict() if session is not None else self.journaled_connection(connection_id)

    def stop(self, connection_id: str) -> dict[str, Any]:
        ended_earlier = self.journal is not None and self.journal.exists(connection_id)
        if ended_earlier and self.sessions.find(connection_id) is None:
            raise ControlError("invalid_state", f"connection {connection_id} has already ended",
                               {"connectionId": connection_id})
        return self.sessions.get(connection_id).stop()

    def finalize(self, connection_id: str) -> protocol.Finalized:
        """What the connection's engine heard so far becomes final; the connection goes on."""
        closed = self.sessions.get(connection_id).finalize()
        return protocol.Finalized(connection_id=connection_id, utterance_closed=closed)

    def history(self, connection_id: str, after_seq: int, limit: int) -> list[dict[str, Any]]:
        return self.bus.history(connection_id, after_seq, limit, sent_only=True)

    def count_gap_refill(self, events: int) -> None:
        """A subscriber saw a seq gap (its PUB queue overflowed) and refilled ``events`` from history."""
        self.bus.refills += 1
        self.bus.refilled_events += events

    def close_remote_subscriptions(self) -> None:
        for sub in list(self._remote_subs.values()):
            with contextlib.suppress(Exception):
                sub.close()


_NO_CONFIG = protocol.StartConfig()


def _kind(spec: protocol.Source) -> str:
    """A declared source's type (its tag: file, push, mic, sip, pstn)."""
    return str(type(spec).__struct_config__.tag)


def _first(*values: Any) -> Any:
    """The first value given (not None): the start request's top level wins over its ``config``."""
    return next((v for v in values if v is not None), None)


def _privacy_options(args: protocol.Start, cfg: protocol.StartConfig, daemon_config: dict[str, Any]) -> dict[str, Any]:
    """``sentiment``, ``detectEntities`` and ``redaction`` from the start request (top level or in
    ``config``, as Symbl's SDKs put them), redaction defaulting to the daemon's ``redaction`` key."""
    redaction = _first(args.redaction, cfg.redaction, daemon_config.get("redaction"))
    return {"sentiment": bool(_first(args.sentiment, cfg.sentiment)), "redaction": sorted(kinds_of(redaction)),
            "detect_entities": bool(_first(args.detect_entities, cfg.detect_entities))}


def _language_options(cfg: protocol.StartConfig, daemon_config: dict[str, Any]) -> tuple[languages.Language, bool]:
    """``config.languageCode`` (default: the daemon's ``language`` key) and ``config.translate``."""
    code = cfg.language_code
    try:
        language = languages.parse(daemon_config.get("language") or "en-US" if code is None else code)
    except languages.LanguageError as e:
        supported = ["auto", *languages.WHISPER_LANGUAGES]
        raise ControlError("bad_request", f"config.{e}", {"argument": "config.languageCode",
                                                          "supported": supported}) from None
    return language, bool(cfg.translate)


def _first_event_conversation(path: Path) -> str | None:
    """The conversationId of a journal's first event (its connection_started), without reading the rest."""
    try:
        with open(path, "rb") as f:
            event = json.loads(f.readline())
    except (OSError, ValueError):
        return None
    return event.get("conversationId") if isinstance(event, dict) else None
