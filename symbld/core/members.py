"""Member names of a conversation given through the Conversation API, kept next to the journal.

``<journal dir>/<conversationId>.members.json``, written atomically (write, fsync, rename), so a rename
survives daemon and server restarts and a crash mid-write leaves the previous names.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from symbld.errors import ControlError

_LOCK = threading.Lock()  # commands run on several threads; read-modify-write must not interleave


def update(journal_dir: Path, conversation_id: str, member: dict[str, Any] | None = None,
           forget: bool = False) -> dict[str, dict[str, str]]:
    """The conversation's member names after renaming ``member`` (or forgetting them all)."""
    path = journal_dir / f"{conversation_id}.members.json"
    with _LOCK:
        if forget:
            path.unlink(missing_ok=True)
            return {}
        members = _read(path)
        if member:
            changes = {k: member[k] for k in ("name", "email") if isinstance(member.get(k), str)}
            members.setdefault(member["id"], {}).update(changes)
            try:
                _write_atomically(path, members)
            except OSError as e:
                raise ControlError("internal", f"cannot keep the member name: {e}") from None
    return members


def _read(path: Path) -> dict[str, dict[str, str]]:
    try:
        loaded = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ControlError("internal", f"member names of this conversation unreadable: {e}") from None
    return loaded if isinstance(loaded, dict) else {}


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
