"""Commands the Conversation API of the Symbl-compatible server needs: find and delete.

Self-contained (one module, registered by ``registry.load_all``) so it moves easily when the
command registry changes.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from symbld.control.envelope import Request
from symbld.control.registry import CONNECTION_ID, command
from symbld.control.schema import Arg
from symbld.core.errors import ControlError

if TYPE_CHECKING:
    from symbld.app import Daemon

_CONVERSATION_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")  # it names a file next to the journal
_MEMBERS_LOCK = threading.Lock()


def _check_conversation_id(value: str) -> str | None:
    return None if _CONVERSATION_ID.fullmatch(value) else "must match ^[A-Za-z0-9-]{1,64}$"


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


def _members_file(d: Daemon, conversation_id: str) -> Path:
    if d.journal is None:
        raise ControlError("invalid_state", "the daemon keeps no journal ([journal] is off): nothing to keep "
                           "member names in", {"conversationId": conversation_id})
    return d.journal.dir / f"{conversation_id}.members.json"


def _read_members(path: Path) -> dict[str, dict[str, str]]:
    try:
        loaded = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ControlError("internal", f"member names of this conversation unreadable: {e}") from None
    return loaded if isinstance(loaded, dict) else {}


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    """Whole or not at all: a crash mid-write leaves the previous file (write, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _check_member(member: dict[str, Any]) -> str | None:
    if not isinstance(member.get("id"), str) or not member["id"]:
        return "member.id (the memberId) is required"
    if not all(isinstance(member.get(k, ""), str) for k in ("name", "email")):
        return "member.name and member.email must be strings"
    return None


@command("conversation_members", mutating=True,
         conversationId=Arg(str, required=True, check=_check_conversation_id, doc="Symbl's conversationId"),
         member=Arg(dict, check=_check_member, doc='{"id": memberId, "name": "...", "email": "..."}: rename'),
         forget=Arg(bool, default=False, doc="remove the conversation's member names (DELETE)"))
def conversation_members(d: Daemon, args: dict[str, Any], req: Request) -> dict[str, Any]:
    """Member names given by the Conversation API's PUT .../members/{id}: read, set or forget them.

    Kept next to the journal (``<conversationId>.members.json``, written atomically), so a rename
    survives daemon and server restarts.
    → {"v": 1, "id": "3", "cmd": "conversation_members", "args": {"conversationId": "5093011103940608",
       "member": {"id": "9b1c...", "name": "Jane Doe", "email": "jane@example.com"}}}
    ← {"v": 1, "id": "3", "ok": true, "result": {"members": {"9b1c...": {"name": "Jane Doe",
       "email": "jane@example.com"}}}}
    """
    path = _members_file(d, args["conversationId"])
    with _MEMBERS_LOCK:  # commands run on several threads; read-modify-write must not interleave
        if args.get("forget"):
            path.unlink(missing_ok=True)
            return {"members": {}}
        members = _read_members(path)
        member = args.get("member")
        if member:
            update = {k: member[k] for k in ("name", "email") if isinstance(member.get(k), str)}
            members.setdefault(member["id"], {}).update(update)
            try:
                _write_atomically(path, members)
            except OSError as e:
                raise ControlError("internal", f"cannot keep the member name: {e}") from None
    return {"members": members}
