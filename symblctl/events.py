"""Every event symbld publishes, declared once: its type name and the shape of its ``data``.

This module is to events what ``symblctl.protocol`` is to commands. From it

- the daemon's event bus refuses to publish a type that is not declared here, and (with
  ``SYMBLD_CHECK_EVENTS=1``, as the tests run it) checks every event's ``data`` against its declaration,
- ``describe`` publishes the list of event types and each one's ``data`` as JSON Schema,
- ``docs/events.md``'s reference is generated (``scripts/gen_events_doc.py``; a test fails when the
  document and this module disagree).

Wire names are camelCase (``rename="camel"``). Fields a declaration does not name are allowed (consumers
must ignore fields they do not know), so a declaration says what is always or may be there, with its type.
A field that may be absent defaults to ``UNSET`` (left out of the JSON); one that may be ``null`` says
``| None``. Symbl's shapes (``*_response``) keep their own field order and spelling, byte for byte.

Adding an event: one ``EventData`` subclass here (``event_type``, ``publisher``, a docstring saying when it
is sent) and its name in ``EventType``; then ``python scripts/gen_events_doc.py``.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, get_args

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from symblctl.protocol import Connection

EventType = Literal[
    "transcript_response", "message_response", "insight_response", "topic_response", "tracker_response",
    "entity_response", "summary_response", "speaker_event", "speaker_revision", "end_of_turn", "turn_resumed",
    "connection_started", "connection_stopped", "connection_failed", "conversation_completed",
    "device_lost", "device_restored",
    "call_dialling", "call_ringing", "call_answered", "call_held", "call_dtmf", "call_ended", "call_failed",
    "engine_backlog", "engine_failover", "audio_spooled",
    "action_retrying", "action_failed", "action_completed",
    "ready", "stopping", "journal_degraded", "journal_recovered",
]
Scope = Literal["connection", "daemon"]


class EventData(Struct, kw_only=True, rename="camel"):
    """An event's ``data``. Subclasses set ``event_type``, ``publisher`` and (daemon events) ``scope``."""

    event_type: ClassVar[str]
    publisher: ClassVar[str]  # which part of the daemon sends it (the reference's "from" column)
    scope: ClassVar[Scope] = "connection"  # topic connection.<id>.<type>, or daemon.<type>


# -- pieces of Symbl's shapes ---------------------------------------------------------------------------
Seconds = Annotated[float, Meta(description="seconds from the start of the connection's audio")]


class Duration(Struct, rename="camel"):
    """Absolute start and end (ISO 8601 UTC) plus offset and length in seconds from the stream's start."""

    start_time: str
    end_time: str
    time_offset: Seconds | UnsetType = UNSET
    duration: float | UnsetType = UNSET


class Content(Struct, rename="camel"):
    content: str
    content_type: str = "text/plain"


class Punctuated(Struct):
    transcript: str


class User(Struct, rename="camel"):
    """Who spoke: ``id`` is stable per speaker and connection; ``name``/``userId`` as the client gave them."""

    id: str | UnsetType = UNSET
    name: str | UnsetType | None = UNSET
    user_id: str | UnsetType | None = UNSET


class MessageMetadata(Struct, rename="camel"):
    disable_punctuation: bool | UnsetType = UNSET
    timezone_offset: int | UnsetType = UNSET
    original_content: str | UnsetType = UNSET
    words: Annotated[str, Meta(description="a JSON-encoded string: [{word, startTime, endTime}] (Symbl's quirk)")] \
        | UnsetType = UNSET
    original_message_id: str | UnsetType = UNSET


class Message(Struct, rename={"from_": "from"}):
    """One finished sentence (an entry of ``message_response.messages``)."""

    id: str
    payload: Content
    from_: Annotated[User, Meta(description="{} without a speaker")] | UnsetType = UNSET
    channel: dict[str, Any] | UnsetType = UNSET
    metadata: MessageMetadata | UnsetType = UNSET
    dismissed: bool | UnsetType = UNSET
    duration: Duration | UnsetType = UNSET
    sentiment: Annotated[dict[str, Any], Meta(description="with sentiment: {polarity: {score}, suggested}")] \
        | UnsetType = UNSET


SymblItems = Annotated[list[dict[str, Any]], Meta(description="entries in Symbl's shape (docs/symbl-compat.md)")]


# -- speech ---------------------------------------------------------------------------------------------
class TranscriptResponse(EventData):
    """Live text of the current utterance: interims (``isFinal: false``) while someone speaks, then one final.
    All results of one utterance share ``id``; ``payload.content`` is the normalised text (lower case, no
    punctuation), ``punctuated.transcript`` the cased, punctuated one."""

    event_type = "transcript_response"
    publisher = "engine"
    type: Literal["transcript_response"]
    id: str | UnsetType = UNSET
    is_final: bool | UnsetType = UNSET
    payload: Content | UnsetType = UNSET
    punctuated: Punctuated | UnsetType = UNSET
    duration: Duration | UnsetType = UNSET
    user: Annotated[User, Meta(description="present when the connection has a speaker")] | UnsetType = UNSET


class MessageResponse(EventData):
    """After an utterance's final, its sentences. ``sequenceNumber`` counts this connection's
    ``message_response``s from 0."""

    event_type = "message_response"
    publisher = "engine"
    type: Literal["message_response"]
    messages: list[Message]
    sequence_number: int | UnsetType = UNSET


class InsightResponse(EventData):
    """Questions, action items and follow-ups found in finished messages (``insightTypes`` of ``start``)."""

    event_type = "insight_response"
    publisher = "insights"
    type: Literal["insight_response"]
    insights: SymblItems
    sequence_number: int | UnsetType = UNSET


class TopicResponse(EventData):
    """The conversation's topics so far, sent again whenever they change."""

    event_type = "topic_response"
    publisher = "insights"
    type: Literal["topic_response"]
    topics: SymblItems
    sequence_number: int | UnsetType = UNSET


class TrackerResponse(EventData):
    """Matches of the ``trackers`` of ``start``: interim ones on live text, final ones on messages."""

    event_type = "tracker_response"
    publisher = "insights"
    type: Literal["tracker_response"]
    is_final: bool | UnsetType = UNSET
    trackers: SymblItems | UnsetType = UNSET
    sequence_number: int | UnsetType = UNSET


class EntityResponse(EventData):
    """With ``detectEntities: true``: dates, times, amounts, phone numbers and e-mail addresses in messages."""

    event_type = "entity_response"
    publisher = "insights"
    type: Literal["entity_response"]
    entities: SymblItems
    sequence_number: int | UnsetType = UNSET


class SummaryResponse(EventData):
    """At the end of every connection that had messages, before ``connection_stopped``: the extractive summary
    (the ``summary`` command gives the same on demand)."""

    event_type = "summary_response"
    publisher = "insights"
    type: Literal["summary_response"]
    summary: Annotated[list[dict[str, Any]], Meta(description='[{"id", "text", "messageRefs": [{"id"}]}]')]
    sequence_number: int | UnsetType = UNSET


class SpeakerChange(EventData):
    """A client said who speaks from ``timeOffset`` (seconds of the connection's audio) on (the
    ``speaker_event`` command); the Symbl server re-attributes results by it."""

    event_type = "speaker_event"
    publisher = "speaker_event command"
    type: Annotated[str, Meta(description="started_speaking, stopped_speaking, speaker_change, joined, left")]
    time_offset: float
    timestamp: str
    user: dict[str, Any] | None = None


# (a rename mapping replaces the base's camel rule: every field named here, else it was connection_id on the wire)
class SpeakerRevision(EventData,
                      rename={"from_": "from", "connection_id": "connectionId", "message_ids": "messageIds"}):
    """Diarization found labels already sent wrong: ``merged`` (two labels are one person: every result that
    carried ``from``), ``identified`` (a label is an enrolled voice; ``to`` has its name and ``userId``) or
    ``late`` (these messages only: they went out before their voice prints were ready, with a provisional
    label, and the prints say ``to``, or with ``parts`` that the voice changes inside the one message; ``from``
    is ``{}`` when they went out with none). Sent right after the
    result that showed it, journaled; ``history`` readers, the Conversation API, the summary page and
    exports apply it (docs/diarization.md)."""

    event_type = "speaker_revision"
    publisher = "diarization"
    connection_id: str
    reason: Literal["merged", "identified", "late"]
    message_ids: Annotated[list[str], Meta(description="the messages whose from changes")]
    from_: Annotated[dict[str, Any], Meta(description="the label they had")]
    to: Annotated[dict[str, Any], Meta(description="the label they have now")]
    parts: Annotated[list[dict[str, Any]], Meta(description="late only, one message id: the prints found the voice "
                                                            "change inside it, so it is these messages now (split "
                                                            "there, each with its words and from; the first keeps "
                                                            "its id)")] | None = None


class EndOfTurn(EventData):
    """The speaker finished a turn (semantic end of turn only, docs/engine.md): published before that
    utterance's final. ``reason``: ``model`` (the turn model judged it complete), ``silence`` (the maximum
    silence passed) or ``finalize`` (the finalize command)."""

    event_type = "end_of_turn"
    publisher = "offline engine"
    utterance_id: str
    reason: Literal["model", "silence", "finalize"]
    probability: Annotated[float, Meta(description="the turn model's P(complete), when it was asked")] | None
    silence_ms: int
    time_offset: Seconds


class TurnResumed(EventData):
    """Speech came back within ``turn_resume_window_s`` (1 s) of an ``end_of_turn``: that turn was not over
    after all (semantic end of turn only)."""

    event_type = "turn_resumed"
    publisher = "offline engine"
    utterance_id: str
    gap_ms: int
    time_offset: Annotated[float, Meta(description="where the ended turn's speech stopped, seconds")]


# -- the connection's life ------------------------------------------------------------------------------
class ConnectionStarted(Connection):
    """The first event of every connection: the connection object."""

    event_type: ClassVar[str] = "connection_started"
    publisher: ClassVar[str] = "session"
    scope: ClassVar[Scope] = "connection"


class ConnectionEnded(EventData):
    """Fields of the final connection object every end event has, even one written at the next start."""

    connection_id: str
    conversation_id: str
    state: str
    reason: Annotated[str, Meta(description="stopped, source_ended, source_failed, engine_failed, "
                                            "daemon_restarted, spool_unreadable, internal")] | UnsetType = UNSET
    error: Annotated[dict[str, Any], Meta(description="code, message, details")] | UnsetType | None = UNSET


class ConnectionStopped(ConnectionEnded):
    """The connection ended normally (``stop``, the end of a file, ``send_audio`` with ``end``): the final
    connection object plus ``reason``."""

    event_type = "connection_stopped"
    publisher = "session"


class ConnectionFailed(ConnectionEnded):
    """The connection ended in failure: the final object, ``reason`` and ``error``. Also written at start-up for
    a connection an earlier run left open (``daemon_restarted``, with ``lastSeq`` and ``lastEventAt``) or whose
    spooled audio could not be decoded (``spool_unreadable``)."""

    event_type = "connection_failed"
    publisher = "session, start-up recovery"


class ConversationCompleted(EventData):
    """Right after ``connection_stopped``/``connection_failed``: the last event of the conversation itself.
    Actions run on stop (the summary e-mail) report after it, on the same connection (``action_*``);
    ``EventStream`` iteration ends here."""

    event_type = "conversation_completed"
    publisher = "session, start-up recovery"
    conversation_id: str
    connection_id: str
    summary_url: Annotated[str, Meta(description="the signed link of the conversation's summary page; absent "
                                                 "when [page] port = 0")] | UnsetType = UNSET


# -- sources --------------------------------------------------------------------------------------------
class DeviceLost(EventData):
    """Microphone capture stopped; silence is fed meanwhile and the connection stays live."""

    event_type = "device_lost"
    publisher = "microphone"
    device: str | int | None
    reason: Annotated[str, Meta(description="stream_inactive or no_frames")]
    message: str


class DeviceRestored(EventData):
    """Real audio flows again from the microphone."""

    event_type = "device_restored"
    publisher = "microphone"
    device: str | int | None
    downtime: Annotated[float, Meta(description="seconds without audio")]


class CallDialling(EventData):
    """The INVITE went out."""

    event_type = "call_dialling"
    publisher = "telephony"
    uri: str


class CallProgress(EventData):
    sip_code: int
    reason: str


class CallRinging(CallProgress):
    """The far end rings (SIP 180 or 183)."""

    event_type = "call_ringing"
    publisher = "telephony"


class CallAnswered(CallProgress):
    """The far end answered; ``codec`` is the negotiated one (PCMU, PCMA)."""

    event_type = "call_answered"
    publisher = "telephony"
    codec: str | None


class CallHeld(EventData):
    """The far end put the call on hold or took it off (re-INVITE)."""

    event_type = "call_held"
    publisher = "telephony"
    held: bool


class CallDtmf(EventData):
    """The ``dtmf`` digits were sent after the answer (``supported``: the far end offered telephone-event)."""

    event_type = "call_dtmf"
    publisher = "telephony"
    digits: str
    supported: bool | UnsetType = UNSET


class CallEnded(EventData):
    """The call ended: hung up here (``local``) or by the far end (``remote``)."""

    event_type = "call_ended"
    publisher = "telephony"
    sip_code: int | None
    reason: str
    by: Literal["local", "remote"]


class CallFailed(CallProgress):
    """The call could not be made; the connection then fails with error code ``call_failed``."""

    event_type = "call_failed"
    publisher = "telephony"


# -- the engine -----------------------------------------------------------------------------------------
class EngineBacklog(EventData):
    """The engine fell behind or caught up. From the offline engine (``behindSeconds``, ``pendingFinals``: ≥ 5 s
    behind real time, sent again when back under 2 s) and from flow control at each of its steps (``step``,
    ``maxSeconds``; docs/reliability.md). Audio is never dropped: finals arrive late, interims are skipped first."""

    event_type = "engine_backlog"
    publisher = "offline engine, flow control"
    behind: bool
    behind_seconds: float | UnsetType = UNSET
    pending_finals: int | UnsetType = UNSET
    queued_seconds: float | UnsetType = UNSET
    step: Literal["held", "interims_skipped", "spooling", "caught_up"] | UnsetType = UNSET
    max_seconds: float | UnsetType = UNSET
    degraded: Annotated[list[str] | int, Meta(description="flow control: what is skipped; the engine: its level")] \
        | UnsetType = UNSET
    held: bool | UnsetType = UNSET
    spooled_seconds: float | UnsetType = UNSET


class EngineFailover(EventData, rename={"from_": "from"}):
    """The Symbl endpoint stayed unreachable: the connection goes on with the offline engine."""

    event_type = "engine_failover"
    publisher = "symbl engine"
    from_: str
    to: str
    reason: str


class AudioSpooled(EventData):
    """The daemon stopped before decoding all of this connection's audio; the next start decodes it and
    publishes its events with ``"recovered": true`` and their original times, then ``connection_stopped`` /
    ``conversation_completed``."""

    event_type = "audio_spooled"
    publisher = "shutdown"
    connection_id: str
    reason: Annotated[str, Meta(description="shutdown")]
    spooled_seconds: float
    resume_at_seconds: float
    decoded_at_next_start: bool
    audio_seconds_dropped: float | UnsetType = UNSET
    finals_dropped: int | UnsetType = UNSET


# -- actions (the summary e-mail) -----------------------------------------------------------------------
class ActionAttempt(EventData):
    action: str
    invoke_on: str
    to: list[str]
    outbox_id: str
    attempt: int


class ActionRetrying(ActionAttempt):
    """A further attempt at an action whose last one failed for now."""

    event_type = "action_retrying"
    publisher = "actions"


class ActionFailed(ActionAttempt):
    """An attempt failed: ``permanent`` (the server refused; the entry goes to ``outbox/failed/``) or retried
    in ``retryInSeconds``."""

    event_type = "action_failed"
    publisher = "actions"
    error: str
    permanent: bool
    retry_in_seconds: float | UnsetType = UNSET


class ActionCompleted(ActionAttempt):
    """The action was carried out (the mail server took the summary e-mail)."""

    event_type = "action_completed"
    publisher = "actions"


# -- the daemon (topic daemon.<type>, no connectionId) --------------------------------------------------
class DaemonReady(EventData):
    """The daemon took its sockets and is ready for commands."""

    event_type = "ready"
    publisher = "daemon"
    scope = "daemon"
    pid: int
    version: str


class DaemonStopping(EventData):
    """The daemon is shutting down (live connections are stopped or spooled next)."""

    event_type = "stopping"
    publisher = "daemon"
    scope = "daemon"
    reason: str


class JournalDegraded(EventData):
    """A journal write failed (disk full, I/O error): events are still published and kept in memory, and
    written in order once the disk takes them again. ``status.journal`` shows the same."""

    event_type = "journal_degraded"
    publisher = "event bus"
    scope = "daemon"
    error: str | None
    pending_events: int


class JournalRecovered(EventData):
    """Every event kept in memory while the journal failed has been written."""

    event_type = "journal_recovered"
    publisher = "event bus"
    scope = "daemon"
    written_late: int


def _all_events() -> dict[str, type[Struct]]:
    found: dict[str, type[Struct]] = {}
    todo: list[type[Struct]] = [EventData, ConnectionStarted]
    while todo:
        cls = todo.pop(0)
        todo.extend(cls.__subclasses__())
        name = cls.__dict__.get("event_type")
        if isinstance(name, str):
            if name in found:
                raise RuntimeError(f"event {name} declared twice")
            found[name] = cls
    order = list(get_args(EventType))
    missing = set(found) ^ set(order)
    if missing:
        raise RuntimeError(f"EventType and the declarations disagree on {sorted(missing)}")
    return {name: found[name] for name in order}


EVENTS: dict[str, type[Struct]] = _all_events()  # type -> its data's declaration, in EventType's order


def data_of(data: Struct | dict[str, Any]) -> dict[str, Any]:
    """An event's ``data`` as the JSON object it is on the wire (a declaration, or a dict already)."""
    return msgspec.to_builtins(data) if isinstance(data, Struct) else data


def check(event_type: str, data: dict[str, Any]) -> None:
    """Raise ``EventShapeError`` when ``event_type`` is not declared or ``data`` does not fit its declaration."""
    decl = EVENTS.get(event_type)
    if decl is None:
        raise EventShapeError(f"event type {event_type!r} is not declared in symblctl/events.py")
    try:
        msgspec.convert(data, decl, strict=True)
    except msgspec.ValidationError as e:
        raise EventShapeError(f"{event_type}: {e}") from None


def decode(event_type: str, data: dict[str, Any]) -> Struct:
    """A received event's ``data`` as its declaration (for typed consumers; the SDK callbacks keep dicts)."""
    return msgspec.convert(data, EVENTS[event_type])


class EventShapeError(ValueError):
    """An event the declarations do not allow."""
