"""Command handlers. Each docstring shows the wire request and reply (docs/protocol.md has them all)."""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING, Any

from symbld import __version__
from symbld.control.envelope import PROTOCOL_VERSION, Request
from symbld.control.registry import COMMANDS, CONNECTION_ID, command
from symbld.control.schema import Arg
from symbld.core.errors import ERROR_CODES, ControlError
from symbld.core.ids import connection_topic

if TYPE_CHECKING:
    from symbld.app import Daemon

INSIGHT_TYPES = ("question", "action_item", "follow_up")
EVENT_TYPES = ("transcript_response", "message_response", "insight_response", "topic_response",
               "tracker_response", "connection_started", "connection_stopped", "connection_failed",
               "conversation_completed", "device_lost", "device_restored", "call_ringing", "call_answered",
               "call_dialling", "call_held", "call_dtmf", "call_ended", "call_failed", "engine_failover",
               "engine_backlog")
_CLIENT_CONNECTION_ID = re.compile(r"^[A-Za-z0-9-]{6,64}$")


@command("ping")
def ping(d: Daemon, args: dict[str, Any], req: Request) -> dict[str, Any]:
    """Liveness check.

    → {"v": 1, "id": "1", "cmd": "ping"}
    ← {"v": 1, "id": "1", "ok": true, "result": {"pong": true, "version": "0.1.0", "pid": 4242, "uptime": 12.5}}
    """
    return {"pong": True, "version": __version__, "pid": os.getpid(), "uptime": round(time.time() - d.started_at, 3)}


@command("describe")
def describe(d: Daemon, args: dict[str, Any], req: Request) -> dict[str, Any]:
    """What this daemon can do: version, engines, event types, endpoints, audio sources, commands.

    → {"v": 1, "id": "2", "cmd": "describe"}
    ← {"v": 1, "id": "2", "ok": true, "result": {"version": "0.1.0", "protocol": 1, "engines": {...},
       "defaultEngine": "local", "eventTypes": [...], "endpoints": {"control": "...", "events": "..."},
       "audioSources": {...}, "commands": [...], "errorCodes": {...}, "limits": {...}}}
    """
    return {
        "version": __version__,
        "protocol": PROTOCOL_VERSION,
        "engines": {name: eng.describe() for name, eng in d.engines.items()},
        "defaultEngine": d.config["default_engine"],
        "eventTypes": list(EVENT_TYPES) + sorted(d.extra_event_types),
        "insightTypes": list(INSIGHT_TYPES),
        "endpoints": {"control": d.config["control"], "events": d.config["events"]},
        "audioSources": d.sources.describe(),
        "commands": [c.describe() for c in COMMANDS.values()],
        "errorCodes": ERROR_CODES,
        "limits": {"maxConnections": d.sessions.max_live, "historyPerConnection": d.config["history_per_connection"]},
        "symblServer": d.symbl_server_info(),
    }


def _check_insight_types(value: list[Any]) -> str | None:
    bad = [v for v in value if v not in INSIGHT_TYPES]
    return f"has unknown insight types {bad}; known: {list(INSIGHT_TYPES)}" if bad else None


def _check_string_list(value: list[Any]) -> str | None:
    if not all(isinstance(v, str) and v.strip() for v in value):
        return "must be a list of non-empty strings"
    return None


def _check_client_connection_id(value: str) -> str | None:
    return None if _CLIENT_CONNECTION_ID.fullmatch(value) else "must match ^[A-Za-z0-9-]{6,64}$"


@command(
    "start", slow=True, mutating=True,
    source=Arg(dict, doc='{"type": "file", "path": "...", "realtime": true} | {"type": "push", "sampleRate": 16000} '
                         '| {"type": "mic", "device": null} | {"type": "sip", "uri": "sip:..."} '
                         '| {"type": "pstn", "phoneNumber": "+1..."}'),
    telephony=Arg(dict, doc="Symbl's telephony form; same as source with type sip or pstn"),
    engine=Arg(str, doc="engine name (describe lists them); default from config"),
    insightTypes=Arg(list, check=_check_insight_types, doc="default: all three"),
    config=Arg(dict, default=dict, doc="Symbl's start_request config"),
    speaker=Arg(dict, doc='{"userId": "...", "name": "..."}'),
    trackers=Arg(list, default=list, doc='[{"name": "...", "vocabulary": ["..."]}]'),
    customVocabulary=Arg(list, default=list, check=_check_string_list),
    actions=Arg(list, default=list, doc='[{"invokeOn": "stop", "name": "sendSummaryEmail", ...}]'),
    connectionId=Arg(str, check=_check_client_connection_id, doc="choose the id yourself (Symbl allows it)"),
    conversationId=Arg(str, check=_check_client_connection_id,
                       doc="join this conversation (Symbl: one conversation, a connection per speaker)"),
    sentiment=Arg(bool, default=False, doc="sentiment on messages and topics (Symbl's shape)"),
    redaction=Arg((bool, list, dict), doc="mask personal data: true or kinds [email, card, phone, spoken_digits]"),
)
def start(d: Daemon, args: dict[str, Any], req: Request) -> dict[str, Any]:
    """Start a connection: an audio source feeding an engine. Returns at once with the ids.

    → {"v": 1, "id": "3", "cmd": "start", "args": {"source": {"type": "file", "path": "/tmp/a.wav"},
       "insightTypes": ["question", "action_item"], "config": {"meetingTitle": "Standup"}}}
    ← {"v": 1, "id": "3", "ok": true, "result": {"connectionId": "f3a9...", "conversationId": "5093011103940608",
       "state": "live", "engine": "local", "source": {...}, ...}}
    """
    return d.start_session(args)


@command("stop", slow=True, mutating=True, connectionId=CONNECTION_ID)
def stop(d: Daemon, args: dict[str, Any], req: Request) -> dict[str, Any]:
    """Stop a connection: flush final results and return the final connection object.

    → {"v": 1, "id": "4", "cmd": "stop", "args": {"connectionId": "f3a9..."}}
    ← {"v": 1, "id": "4", "ok": true, "result": {"connectionId": "f3a9...", "conversationId": "...",
       "state": "stopped", ...}}
    Stopping an unknown id gives unknown_connection; an already stopped one, invalid_state.
    """
    cid = args["connectionId"]
    if d.sessions.find(cid) is None and d.journal is not None and d.journal.exists(cid):
        raise ControlError("invalid_state", f"connection {cid} has already ended", {"connectionId": cid})
    return d.sessions.get(cid).stop()


@command("status")
def status(d: Daemon, args: dict[str, Any], req: Request) -> dict[str, Any]:
    """All connections of this daemon run (live first), plus daemon counters.

    → {"v": 1, "id": "5", "cmd": "status"}
    ← {"v": 1, "id": "5", "ok": true, "result": {"connections": [{...}], "live": 1, "uptime": 60.1,
       "published": 1234, "requests": 56, "cut": [...],
       "models": {"local": "tiny.en"}}}
    """
    conns = sorted((s.as_dict() for s in d.sessions.all()), key=lambda c: (c["state"] in ("stopped", "failed"),
                                                                          c["createdAt"]))
    return {
        "connections": conns,
        "live": sum(1 for c in conns if c["state"] not in ("stopped", "failed")),
        "uptime": round(time.time() - d.started_at, 3),
        "published": d.bus.published,
        "requests": d.control.requests if d.control else 0,
        "cut": d.cut_connections,
        "models": {name: eng.describe().get("model") for name, eng in d.engines.items()},  # which model decodes
        # PUB drops silently at a subscriber's queue limit; clients that refill a gap say so.
        "drops": {"gapRefills": d.bus.refills, "refilledEvents": d.bus.refilled_events,
                  "queuePerSubscriber": d.config["event_queue_per_subscriber"]},
        # Disk full / I/O errors: events published but not yet journaled (kept in memory, retried).
        "journal": d.bus.backlog.state() if d.bus.backlog is not None else None,
    }


@command("get", connectionId=CONNECTION_ID)
def get(d: Daemon, args: dict[str, Any], req: Request) -> dict[str, Any]:
    """One connection's object (also for connections of an earlier daemon run, from the journal).

    → {"v": 1, "id": "6", "cmd": "get", "args": {"connectionId": "f3a9..."}}
    ← {"v": 1, "id": "6", "ok": true, "result": {"connectionId": "f3a9...", "state": "live", ...}}
    """
    session = d.sessions.find(args["connectionId"])
    if session is not None:
        return session.as_dict()
    return d.journaled_connection(args["connectionId"])


@command(
    "history", connectionId=CONNECTION_ID,
    afterSeq=Arg(int, default=0, min=0, doc="return events with seq > afterSeq"),
    limit=Arg(int, default=1000, min=1, max=10_000),
    gap=Arg(bool, default=False, doc="true when refilling events the events socket dropped (counted in status.drops)"),
)
def history(d: Daemon, args: dict[str, Any], req: Request) -> dict[str, Any]:
    """Events of a connection after a given seq, oldest first (memory, then the journal).

    → {"v": 1, "id": "7", "cmd": "history", "args": {"connectionId": "f3a9...", "afterSeq": 10, "limit": 100}}
    ← {"v": 1, "id": "7", "ok": true, "result": {"events": [{"seq": 11, ...}, ...], "lastSeq": 42, "more": false}}
    """
    cid = args["connectionId"]
    if d.sessions.find(cid) is None and not (d.journal and d.journal.exists(cid)):
        raise ControlError("unknown_connection", f"no connection {cid!r}", {"connectionId": cid})
    events = d.bus.history(cid, args["afterSeq"], args["limit"] + 1)
    if args["gap"]:  # a subscriber saw a seq gap (PUB dropped for it) and refills
        d.bus.refills += 1
        d.bus.refilled_events += min(len(events), args["limit"])
    more = len(events) > args["limit"]
    events = events[: args["limit"]]
    last = d.bus.last_seq(cid) or (events[-1]["seq"] if events else args["afterSeq"])
    return {"events": events, "lastSeq": max(last, events[-1]["seq"] if events else 0), "more": more}


@command(
    "subscribe",
    connectionId=Arg(str, doc="one connection, or omit for all"),
    types=Arg(list, check=_check_string_list, doc="event types to receive; omit for all"),
    token=Arg(str, max_len=64, doc="echoed on topic sync.<token> once your SUB socket receives"),
)
def subscribe(d: Daemon, args: dict[str, Any], req: Request) -> dict[str, Any]:
    """Where and how to listen, the state of every live connection, and a sync marker.

    The reply gives the events endpoint and the topics to subscribe to. If you pass a token,
    the daemon then publishes [b"sync.<token>", {...}] so a SUB socket that receives it knows
    its subscription is in effect; fetch ``history`` after that and nothing is missed.

    → {"v": 1, "id": "8", "cmd": "subscribe", "args": {"connectionId": "f3a9...", "token": "k1"}}
    ← {"v": 1, "id": "8", "ok": true, "result": {"events": "ipc:///run/user/1000/symbld/events",
       "topics": ["connection.f3a9....", "sync.k1"], "connections": [{..., "lastSeq": 42}]}}
    """
    cid = args.get("connectionId")
    if cid is not None and d.sessions.find(cid) is None and not (d.journal and d.journal.exists(cid)):
        remote = d.subscribe_remote(cid, args)
        if remote is not None:
            return remote
        raise ControlError("unknown_connection", f"no connection {cid!r}", {"connectionId": cid})
    types = args.get("types")
    if cid is None:
        topics = ["connection."]  # type filters across connections are client-side: topics put the id first
    elif not types:
        topics = [connection_topic(cid).decode()]
    else:
        topics = [connection_topic(cid, t).decode() for t in types]
    token = args.get("token")
    if token:
        topics.append(f"sync.{token}")
        d.bus.publish_raw(f"sync.{token}".encode(), {"v": PROTOCOL_VERSION, "type": "sync", "token": token})
    live = [s.as_dict() for s in d.sessions.live() if cid is None or s.connection_id == cid]
    return {"events": d.config["events"], "topics": topics, "connections": live}


@command(
    "send_audio", connectionId=CONNECTION_ID,
    sampleRate=Arg(int, doc="optional: the rate of this audio; must match the connection's"),
    end=Arg(bool, default=False, doc="no more audio will follow: flush and stop when processed"),
)
def send_audio(d: Daemon, args: dict[str, Any], req: Request) -> dict[str, Any]:
    """Feed LINEAR16 audio to a connection started with source {"type": "push"}.

    Two frames: the JSON request, then the raw little-endian 16-bit mono PCM at the
    connection's sampleRate (a frame of up to 1 MiB).
    → [{"v": 1, "id": "9", "cmd": "send_audio", "args": {"connectionId": "f3a9..."}}, <pcm bytes>]
    ← {"v": 1, "id": "9", "ok": true, "result": {"accepted": 3200}}
    """
    return d.push_audio(args["connectionId"], req.payload, args["end"], args.get("sampleRate"))


def _mic_of(d: Daemon, connection_id: str) -> Any:
    session = d.sessions.get(connection_id)
    mic = d.mic_feed_of(session)
    if mic is None:
        raise ControlError("bad_request", f"connection {connection_id} does not read from the microphone "
                           f"(its source is {session.source.kind})", {"source": session.source.kind})
    if session.ended:
        raise ControlError("invalid_state", f"connection {connection_id} is {session.state}")
    return mic


@command("devices", slow=True)
def devices(d: Daemon, args: dict[str, Any], req: Request) -> dict[str, Any]:
    """Audio input devices the daemon can capture from (PortAudio re-scanned on each call).

    → {"v": 1, "id": "11", "cmd": "devices"}
    ← {"v": 1, "id": "11", "ok": true, "result": {"devices": [{"index": 0, "name": "pulse", "default": true,
       "channels": 32, "samplerate": 44100.0}]}}
    """
    return d.input_devices()


@command("pause", mutating=True, connectionId=CONNECTION_ID)
def pause(d: Daemon, args: dict[str, Any], req: Request) -> dict[str, Any]:
    """Pause a microphone connection: silence is sent meanwhile so engines and remote sessions stay alive.

    → {"v": 1, "id": "12", "cmd": "pause", "args": {"connectionId": "f3a9..."}}
    ← {"v": 1, "id": "12", "ok": true, "result": {"state": "paused"}}
    """
    mic = _mic_of(d, args["connectionId"])
    mic.pause()
    return {"state": mic.state}


@command("resume", mutating=True, connectionId=CONNECTION_ID)
def resume(d: Daemon, args: dict[str, Any], req: Request) -> dict[str, Any]:
    """Resume a paused (or muted) microphone connection.

    → {"v": 1, "id": "13", "cmd": "resume", "args": {"connectionId": "f3a9..."}}
    ← {"v": 1, "id": "13", "ok": true, "result": {"state": "capturing"}}
    """
    mic = _mic_of(d, args["connectionId"])
    mic.resume()
    mic.mute(False)
    return {"state": mic.state}


@command("mute", mutating=True, connectionId=CONNECTION_ID, on=Arg(bool, default=True))
def mute(d: Daemon, args: dict[str, Any], req: Request) -> dict[str, Any]:
    """Mute (or with on=false unmute) a microphone connection; muted audio is replaced by silence.

    → {"v": 1, "id": "14", "cmd": "mute", "args": {"connectionId": "f3a9...", "on": true}}
    ← {"v": 1, "id": "14", "ok": true, "result": {"state": "muted"}}
    """
    mic = _mic_of(d, args["connectionId"])
    mic.mute(args["on"])
    return {"state": mic.state}


@command("attach_mic", slow=True, mutating=True, connectionId=CONNECTION_ID,
         device=Arg((str, int), check=lambda v: None if (0 <= v < 1 << 16 if isinstance(v, int) else len(v) <= 256)
                    else "must be a name of at most 256 characters or an index 0..65535",
                    doc="device name or index; default: the default input"))
def attach_mic(d: Daemon, args: dict[str, Any], req: Request) -> dict[str, Any]:
    """Feed an existing push connection from the daemon's microphone (the SDK's send_audio_from_mic).

    → {"v": 1, "id": "15", "cmd": "attach_mic", "args": {"connectionId": "f3a9..."}}
    ← {"v": 1, "id": "15", "ok": true, "result": {"connectionId": "f3a9...", "source": {"kind": "push", ...},
       "mic": {"kind": "mic", "device": "...", "state": "capturing"}}}
    """
    return d.attach_mic(args["connectionId"], args.get("device"))


@command("shutdown", mutating=True)
def shutdown(d: Daemon, args: dict[str, Any], req: Request) -> dict[str, Any]:
    """Stop every connection (flushing finals) and exit.

    → {"v": 1, "id": "10", "cmd": "shutdown"}
    ← {"v": 1, "id": "10", "ok": true, "result": {"stopping": true, "live": 2}}
    """
    live = len(d.sessions.live())
    d.request_shutdown("shutdown command")
    return {"stopping": True, "live": live}
