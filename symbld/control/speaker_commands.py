"""``speaker_event``: a client says who is speaking now (Symbl's speaker events, §3.6).

Self-contained (one module, registered by ``catalog``) so it moves easily when the command
registry changes. The event is journaled on the connection as ``speaker_event`` with the audio
position it arrived at; readers attribute results by that position (symbld.gateways.symbl.speakers).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from symbld.control.envelope import Request
from symbld.control.registry import CONNECTION_ID, command
from symbld.control.schema import Arg
from symbld.core.errors import ControlError
from symbld.core.ids import iso_now

if TYPE_CHECKING:
    from symbld.app import Daemon

SPEAKER_EVENT_TYPES = ("started_speaking", "stopped_speaking", "speaker_change", "joined", "left")
MAX_LOOKBACK = 5.0  # seconds a client's timestamp may move an event back (its delivery delay)


def _delivery_delay(timestamp: str | None) -> float:
    """How long ago the client stamped the event (0 when unknown or in the future), at most MAX_LOOKBACK.

    The JS SDK stamps an event when pushed, then waits for its events socket to connect: on a
    live source (a call, a microphone) the audio went on meanwhile, so the event belongs that far back.
    """
    try:
        stamped = datetime.fromisoformat(str(timestamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
    return min(max(0.0, time.time() - stamped), MAX_LOOKBACK)


def _check_user(user: dict[str, Any]) -> str | None:
    if not all(isinstance(user.get(k, ""), str) for k in ("userId", "name", "id")):
        return "userId, name and id must be strings"
    return None if user.get("userId") or user.get("name") else "needs a userId or a name"


@command(
    "speaker_event", mutating=True, connectionId=CONNECTION_ID,
    type=Arg(str, required=True, choices=SPEAKER_EVENT_TYPES, doc="what the speaker did"),
    user=Arg(dict, check=_check_user, doc='{"userId": "...", "name": "..."}'),
    timeOffset=Arg(float, min=0, doc="audio position (seconds of the connection's audio); default: what it has "
                                     "had, less the delay since timestamp (at most 5 s)"),
    timestamp=Arg(str, max_len=64, doc="the client's ISO-8601 time of the event (kept as given)"),
)
def speaker_event(d: Daemon, args: dict[str, Any], req: Request) -> dict[str, Any]:
    """Record who is speaking from now on a live connection (journaled as a speaker_event event).

    → {"v": 1, "id": "1", "cmd": "speaker_event", "args": {"connectionId": "f3a9...",
       "type": "started_speaking", "user": {"userId": "bob@example.com", "name": "Bob"}}}
    ← {"v": 1, "id": "1", "ok": true, "result": {"type": "started_speaking", "user": {...},
       "timeOffset": 12.48, "timestamp": "2026-12-02T01:00:00.000Z"}}
    An ended connection gives invalid_state; an unknown one, unknown_connection.
    """
    session = d.sessions.get(args["connectionId"])
    if session.ended:
        raise ControlError("invalid_state", f"connection {session.connection_id} has ended",
                           {"connectionId": session.connection_id})
    offset = args.get("timeOffset")
    if offset is None:
        offset = max(0.0, session.audio_seconds - _delivery_delay(args.get("timestamp")))
    data: dict[str, Any] = {
        "type": args["type"],
        "user": args.get("user"),
        # Readers attribute each result to whoever was speaking at the middle of its audio.
        "timeOffset": round(float(offset), 3),
        "timestamp": args.get("timestamp") or iso_now(),
    }
    session.emit("speaker_event", data)
    return data
