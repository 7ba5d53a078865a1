"""Speakers: who is speaking now on a connection (Symbl's speaker events), and members' names."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import msgspec

from symblctl import protocol
from symbld.control.envelope import Request
from symbld.control.registry import handles
from symbld.control.service import Service
from symbld.core import members
from symbld.core.ids import iso_now
from symbld.errors import ControlError

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


@handles(protocol.SpeakerEvent)
def speaker_event(svc: Service, args: protocol.SpeakerEvent, req: Request) -> dict[str, Any]:
    """The event is journaled on the connection as ``speaker_event`` with the audio position it arrived
    at; readers attribute each result to whoever was speaking at the middle of its audio
    (symbld.core.speakers).

    → {"v": 1, "id": "1", "cmd": "speaker_event", "args": {"connectionId": "f3a9...",
       "type": "started_speaking", "user": {"userId": "bob@example.com", "name": "Bob"}}}
    ← {"v": 1, "id": "1", "ok": true, "result": {"type": "started_speaking", "user": {...},
       "timeOffset": 12.48, "timestamp": "2026-12-02T01:00:00.000Z"}}
    An ended connection gives invalid_state; an unknown one, unknown_connection.
    """
    session = svc.sessions.get(args.connection_id)
    if session.ended:
        raise ControlError("invalid_state", f"connection {session.connection_id} has ended",
                           {"connectionId": session.connection_id})
    if args.user is not None and not (args.user.user_id or args.user.name):
        raise ControlError("bad_request", "speaker_event: 'user' needs a userId or a name", {"argument": "user"})
    offset = args.time_offset
    if offset is None:
        offset = max(0.0, session.audio_seconds - _delivery_delay(args.timestamp))
    data: dict[str, Any] = {
        "type": args.type,
        "user": msgspec.to_builtins(args.user) if args.user is not None else None,
        "timeOffset": round(float(offset), 3),
        "timestamp": args.timestamp or iso_now(),
    }
    session.emit("speaker_event", data)
    return data


@handles(protocol.ConversationMembers)
def conversation_members(svc: Service, args: protocol.ConversationMembers, req: Request) -> dict[str, Any]:
    """Kept next to the journal (``<conversationId>.members.json``, written atomically), so a rename
    survives daemon and server restarts.

    → {"v": 1, "id": "3", "cmd": "conversation_members", "args": {"conversationId": "5093011103940608",
       "member": {"id": "9b1c...", "name": "Jane Doe", "email": "jane@example.com"}}}
    ← {"v": 1, "id": "3", "ok": true, "result": {"members": {"9b1c...": {"name": "Jane Doe",
       "email": "jane@example.com"}}}}
    A daemon without a journal gives invalid_state.
    """
    if svc.journal is None:
        raise ControlError("invalid_state", "the daemon keeps no journal: nothing to keep member names in",
                           {"conversationId": args.conversation_id})
    member = msgspec.to_builtins(args.member) if args.member is not None else None
    return {"members": members.update(svc.journal.dir, args.conversation_id, member, args.forget)}
