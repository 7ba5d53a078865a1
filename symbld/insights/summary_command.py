"""The ``summary`` control command: a connection's summary on demand, live or ended.

Self-contained (the command registry is being rebuilt elsewhere): it summarises the messages in the
connection's history (memory, else the journal), so it works the same while the conversation runs,
after it ended and after a restart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from symbld.control.envelope import Request
from symbld.control.registry import CONNECTION_ID, command
from symbld.control.schema import Arg
from symbld.core.errors import ControlError
from symbld.insights.summary import summary_of_events

if TYPE_CHECKING:
    from symbld.app import Daemon

_ALL = 1_000_000


@command("summary", connectionId=CONNECTION_ID,
         limit=Arg(int, min=1, max=50, doc="sentences wanted (default: about one per four messages, at most 5)"))
def summary(d: Daemon, args: dict[str, Any], req: Request) -> dict[str, Any]:
    """Symbl's summary of a connection so far: sentences said, each with its message reference.

    → {"v": 1, "id": "9", "cmd": "summary", "args": {"connectionId": "f3a9..."}}
    ← {"v": 1, "id": "9", "ok": true, "result": {"connectionId": "f3a9...", "live": true,
       "summary": [{"id": "summary-0", "text": "...", "messageRefs": [{"id": "..."}]}]}}
    """
    cid = args["connectionId"]
    session = d.sessions.find(cid)
    if session is None and not (d.journal and d.journal.exists(cid)):
        raise ControlError("unknown_connection", f"no connection {cid!r}", {"connectionId": cid})
    return {"connectionId": cid, "live": bool(session and not session.ended),
            "summary": summary_of_events(d.bus.history(cid, 0, _ALL), args.get("limit"))}
