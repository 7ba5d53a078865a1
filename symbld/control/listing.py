"""The ``conversations`` command: past and live conversations from the journals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from symbld.control.envelope import Request
from symbld.control.registry import command
from symbld.control.schema import Arg
from symbld.core.conversations import listing, parse_since

if TYPE_CHECKING:
    from symbld.app import Daemon

SOURCE_KINDS = ("file", "push", "mic", "sip", "pstn", "symbl")


def _check_since(value: str) -> str | None:
    return None if parse_since(value) is not None else "must be an ISO 8601 time, e.g. 2026-12-01T09:00:00Z"


@command(
    "conversations",
    slow=True,
    since=Arg(str, check=_check_since, doc="only conversations started at or after this ISO 8601 time"),
    source=Arg(str, choices=SOURCE_KINDS, doc="only this source kind"),
    limit=Arg(int, default=100, min=1, max=10_000, doc="at most this many, newest first"),
)
def conversations(d: Daemon, args: dict[str, Any], req: Request) -> dict[str, Any]:
    """Past and live conversations, newest first, from the journals (kept journal_retention_days).

    → {"v": 1, "id": "9", "cmd": "conversations", "args": {"since": "2026-12-01T00:00:00Z", "source": "file"}}
    ← {"v": 1, "id": "9", "ok": true, "result": {"conversations": [{"connectionId": "f3a9...",
       "conversationId": "...", "startedAt": "...", "endedAt": "...", "durationSeconds": 12.5,
       "audioSeconds": 12.4, "source": "file", "sourceLabel": "file meeting.flac", "title": "Standup",
       "engine": "local", "words": 120, "state": "stopped", "reason": "source_ended"}]}}
    """
    if d.conversations is None:
        return {"conversations": []}
    live = {s.connection_id: s.as_dict() for s in d.sessions.all()}
    rows = listing(d.conversations, live, since=args.get("since"), source=args.get("source"),
                   limit=args["limit"])
    return {"conversations": rows}
