"""Every control command, declared once: its request and reply as typed structures.

This module is the single source of the control protocol's commands. From it

- the daemon validates each request (``symbld.control.registry`` decodes ``args`` into the
  command's request type, so a handler only ever sees checked, typed values),
- ``describe`` publishes each command's request and reply as JSON Schema,
- ``symblctl.Client`` gets one method per command, and the CLI its subcommands,
- ``docs/protocol.md``'s command reference is generated (``scripts/gen_protocol_doc.py``; a test
  fails when the document and this module disagree).

Wire names are camelCase, Python names snake_case (``rename="camel"``). Unknown fields are ignored
so newer clients work with older daemons. Adding a command: one ``Command`` subclass here plus its
handler in ``symbld/control/commands/``.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta, Struct

ConnectionId = Annotated[str, Meta(min_length=1, max_length=128,
                                   description="the connection's id (a conversationId names its connection too)")]
ClientConnectionId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9-]{6,64}$",
                                         description="choose the id yourself (Symbl allows it)")]
NonEmpty = Annotated[str, Meta(min_length=1, max_length=4096)]
InsightType = Literal["question", "action_item", "follow_up"]
SourceKind = Literal["file", "push", "mic", "sip", "pstn", "symbl"]
Device = str | Annotated[int, Meta(ge=0, lt=1 << 16)]


class Shape(Struct, kw_only=True, omit_defaults=True, rename="camel"):
    """A JSON object on the wire."""


# -- nested argument shapes ------------------------------------------------------------------------
class FileSource(Shape, tag="file", tag_field="type"):
    """Decode a file (WAV, FLAC, OGG, MP3), in real time or as fast as the engine goes."""

    path: Annotated[str, Meta(min_length=1, max_length=4096)]
    realtime: bool = True


class PushSource(Shape, tag="push", tag_field="type"):
    """Audio the client sends with ``send_audio``."""

    sample_rate: Annotated[int, Meta(ge=8000, le=48000)] = 16000
    encoding: Literal["LINEAR16"] = "LINEAR16"


class MicSource(Shape, tag="mic", tag_field="type"):
    """The daemon's microphone (PortAudio)."""

    device: Annotated[str, Meta(max_length=256)] | Annotated[int, Meta(ge=0, lt=1 << 16)] | None = None


class SipSource(Shape, tag="sip", tag_field="type", forbid_unknown_fields=False):
    """Dial a SIP URI (Symbl's telephony form)."""

    uri: Annotated[str, Meta(min_length=1, max_length=1024)]
    audio_config: dict[str, Any] | None = None
    dtmf: str | None = None


class PstnSource(Shape, tag="pstn", tag_field="type"):
    """Dial a phone number through the configured SIP gateway."""

    phone_number: Annotated[str, Meta(min_length=1, max_length=64)]
    dtmf: str | None = None
    audio_config: dict[str, Any] | None = None


Source = FileSource | PushSource | MicSource | SipSource | PstnSource


class Speaker(Shape):
    user_id: str | None = None
    name: str | None = None


class Tracker(Shape):
    name: Annotated[str, Meta(min_length=1, max_length=256)]
    vocabulary: Annotated[list[Annotated[str, Meta(min_length=1, max_length=256)]], Meta(min_length=1)]


class Action(Shape):
    invoke_on: str
    name: str
    parameters: dict[str, Any] = {}


# -- commands ---------------------------------------------------------------------------------------
class Command(Shape):
    """A control request's ``args``. Subclasses set ``name`` and the class flags."""

    name: ClassVar[str]
    slow: ClassVar[bool] = False  # may wait on an engine, a device or a call: its own thread, a longer timeout
    mutating: ClassVar[bool] = False  # changes state: logged with the peer's credentials
    payload: ClassVar[bool] = False  # a binary frame follows the JSON one
    reply: ClassVar[type[Struct] | None] = None
    timeout: ClassVar[float | None] = None  # the client's default wait for the reply


class ConnectionRef(Command):
    connection_id: ConnectionId


# Replies: the fields every daemon sends. Replies may carry more (newer daemons add fields).
class Pong(Shape):
    pong: bool
    version: str
    pid: int
    uptime: float


class Connection(Shape):
    connection_id: str
    conversation_id: str
    state: str
    engine: str | None = None
    source: dict[str, Any] = {}
    created_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    audio_seconds: float = 0.0
    last_seq: int | None = None
    error: dict[str, Any] | None = None


class Ping(Command):
    """Liveness check."""

    name = "ping"
    reply = Pong


class Description(Shape):
    version: str
    protocol: int
    engines: dict[str, dict[str, Any]]
    default_engine: str
    event_types: list[str]
    commands: list[dict[str, Any]]
    error_codes: dict[str, str]


class Describe(Command):
    """What this daemon can do: version, engines, event types, endpoints, audio sources, commands."""

    name = "describe"
    reply = Description


class Status(Shape):
    connections: list[Connection]
    live: int
    uptime: float
    published: int
    requests: int


class StatusRequest(Command):
    """All connections of this daemon run (live first), plus daemon counters."""

    name = "status"
    reply = Status


class Start(Command):
    """Start a connection: an audio source feeding an engine. Returns at once with the ids."""

    name = "start"
    slow = True
    mutating = True
    reply = Connection
    timeout = 60.0
    source: Source | None = None
    telephony: dict[str, Any] | None = msgspec.field(default=None)  # Symbl's form: same as a sip/pstn source
    engine: Annotated[str, Meta(max_length=64, description="engine name (describe lists them)")] | None = None
    insight_types: list[InsightType] | None = None
    config: dict[str, Any] = {}
    speaker: Speaker | None = None
    trackers: list[dict[str, Any]] = []
    custom_vocabulary: list[Annotated[str, Meta(min_length=1, max_length=256)]] = []
    actions: list[dict[str, Any]] = []
    connection_id: ClientConnectionId | None = None
    sentiment: Annotated[bool, Meta(description="sentiment on messages and topics (Symbl's shape)")] | None = None
    detect_entities: Annotated[bool, Meta(description="entity_response events (dates, amounts, ...)")] | None = None
    redaction: bool | list[str] | dict[str, Any] | None = None


class Stop(ConnectionRef):
    """Stop a connection: flush final results and return the final connection object."""

    name = "stop"
    slow = True
    mutating = True
    reply = Connection
    timeout = 120.0


class Get(ConnectionRef):
    """One connection's object (also for connections of an earlier daemon run, from the journal)."""

    name = "get"
    reply = Connection


class Events(Shape):
    events: list[dict[str, Any]]
    last_seq: int
    more: bool


class History(ConnectionRef):
    """Events of a connection after a given seq, oldest first (memory, then the journal)."""

    name = "history"
    reply = Events
    after_seq: Annotated[int, Meta(ge=0, description="return events with seq > afterSeq")] = 0
    limit: Annotated[int, Meta(ge=1, le=10_000)] = 1000
    gap: Annotated[bool, Meta(description="true when refilling events the events socket dropped")] = False


class Subscription(Shape):
    events: str
    topics: list[str]
    connections: list[Connection]


class Subscribe(Command):
    """Where and how to listen, the state of every live connection, and a sync marker."""

    name = "subscribe"
    reply = Subscription
    connection_id: Annotated[str, Meta(min_length=1, max_length=128,
                                       description="one connection, or omit for all")] | None = None
    types: list[Annotated[str, Meta(min_length=1, max_length=64)]] | None = None
    token: Annotated[str, Meta(max_length=64, description="echoed on topic sync.<token>")] | None = None


class Accepted(Shape):
    accepted: int


class SendAudio(ConnectionRef):
    """Feed LINEAR16 audio to a connection started with source {"type": "push"} (a second, binary frame)."""

    name = "send_audio"
    payload = True
    reply = Accepted
    sample_rate: Annotated[int, Meta(description="the rate of this audio; must match the connection's")] | None = None
    end: Annotated[bool, Meta(description="no more audio will follow: flush and stop when processed")] = False


class DeviceList(Shape):
    devices: list[dict[str, Any]]


class Devices(Command):
    """Audio input devices the daemon can capture from (PortAudio re-scanned on each call)."""

    name = "devices"
    slow = True
    reply = DeviceList


class MicState(Shape):
    state: str


class Pause(ConnectionRef):
    """Pause a microphone connection: silence is sent meanwhile so engines and remote sessions stay alive."""

    name = "pause"
    mutating = True
    reply = MicState


class Resume(ConnectionRef):
    """Resume a paused (or muted) microphone connection."""

    name = "resume"
    mutating = True
    reply = MicState


class Mute(ConnectionRef):
    """Mute (or with on=false unmute) a microphone connection; muted audio is replaced by silence."""

    name = "mute"
    mutating = True
    reply = MicState
    on: bool = True


class AttachMic(ConnectionRef):
    """Feed an existing push connection from the daemon's microphone (the SDK's send_audio_from_mic)."""

    name = "attach_mic"
    slow = True
    mutating = True
    reply = Connection
    device: Annotated[str, Meta(max_length=256)] | Annotated[int, Meta(ge=0, lt=1 << 16)] | None = None


class Stopping(Shape):
    stopping: bool
    live: int


class Shutdown(Command):
    """Stop every connection (flushing finals) and exit."""

    name = "shutdown"
    mutating = True
    reply = Stopping
    timeout = 30.0


class ConversationList(Shape):
    conversations: list[dict[str, Any]]


class Conversations(Command):
    """Past and live conversations, newest first, from the journals (kept journal_retention_days)."""

    name = "conversations"
    slow = True
    reply = ConversationList
    timeout = 60.0
    since: Annotated[str, Meta(max_length=64,
                               description="ISO 8601: only conversations started at or after")] | None = None
    source: SourceKind | None = None
    limit: Annotated[int, Meta(ge=1, le=10_000, description="at most this many, newest first")] = 100


class ConnectionIds(Shape):
    connections: list[str]


class FindConversation(Command):
    """The connections (live, or in the journal) that carry a conversationId, oldest first."""

    name = "find_conversation"
    reply = ConnectionIds
    conversation_id: Annotated[str, Meta(min_length=1, max_length=128, description="Symbl's conversationId")]


class Deleted(Shape):
    connection_id: str
    deleted: bool


class DeleteConnection(ConnectionRef):
    """Forget an ended connection: its journal file is removed from disk, its history from memory."""

    name = "delete_connection"
    mutating = True
    reply = Deleted


class Summary(Shape):
    connection_id: str
    live: bool
    summary: list[dict[str, Any]]


class SummaryRequest(ConnectionRef):
    """Symbl's summary of a connection so far: sentences said, each with its message reference."""

    name = "summary"
    reply = Summary
    limit: Annotated[int, Meta(ge=1, le=50, description="sentences wanted (default: about one per four "
                                                       "messages, at most 5)")] | None = None


class Nats(Command):
    """NATS bridge state: connection, node, stream, and counters (published, finals, behind, ...)."""

    name = "nats"


def _all_commands() -> dict[str, type[Command]]:
    found: dict[str, type[Command]] = {}
    todo = list(Command.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if "name" in cls.__dict__:
            if cls.name in found:
                raise RuntimeError(f"command {cls.name} declared twice")
            found[cls.name] = cls
    return dict(sorted(found.items()))


COMMANDS: dict[str, type[Command]] = _all_commands()
