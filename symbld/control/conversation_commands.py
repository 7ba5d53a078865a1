"""Commands the Conversation API of the Symbl-compatible server needs: find and delete.

Self-contained (one module, registered by ``registry.load_all``) so it moves easily when the
command registry changes.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from symbld.control.envelope import Request
from symbld.control.registry import CONNECTION_ID, command
from symbld.control.schema import Arg
from symbld.core.errors import ControlError

if TYPE_CHECKING:
    from symbld.app import Daemon


def _first_event(path: Any) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            line = f.readline()
        event = json.loads(line)
    except (OSError, ValueError):
        return None
    return event if isinstance(event, dict) else None


@command("find_conversation", conversationId=Arg(str, required=True, max_len=128, doc="Symbl's conversationId"))
def find_conversation(d: Daemon, args: dict[str, Any], req: Request) -> dict[str, Any]:
    """The connections (live, or in the journal) that carry a conversationId, oldest first.

    → {"v": 1, "id": "1", "cmd": "find_conversation", "args": {"conversationId": "5093011103940608"}}
    ← {"v": 1, "id": "1", "ok": true, "result": {"connections": ["f3a9..."]}}
    """
    wanted = args["conversationId"]
    found = [s.connection_id for s in d.sessions.all() if s.conversation_id == wanted]
    if d.journal is not None:
        for cid in d.journal.connection_ids():
            if cid in found:
                continue
            first = _first_event(d.journal.path(cid))
            if first is not None and first.get("conversationId") == wanted:
                found.append(cid)
    return {"connections": found}


@command("delete_connection", mutating=True, connectionId=CONNECTION_ID)
def delete_connection(d: Daemon, args: dict[str, Any], req: Request) -> dict[str, Any]:
    """Forget an ended connection: its journal file is removed from disk, its history from memory.

    → {"v": 1, "id": "2", "cmd": "delete_connection", "args": {"connectionId": "f3a9..."}}
    ← {"v": 1, "id": "2", "ok": true, "result": {"connectionId": "f3a9...", "deleted": true}}
    A live connection gives invalid_state (stop it first); an unknown one, unknown_connection.
    """
    cid = args["connectionId"]
    session = d.sessions.find(cid)
    if session is not None and not session.ended:
        raise ControlError("invalid_state", f"connection {cid} is live; stop it first", {"connectionId": cid})
    on_disk = d.journal is not None and d.journal.exists(cid)
    if session is None and not on_disk:
        raise ControlError("unknown_connection", f"no connection {cid!r}", {"connectionId": cid})
    d.sessions.remove(cid)
    d.bus.forget(cid)
    if on_disk and d.journal is not None:
        # The bus thread owns the journal's open files; an ended connection's is closed or
        # about to be, and unlinking an open file is safe on POSIX.
        d.journal.path(cid).unlink(missing_ok=True)
    return {"connectionId": cid, "deleted": True}
