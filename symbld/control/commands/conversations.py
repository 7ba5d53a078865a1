"""Conversations: list them, find one by Symbl's conversationId, summarise one, delete one."""

from __future__ import annotations

from typing import Any

from symblctl import protocol
from symbld.control.envelope import Request
from symbld.control.registry import handles
from symbld.control.service import Service
from symbld.core.conversations import listing, parse_since
from symbld.diarization import speaker_prints
from symbld.errors import ControlError
from symbld.insights.summary import summary_of_events
from symbld.web import links


@handles(protocol.Conversations)
def conversations(svc: Service, args: protocol.Conversations, req: Request) -> dict[str, Any]:
    """→ {"v": 1, "id": "9", "cmd": "conversations", "args": {"since": "2026-12-01T00:00:00Z", "source": "file"}}
    ← {"v": 1, "id": "9", "ok": true, "result": {"conversations": [{"connectionId": "f3a9...",
       "conversationId": "...", "startedAt": "...", "endedAt": "...", "durationSeconds": 12.5,
       "audioSeconds": 12.4, "source": "file", "sourceLabel": "file meeting.flac", "title": "Standup",
       "engine": "local", "words": 120, "state": "stopped", "reason": "source_ended"}]}}
    """
    if args.since is not None and parse_since(args.since) is None:
        raise ControlError("bad_request", "conversations: 'since' must be an ISO 8601 time, e.g. 2026-12-01T09:00:00Z",
                           {"argument": "since"})
    if svc.conversations is None:
        return {"conversations": []}
    live = {s.connection_id: s.as_dict() for s in svc.sessions.all()}
    return {"conversations": listing(svc.conversations, live, since=args.since, source=args.source,
                                     limit=args.limit)}


@handles(protocol.FindConversation)
def find_conversation(svc: Service, args: protocol.FindConversation, req: Request) -> dict[str, Any]:
    """→ {"v": 1, "id": "1", "cmd": "find_conversation", "args": {"conversationId": "5093011103940608"}}
    ← {"v": 1, "id": "1", "ok": true, "result": {"connections": ["f3a9..."]}}
    """
    return {"connections": svc.conversation_connections(args.conversation_id)}


@handles(protocol.DeleteConnection)
def delete_connection(svc: Service, args: protocol.DeleteConnection, req: Request) -> dict[str, Any]:
    """→ {"v": 1, "id": "2", "cmd": "delete_connection", "args": {"connectionId": "f3a9..."}}
    ← {"v": 1, "id": "2", "ok": true, "result": {"connectionId": "f3a9...", "deleted": true}}
    A live connection gives invalid_state (stop it first); an unknown one, unknown_connection.
    """
    cid = args.connection_id
    session = svc.sessions.find(cid)
    if session is not None and not session.ended:
        raise ControlError("invalid_state", f"connection {cid} is live; stop it first", {"connectionId": cid})
    svc.require_known(cid)
    on_disk = svc.journal is not None and svc.journal.exists(cid)
    svc.sessions.remove(cid)
    svc.bus.forget(cid)
    if on_disk and svc.journal is not None:
        # The bus thread owns the journal's open files; an ended connection's is closed or
        # about to be, and unlinking an open file is safe on POSIX.
        svc.journal.path(cid).unlink(missing_ok=True)
    speaker_prints.forget(svc.state_dir, cid)  # its speakers' voice prints go with it
    return {"connectionId": cid, "deleted": True}


@handles(protocol.SummaryRequest)
def summary(svc: Service, args: protocol.SummaryRequest, req: Request) -> dict[str, Any]:
    """Works the same while the conversation runs, after it ended and after a restart: it summarises
    the messages in the connection's history (memory, else the journal).

    → {"v": 1, "id": "9", "cmd": "summary", "args": {"connectionId": "f3a9..."}}
    ← {"v": 1, "id": "9", "ok": true, "result": {"connectionId": "f3a9...", "live": true,
       "summary": [{"id": "summary-0", "text": "...", "messageRefs": [{"id": "..."}]}]}}
    """
    cid = args.connection_id
    svc.require_known(cid)
    session = svc.sessions.find(cid)
    return {"connectionId": cid, "live": bool(session and not session.ended),
            "summary": summary_of_events(svc.bus.all_events(cid), args.limit)}


def _conversation_of(svc: Service, connection_id: str) -> str:
    """The conversationId of a live, ended or journaled connection; unknown_connection otherwise."""
    session = svc.sessions.find(connection_id)
    if session is not None:
        return session.conversation_id
    for event in svc.history(connection_id, 0, 1):
        if event.get("conversationId"):
            return str(event["conversationId"])
    raise ControlError("unknown_connection", f"no connection {connection_id!r}", {"connectionId": connection_id})


@handles(protocol.SummaryPage)
def summary_page(svc: Service, args: protocol.SummaryPage, req: Request) -> dict[str, Any]:
    """→ {"v": 1, "id": "3", "cmd": "summary_page", "args": {"connectionId": "6186995463583031"}}
    ← {"v": 1, "id": "3", "ok": true, "result": {"connectionId": "30411c0b...", "conversationId":
       "6186995463583031", "url": "http://127.0.0.1:5081/meeting/6186995463583031?s=9c1e..."}}
    An invalid_state error when the daemon serves no page ([page] port = 0).
    """
    conversation = _conversation_of(svc, args.connection_id)
    url = links.summary_url(conversation)
    if url is None:
        raise ControlError("invalid_state", "this daemon serves no summary page ([page] port = 0)",
                           {"reason": "page_off"})
    return {"connectionId": args.connection_id, "conversationId": conversation, "url": url}
