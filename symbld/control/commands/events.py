"""Events: a connection's history, and how to subscribe to what comes next."""

from __future__ import annotations

from typing import Any

from symblctl import protocol
from symbld.control.envelope import PROTOCOL_VERSION, Request
from symbld.control.registry import handles
from symbld.control.service import Service
from symbld.core.ids import connection_topic
from symbld.errors import ControlError


@handles(protocol.History)
def history(svc: Service, args: protocol.History, req: Request) -> dict[str, Any]:
    """→ {"v": 1, "id": "7", "cmd": "history", "args": {"connectionId": "f3a9...", "afterSeq": 10, "limit": 100}}
    ← {"v": 1, "id": "7", "ok": true, "result": {"events": [{"seq": 11, ...}, ...], "lastSeq": 42, "more": false}}
    """
    cid = args.connection_id
    svc.require_known(cid)
    events = svc.history(cid, args.after_seq, args.limit + 1)
    if args.gap:
        svc.count_gap_refill(min(len(events), args.limit))
    more = len(events) > args.limit
    events = events[: args.limit]
    last = svc.bus.sent_seq(cid) or (events[-1]["seq"] if events else args.after_seq)
    return {"events": events, "lastSeq": max(last, events[-1]["seq"] if events else 0), "more": more}


@handles(protocol.Subscribe)
def subscribe(svc: Service, args: protocol.Subscribe, req: Request) -> dict[str, Any]:
    """The reply gives the events endpoint and the topics to subscribe to. If you pass a token,
    the daemon then publishes [b"sync.<token>", {...}] so a SUB socket that receives it knows
    its subscription is in effect; fetch ``history`` after that and nothing is missed.

    → {"v": 1, "id": "8", "cmd": "subscribe", "args": {"connectionId": "f3a9...", "token": "k1"}}
    ← {"v": 1, "id": "8", "ok": true, "result": {"events": "ipc:///run/user/1000/symbld/events",
       "topics": ["connection.f3a9....", "sync.k1"], "connections": [{..., "lastSeq": 42}]}}
    """
    cid = args.connection_id
    if cid is not None and not svc.known(cid):
        remote = svc.subscribe_remote(cid)
        if remote is not None:
            return remote
        raise ControlError("unknown_connection", f"no connection {cid!r}", {"connectionId": cid})
    if cid is None:
        topics = ["connection."]  # type filters across connections are client-side: topics put the id first
    elif not args.types:
        topics = [connection_topic(cid).decode()]
    else:
        topics = [connection_topic(cid, t).decode() for t in args.types]
    if args.token:
        topics.append(f"sync.{args.token}")
        svc.bus.publish_raw(f"sync.{args.token}".encode(),
                            {"v": PROTOCOL_VERSION, "type": "sync", "token": args.token})
    live = [s.as_dict() for s in svc.sessions.live() if cid is None or s.connection_id == cid]
    return {"events": svc.events_endpoint, "topics": topics, "connections": live}
