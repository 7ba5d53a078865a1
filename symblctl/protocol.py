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
# (?!\n): Python's $ also matches before a final newline, and "id\n" must not pass.
ClientConnectionId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9-]{6,64}$(?!\n)",
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

    path: Annotated[str, Meta(min_length=1, max_length=4096, description="absolute, or relative to the "
                                                                          "daemon's directory (symblctl resolves it)")]
    realtime: Annotated[bool, Meta(description="paced as if spoken; false: as fast as the engine goes")] = True


class PushSource(Shape, tag="push", tag_field="type"):
    """Audio the client sends with ``send_audio``."""

    sample_rate: Annotated[int, Meta(ge=8000, le=48000, description="Hz of the pushed audio")] = 16000
    encoding: Annotated[Literal["LINEAR16"], Meta(description="16-bit little-endian mono PCM")] = "LINEAR16"


class MicSource(Shape, tag="mic", tag_field="type"):
    """The daemon's microphone (PortAudio)."""

    device: Annotated[str, Meta(max_length=256, description="device name (symblctl devices)")] | Annotated[
        int, Meta(ge=0, lt=1 << 16, description="device index")] | None = None


class AudioConfig(Shape):
    """Symbl's ``endpoint.audioConfig``, accepted as Symbl's SDKs send it: the call's codec is negotiated in SDP
    (G.711), so these only say what the caller expects."""

    encoding: Annotated[str, Meta(max_length=32, description="PCMU, PCMA, OPUS, ...")] | None = None
    sample_rate: Annotated[int, Meta(ge=8000, le=48000, description="Hz")] | None = None
    sample_size: Annotated[str, Meta(max_length=8, description="bits, as a string (Symbl's docs)")] | Annotated[
        int, Meta(ge=8, le=32, description="bits")] | None = None
    payload_type: Annotated[int, Meta(ge=0, le=127, description="the RTP payload type")] | None = None


Dtmf = Annotated[str, Meta(pattern=r"^[0-9A-Da-d*#,]{0,64}$(?!\n)",
                           description="digits to send once the call is answered: 0-9 * # A-D, ',' a pause")]


class SipSource(Shape, tag="sip", tag_field="type"):
    """Dial a SIP URI (Symbl's telephony form). Symbl's other endpoint keys (``providerName``,
    ``transportConfig``, ...) are accepted and ignored, as every unknown field."""

    uri: Annotated[str, Meta(min_length=1, max_length=1024, description="sip:user@host[:port]")]
    audio_config: AudioConfig | None = None
    dtmf: Dtmf | None = None


class PstnSource(Shape, tag="pstn", tag_field="type"):
    """Dial a phone number through the configured SIP gateway."""

    phone_number: Annotated[str, Meta(min_length=1, max_length=64, description="E.164, e.g. +14155550100")]
    dtmf: Dtmf | None = None
    audio_config: AudioConfig | None = None


Call = SipSource | PstnSource
Source = FileSource | PushSource | MicSource | SipSource | PstnSource


# BCP 47-ish: a 2-3 letter language, then subtags (en, en-US, zh-Hant-TW, es-419). What a language means
# for the engines is theirs to say; this only refuses what cannot be a language tag (5, ["x"], {"a": 1}).
# Typed here; which tags are supported is the daemon's (symbld.languages.parse: bad_request naming them).
LanguageCode = Annotated[str, Meta(min_length=1, max_length=64,
                                   description="a BCP 47 language tag (en-US, es-ES, ...) or auto (docs/languages.md)")]


RedactionKind = Literal["email", "card", "phone", "spoken_digits"]


class RedactionOptions(Shape):
    """``redaction`` as an object: ``{"enabled": true, "kinds": [...]}`` (kinds omitted: all of them)."""

    enabled: bool = True
    kinds: list[RedactionKind] | None = None


# true (every kind), false, a list of kinds, or {enabled, kinds}; docs/insights.md.
Redaction = Annotated[bool | list[RedactionKind] | RedactionOptions,
                      Meta(description="mask personal data: true, or kinds [email, card, phone, spoken_digits]")]


class TrackerOptions(Shape):
    """``config.trackers``: how tracker matches are reported."""

    interim_results: Annotated[bool, Meta(description="tracker_response on interim text too")] = False


class Tracker(Shape):
    """A Symbl tracker: a name and the phrases that count as a mention of it (docs/insights.md)."""

    name: Annotated[str, Meta(min_length=1, max_length=256, pattern=r"\S", description="not blank")]
    vocabulary: Annotated[list[Annotated[str, Meta(min_length=1, max_length=200, pattern=r"[A-Za-z0-9]",
                                                   description="a phrase with a letter or digit")]],
                          Meta(min_length=1, max_length=50, description="at most 50 terms (Symbl's limit)")]
    id: Annotated[str, Meta(max_length=256, description="kept as given (Symbl's tracker id)")] | None = None


# Symbl's limit: 500 trackers per connection.
Trackers = Annotated[list[Tracker], Meta(max_length=500)]


# One address, deliberately simple: no spaces, controls or angle brackets, one @, a dotted domain (or localhost).
# Spaces around it are trimmed; anything else (a header smuggled in after a newline) is refused.
EmailAddress = Annotated[str, Meta(pattern=r'^\s*[^@\s<>()\[\],;:"\\]{1,64}@'
                                           r"[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})*\s*$(?!\n)",
                                   max_length=320, description="an e-mail address")]


class SummaryEmailParameters(Shape):
    emails: Annotated[list[EmailAddress], Meta(min_length=1, max_length=50, description="the recipients")]


class Action(Shape):
    """An action run when the connection ends (Symbl's ``actions``): the summary e-mail (docs/insights.md)."""

    invoke_on: Literal["stop"]
    name: Literal["sendSummaryEmail"]
    parameters: SummaryEmailParameters


class StartConfig(Shape):
    """Symbl's ``start_request.config``. Keys Symbl defines that symbld has no use for (``speechRecognition``,
    ...) are accepted and ignored, as every unknown field; the ones below are checked."""

    meeting_title: Annotated[str, Meta(max_length=4096, description="the meeting's title (summary mail, "
                                                                    "page)")] | None = None
    confidence_threshold: Annotated[float, Meta(ge=0, le=1, description="Symbl's confidenceThreshold")] = 0.5
    timezone_offset: Annotated[int, Meta(ge=-840, le=840, description="minutes west of UTC, as JavaScript's "
                                                                      "getTimezoneOffset() (480 = UTC-8)")] \
        | None = None
    language_code: LanguageCode | None = None
    translate: Annotated[bool, Meta(description="English text (Whisper's translate task); docs/languages.md")] \
        | None = None
    enable_speaker_diarization: Annotated[bool, Meta(description="Symbl's name for start's diarization")] | None = None
    diarization_speaker_count: Annotated[int, Meta(ge=1, le=32, description="Symbl's name: exactly this many "
                                                                            "speakers")] | None = None
    trackers: TrackerOptions | None = None
    sentiment: Annotated[bool, Meta(description="as the top-level sentiment")] | None = None
    detect_entities: Annotated[bool, Meta(description="as the top-level detectEntities")] | None = None
    redaction: Annotated[Redaction, Meta(description="as the top-level redaction")] | None = None


class Speaker(Shape):
    """Who is speaking on a connection: their words carry this userId and name."""

    user_id: Annotated[str, Meta(max_length=256, description="the speaker's id (an e-mail, say)")] | None = None
    name: Annotated[str, Meta(max_length=256, description="the name messages show")] | None = None


class Diarization(Shape):
    """Speaker diarization bounds: labels "Speaker 1".."Speaker N" on one mixed channel."""

    min_speakers: Annotated[int, Meta(ge=1, le=32, description="at least this many speakers")] | None = None
    max_speakers: Annotated[int, Meta(ge=1, le=32, description="at most this many speakers")] | None = None


# -- commands ---------------------------------------------------------------------------------------
class Command(Shape):
    """A control request's ``args``. Subclasses set ``name`` and the class flags."""

    name: ClassVar[str]
    slow: ClassVar[bool] = False  # may wait on an engine, a device or a call: its own thread, a longer timeout
    mutating: ClassVar[bool] = False  # changes state: logged with the peer's credentials
    payload: ClassVar[bool] = False  # a binary frame follows the JSON one
    reply: ClassVar[type[Struct] | None] = None
    timeout: ClassVar[float | None] = None  # the client's default wait for the reply
    names_connection: ClassVar[bool] = False  # its connection_id names an existing connection (or conversation)


class ConnectionRef(Command):
    names_connection = True
    connection_id: ConnectionId


# Replies: the fields every daemon sends. Replies may carry more (newer daemons add fields).
class Pong(Shape):
    pong: bool
    version: str
    pid: int
    uptime: float


class Flow(Shape):
    """Flow control of one connection: holds, spooling to disk, and every loss (zero unless the disk failed)."""

    audio_seconds_dropped: float
    finals_dropped: int
    max_backlog_seconds: float | None = None
    level: int | None = None
    holds: int | None = None
    held_seconds: float | None = None
    spooled_seconds: float | None = None
    spool_pending_seconds: float | None = None
    spool_failures: int | None = None


class DiarizationWork(Shape):
    """What a diarizing connection's voice prints cost and how they kept up with its finals (docs/diarization.md)."""

    provisional_finals: Annotated[int, Meta(description="finals published before their prints were ready (after "
                                                        "100 ms), with a provisional label")] = 0
    late_revised_messages: Annotated[int, Meta(description="messages their late prints attributed to another "
                                                           "speaker (speaker_revision, reason late)")] = 0
    tail_prints: Annotated[int, Meta(description="utterances heard from their last 3 s only: the embedding "
                                                 "thread was 1 s or more behind the finals")] = 0
    skipped_prints: Annotated[int, Meta(description="utterances given no print: 20 s or more behind (their "
                                                    "provisional labels stay)")] = 0
    print_cpu_seconds: Annotated[float, Meta(description="CPU-seconds spent taking voice prints")] = 0.0
    print_cpu_per_audio_second: Annotated[float, Meta(description="the same per second of audio fed")] = 0.0
    waiting_finals: Annotated[int, Meta(description="finals published whose prints are still to come")] = 0


class Connection(Shape):
    """The connection object: what ``start``, ``get`` and ``stop`` return and ``connection_started`` carries."""

    connection_id: str
    conversation_id: str
    state: Annotated[str, Meta(description="starting, live, stopping, stopped or failed (error says why); "
                                           "unknown for a journal without an end event")]
    engine: str | None = None
    source: Annotated[dict[str, Any], Meta(description="the source's own description: kind and its figures")] = {}
    insight_types: list[str] = []
    meeting_title: str | None = None
    language_code: Annotated[str, Meta(description="the languageCode asked for (BCP-47, or auto)")] | None = None
    language: Annotated[str, Meta(description="the language spoken (BCP-47); in auto the newest message's, "
                                              "null before it")] | None = None
    translate: Annotated[bool, Meta(description="messages are translated to English")] = False
    insight_support: Annotated[dict[str, bool], Meta(description="which insights work on this language's "
                                                                 "text (docs/languages.md)")] | None = None
    speaker: Speaker | None = None
    diarization: Annotated[dict[str, Any], Meta(description="speaker labels on this connection: minSpeakers, "
                                                            "maxSpeakers, thresholds; null: off")] | None = None
    diarization_work: DiarizationWork | None = None
    created_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration_seconds: float | None = None
    audio_seconds: float | None = None
    last_seq: Annotated[int, Meta(description="the seq of its newest event")] | None = None
    events: Annotated[dict[str, int], Meta(description="events published so far, per type")] = {}
    error: Annotated[dict[str, Any], Meta(description="why it failed: code and message")] | None = None
    backlog: Annotated[dict[str, Any], Meta(description="how far the engine is behind the audio")] = {}
    flow: Flow | None = None
    reason: Annotated[str, Meta(description="why it ended (journal objects)")] | None = None
    from_journal: Annotated[bool, Meta(description="true: the last state an earlier run journaled")] = False
    summary: Annotated[list[SummarySentence], Meta(description="stop's reply only: the conversation's summary "
                                                               "(as the summary command gives it)")] | None = None


class Ping(Command):
    """Liveness check."""

    name = "ping"
    reply = Pong


class Endpoints(Shape):
    control: str
    events: str


class Limits(Shape):
    max_connections: int
    history_per_connection: Annotated[int, Meta(description="events kept in memory per connection")]


class CommandInfo(Shape):
    """One command in ``describe``: its flags and its request and reply as JSON Schema references."""

    name: str
    summary: str
    slow: bool
    mutating: bool
    payload: Annotated[bool, Meta(description="a binary frame follows the JSON one")]
    args: Annotated[dict[str, dict[str, Any]], Meta(description="name -> {type, required, doc} (flat form)")]
    request: Annotated[dict[str, str], Meta(description='{"$ref": "#/schemas/<Name>"}')]
    reply: Annotated[dict[str, str], Meta(description='{"$ref": "#/schemas/<Name>"}')]


class EventInfo(Shape):
    """One event type in ``describe`` (declared in ``symblctl/events.py``)."""

    scope: Annotated[Literal["connection", "daemon"], Meta(description="topic connection.<id>.<type> or "
                                                                       "daemon.<type>")]
    publisher: str
    summary: str
    data: Annotated[dict[str, str], Meta(description='{"$ref": "#/schemas/<Name>"}')]


class Description(Shape):
    version: str
    protocol: int
    engines: Annotated[dict[str, dict[str, Any]], Meta(description="engine name -> what it is and its state")]
    default_engine: str
    endpoints: Endpoints
    audio_sources: Annotated[dict[str, dict[str, Any]], Meta(description="kind -> {available, reason?, ...}")]
    limits: Limits
    event_types: Annotated[list[str], Meta(description="every event type this daemon publishes "
                                                       "(symblctl/events.py)")]
    insight_types: list[str]
    commands: list[CommandInfo]
    schemas: Annotated[dict[str, dict[str, Any]], Meta(description="JSON Schema of every request and reply type, "
                                                                  "of every event's data and of every "
                                                                  "configuration table, by name")]
    error_codes: Annotated[dict[str, str], Meta(description="code -> meaning")]
    symbl_server: Annotated[dict[str, Any], Meta(description="the Symbl-compatible server, when on")] | None = None
    diarization: Annotated[dict[str, Any], Meta(description="speaker labels: {available, model, extra, "
                                                            "reason?}")] | None = None
    languages: Annotated[dict[str, Any], Meta(description="languageCode default, the languages each engine's "
                                                          "models serve, which insights work in which "
                                                          "language (docs/languages.md)")] = {}
    events: Annotated[dict[str, EventInfo], Meta(description="event type -> its scope, publisher and data's "
                                                             "schema")] = {}
    config: Annotated[dict[str, dict[str, str]], Meta(description="each configuration table as written in the "
                                                                   "TOML (\"engine.local\", \"smtp\", ...; \"\" "
                                                                   "for the top-level keys) -> its schema")] = {}


class Describe(Command):
    """What this daemon can do: version, engines, event types, endpoints, audio sources, commands."""

    name = "describe"
    reply = Description


class Drops(Shape):
    """Events PUB dropped for slow subscribers, as the subscribers that refilled the gap reported."""

    gap_refills: int
    refilled_events: int
    queue_per_subscriber: int


class JournalState(Shape):
    """Events published but not yet journaled because the disk failed (kept in memory, retried)."""

    degraded: bool
    pending_events: int
    pending_bytes: int
    episodes: int
    written_late: int
    error: str | None = None


class Status(Shape):
    connections: list[Connection]
    live: int
    uptime: float
    published: Annotated[int, Meta(description="events published since start")]
    requests: Annotated[int, Meta(description="control requests answered since start")]
    drops: Drops
    cut: Annotated[list[dict[str, Any]], Meta(description="connections a crashed run left open")] = []
    models: Annotated[dict[str, str | None], Meta(description="engine -> the model it decodes with")] = {}
    languages: Annotated[dict[str, list[dict[str, Any]]],
                         Meta(description="engine -> its models: model, loaded, the languages it serves")] = {}
    journal: JournalState | None = None


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
    source: Annotated[Source, Meta(description="where the audio comes from (give this or telephony)")] | None = None
    telephony: Annotated[Call, Meta(description="Symbl's telephony form: the same as a sip or pstn source")] \
        | None = None
    engine: Annotated[str, Meta(max_length=64, description="engine name (describe lists them); default from "
                                                           "the config")] | None = None
    insight_types: Annotated[list[InsightType], Meta(description="insight types wanted; omitted: all three, "
                                                                 "[]: none")] | None = None
    config: Annotated[StartConfig, Meta(description="Symbl's start_request config")] | None = None
    speaker: Annotated[Speaker, Meta(description="who is speaking on this connection")] | None = None
    diarization: Annotated[bool | Diarization, Meta(description="label speakers on one mixed channel: true, "
                                                                 "false or {minSpeakers, maxSpeakers}; default: "
                                                                 "on for mic/file/push without a speaker when "
                                                                 "the [diarize] extra is installed")] | None = None
    trackers: Annotated[Trackers, Meta(description="what to track: at most 500, 50 terms each")] = []
    custom_vocabulary: Annotated[list[Annotated[str, Meta(min_length=1, max_length=256)]],
                                 Meta(description="words and names the engine should expect")] = []
    actions: Annotated[list[Action], Meta(description="run when the connection ends")] = []
    connection_id: ClientConnectionId | None = None
    conversation_id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9-]{6,64}$(?!\n)",
                                         description="join this conversation: one connection per speaker, as "
                                                     "the Symbl server does for each speaker socket")] | None = None
    sentiment: Annotated[bool, Meta(description="sentiment on messages and topics (Symbl's shape)")] | None = None
    detect_entities: Annotated[bool, Meta(description="entity_response events (dates, amounts, ...)")] | None = None
    redaction: Redaction | None = None
    end_of_turn: Annotated[Literal["auto", "fixed", "semantic"], Meta(description=(
        "the local engine's end of turn: fixed (endpoint_silence_ms of silence), semantic (the turn model at a "
        "short pause; needs the extra symbld[turn]), auto (semantic when installed); omitted: the config's"))] \
        | None = None


class Stop(ConnectionRef):
    """Stop a connection: flush final results and return the final connection object."""

    name = "stop"
    slow = True
    mutating = True
    reply = Connection
    timeout = 120.0


class Finalized(Shape):
    connection_id: str
    utterance_closed: Annotated[bool, Meta(description=(
        "true: an utterance was open; its final transcript_response and message_response follow on the events "
        "socket. false: nothing was open (silence since the last final), no event follows. Absent: the audio "
        "pushed before the request was not read within 10 s (the engine is behind); it is finalized when read"))] \
        | None = None


class Finalize(ConnectionRef):
    """Make what was heard so far final now, without ending the connection.

    Deepgram's Finalize, AssemblyAI's ForceEndpoint: the open utterance gets its final at once instead of
    after the endpoint's silence. Pushed audio sent before the request is included; audio sent after it opens
    a new utterance."""

    name = "finalize"
    slow = True  # waits (at most 10 s) for the pushed audio before it to be read
    mutating = True
    reply = Finalized
    timeout = 15.0


class Get(ConnectionRef):
    """One connection's object (also for connections of an earlier daemon run, from the journal)."""

    name = "get"
    reply = Connection


class Event(Shape):
    """One event, as published on the events socket."""

    v: int
    seq: int
    connection_id: str
    type: str
    time: str
    data: dict[str, Any]
    conversation_id: str | None = None
    request_id: Annotated[str, Meta(description="the id of the control request that caused it, for events "
                                                "published while that request ran (connection_started of "
                                                "start, speaker_event)")] | None = None


class Events(Shape):
    events: list[Event]
    last_seq: int
    more: Annotated[bool, Meta(description="more events follow: ask again after the last seq")]


class History(ConnectionRef):
    """Events of a connection after a given seq, oldest first (memory, then the journal); only events already
    journaled and sent, so a seq read here is never lost to a crash."""

    name = "history"
    reply = Events
    after_seq: Annotated[int, Meta(ge=0, description="return events with seq > afterSeq")] = 0
    limit: Annotated[int, Meta(ge=1, le=10_000, description="at most this many events")] = 1000
    gap: Annotated[bool, Meta(description="true when refilling events the events socket dropped")] = False


class Subscription(Shape):
    events: Annotated[str, Meta(description="the events endpoint")]
    topics: Annotated[list[str], Meta(description="subscribe your SUB socket to these")]
    connections: Annotated[list[Connection], Meta(description="the live connections asked about")]
    remote: Annotated[bool, Meta(description="true: a connection on the configured Symbl endpoint")] = False


class Subscribe(Command):
    """Where and how to listen, the state of every live connection, and a sync marker."""

    name = "subscribe"
    reply = Subscription
    names_connection = True
    connection_id: Annotated[str, Meta(min_length=1, max_length=128,
                                       description="one connection, or omit for all")] | None = None
    types: Annotated[list[Annotated[str, Meta(min_length=1, max_length=64)]],
                     Meta(description="event types wanted (describe lists them); omitted: all")] | None = None
    token: Annotated[str, Meta(max_length=64, description="echoed on topic sync.<token>")] | None = None


class Accepted(Shape):
    accepted: Annotated[int, Meta(description="bytes of audio queued")]


class SendAudio(ConnectionRef):
    """Feed LINEAR16 audio to a connection started with source {"type": "push"} (a second, binary frame)."""

    name = "send_audio"
    payload = True
    reply = Accepted
    max_payload: ClassVar[int] = 1 << 20  # bytes of one audio frame (32 s at 16 kHz); one byte more: too_large
    sample_rate: Annotated[int, Meta(description="the rate of this audio; must match the connection's")] | None = None
    end: Annotated[bool, Meta(description="no more audio will follow: flush and stop when processed")] = False


class InputDevice(Shape):
    index: Annotated[int, Meta(description="PortAudio's device index (a mic source's device)")]
    name: str
    default: Annotated[bool, Meta(description="the default input device")]
    channels: Annotated[int, Meta(description="input channels")]
    samplerate: Annotated[float, Meta(description="the device's default sample rate, Hz")]
    hostapi: Annotated[str, Meta(description="PortAudio's host API: ALSA, JACK, ...")] | None = None


class DeviceList(Shape):
    devices: list[InputDevice]


class Devices(Command):
    """Audio input devices the daemon can capture from (PortAudio re-scanned on each call)."""

    name = "devices"
    slow = True
    reply = DeviceList


class MicState(Shape):
    state: Annotated[str, Meta(description="capturing, paused or muted")]


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
    on: Annotated[bool, Meta(description="false unmutes")] = True


class MicAttached(Shape):
    connection_id: str
    source: Annotated[dict[str, Any], Meta(description="the pushed-audio source's description")]
    mic: Annotated[dict[str, Any], Meta(description="the microphone's description: device and state")]


class AttachMic(ConnectionRef):
    """Feed an existing push connection from the daemon's microphone (the SDK's send_audio_from_mic)."""

    name = "attach_mic"
    slow = True
    mutating = True
    reply = MicAttached
    device: Annotated[str, Meta(max_length=256, description="device name (symblctl devices)")] | Annotated[
        int, Meta(ge=0, lt=1 << 16, description="device index")] | None = None


class Stopping(Shape):
    stopping: bool
    live: Annotated[int, Meta(description="connections being stopped")]


class Shutdown(Command):
    """Stop every connection (flushing finals) and exit."""

    name = "shutdown"
    mutating = True
    reply = Stopping
    timeout = 30.0


class ConversationEntry(Shape):
    """One conversation, from its journal (a live one with its current figures)."""

    connection_id: str
    source_label: Annotated[str, Meta(description='e.g. "file meeting.flac", "sip sip:bob@host"')]
    words: int
    state: Annotated[str, Meta(description="live, stopped, failed, or cut: a daemon died under it")]
    conversation_id: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration_seconds: float | None = None
    audio_seconds: float | None = None
    source: Annotated[str, Meta(description="the source kind")] | None = None
    title: Annotated[str, Meta(description="the meeting title")] | None = None
    engine: str | None = None
    reason: Annotated[str, Meta(description="why it ended")] | None = None


class ConversationList(Shape):
    conversations: list[ConversationEntry]


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


class MessageRef(Shape):
    id: str


class SummarySentence(Shape):
    id: str
    text: str
    message_refs: Annotated[list[MessageRef], Meta(description="the message the sentence comes from")]


class Summary(Shape):
    connection_id: str
    live: bool
    summary: list[SummarySentence]


class SummaryRequest(ConnectionRef):
    """Symbl's summary of a connection so far: sentences said, each with its message reference."""

    name = "summary"
    reply = Summary
    limit: Annotated[int, Meta(ge=1, le=50, description="sentences wanted (default: about one per four "
                                                       "messages, at most 5)")] | None = None


class NatsState(Shape):
    """Without a ``[nats]`` table only ``enabled: false``."""

    enabled: bool
    servers: Annotated[list[str], Meta(description="server URLs, credentials redacted")] = []
    node: str | None = None
    stream: str | None = None
    auth: Annotated[str, Meta(description="credentials, token, user or none")] | None = None
    tls: bool = False
    connected: bool = False
    disconnects: int = 0
    control_requests: int = 0
    bridge: Annotated[dict[str, int], Meta(description="published, finals, fromJournal, overflowed, duplicates, "
                                                       "publishFailures, daemonEventsDropped, behind, queued")] = {}


class PageLink(Shape):
    connection_id: str
    conversation_id: str
    url: Annotated[str, Meta(description="the signed link to the summary page (docs/summary-page.md)")]


class SummaryPage(ConnectionRef):
    """The summary page of a conversation (transcript, insights, summary; live while it runs)."""

    name = "summary_page"
    reply = PageLink


class SpeakerUser(Shape):
    """Who a speaker event is about: a userId or a name (an ``id``, as Symbl's SDKs send one, is kept as given)."""

    user_id: Annotated[str, Meta(max_length=256)] | None = None
    name: Annotated[str, Meta(max_length=256)] | None = None
    id: Annotated[str, Meta(max_length=256)] | None = None


class SpeakerEventData(Shape):
    type: str
    time_offset: Annotated[float, Meta(description="the audio position it applies from (seconds)")]
    timestamp: str
    user: SpeakerUser | None = None


class SpeakerEvent(ConnectionRef):
    """Record who is speaking from now on a live connection (journaled as a speaker_event event)."""

    name = "speaker_event"
    mutating = True
    reply = SpeakerEventData
    type: Annotated[Literal["started_speaking", "stopped_speaking", "speaker_change", "joined", "left"],
                    Meta(description="what the speaker did (Symbl's speaker events)")]
    user: Annotated[SpeakerUser, Meta(description="who: a userId or a name")] | None = None
    time_offset: Annotated[float, Meta(ge=0, description="audio position (seconds of the connection's audio); "
                                                          "default: what it has had, less the delay since "
                                                          "timestamp (at most 5 s)")] | None = None
    timestamp: Annotated[str, Meta(max_length=64, description="the client's ISO 8601 time of the event")] | None = None


class Member(Shape):
    id: Annotated[str, Meta(min_length=1, max_length=256, description="the memberId")]
    name: Annotated[str, Meta(max_length=256)] | None = None
    email: Annotated[str, Meta(max_length=256)] | None = None


class Members(Shape):
    members: Annotated[dict[str, dict[str, str]], Meta(description="memberId → {name, email}")]


class ConversationMembers(Command):
    """Member names given by the Conversation API's PUT .../members/{id}: read, set or forget them."""

    name = "conversation_members"
    mutating = True
    reply = Members
    conversation_id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9-]{1,64}$(?!\n)",  # it names a file
                                         description="Symbl's conversationId")]
    member: Annotated[Member, Meta(description="rename this member")] | None = None
    forget: Annotated[bool, Meta(description="remove the conversation's member names (DELETE)")] = False


class Voice(Shape):
    """An enrolled voice (its print stays in the daemon's state directory)."""

    name: str
    user_id: str | None = None
    speech_seconds: Annotated[float, Meta(description="seconds of speech the print was taken from")] | None = None
    added_at: str | None = None


class Voices(Shape):
    voices: list[Voice]


class VoicesAdd(Command):
    """Enrol a known voice from a recording of them alone or a past conversation's speaker; matches get its name."""

    name = "voices_add"
    slow = True
    mutating = True
    reply = Voice
    timeout = 60.0
    voice_name: Annotated[str, Meta(min_length=1, max_length=200,
                                    description="the name messages will show (from.name)")] = msgspec.field(name="name")
    path: Annotated[str, Meta(min_length=1, max_length=4096, description=(
        "absolute path of an audio file with at least 1 s of their speech"))] | None = None
    user_id: Annotated[str, Meta(max_length=256, description="from.userId (default: the name)")] | None = None
    conversation_id: Annotated[str, Meta(min_length=1, max_length=128, description=(
        "instead of path: a past diarized conversation (or connection) id whose speaker to enrol"))] | None = None
    speaker: Annotated[str, Meta(min_length=1, max_length=200, description=(
        "with conversationId: that speaker's label as published, its name ('Speaker 2') or id"))] | None = None


class VoicesList(Command):
    """The enrolled voices."""

    name = "voices_list"
    reply = Voices


class VoicesRemove(Command):
    """Forget an enrolled voice (its print is deleted)."""

    name = "voices_remove"
    mutating = True
    reply = Voice
    voice_name: Annotated[str, Meta(min_length=1, max_length=200)] = msgspec.field(name="name")


class Nats(Command):
    """NATS bridge state: connection, node, stream, and counters (published, finals, behind, ...)."""

    name = "nats"
    reply = NatsState


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
