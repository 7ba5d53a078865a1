"""The voice prints of a past connection's speakers, kept so one of them can be enrolled by name
later (``voices_add`` with ``conversationId`` and ``speaker``; docs/diarization.md).

No audio of a conversation is kept, so enrolment from a past one cannot take a new print: what it
can use is the print the labeller already had. When a diarized connection ends, each speaker's
centroid (the duration-weighted sum of the prints that built it, the same vector the clustering and
the known-voice matcher compare) is written to ``<state_dir>/voices/speakers/<connectionId>.json``
(mode 0600, replaced atomically, the newest ``MAX_KEPT`` connections kept). These files are not
events: they are never published nor journaled, so subscribers never see a voice print.
``delete_connection`` deletes a connection's with its journal; deleting the directory forgets all. A
connection that is still running, or whose daemon was killed before it ended, has none.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from symbld.errors import ControlError

MAX_KEPT = 1000


def prints_dir(state_dir: Path) -> Path:
    return state_dir / "voices" / "speakers"


def save(state_dir: Path, connection_id: str, conversation_id: str, speakers: list[dict[str, Any]]) -> None:
    """Keep ``speakers`` (each {"id", "name", "labels", "print", "speechSeconds"}) of a connection that ended."""
    if not speakers:
        return
    folder = prints_dir(state_dir)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".prints-", suffix=".tmp")  # 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"connectionId": connection_id, "conversationId": conversation_id, "speakers": speakers}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / f"{connection_id}.json")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    kept = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
    for old in kept[: max(0, len(kept) - MAX_KEPT)]:
        old.unlink(missing_ok=True)


def forget(state_dir: Path, connection_id: str) -> None:
    """Delete a connection's kept prints (``delete_connection`` deletes them with its journal)."""
    if connection_id and "/" not in connection_id and not connection_id.startswith("."):
        (prints_dir(state_dir) / f"{connection_id}.json").unlink(missing_ok=True)


def load(state_dir: Path, connection_id: str) -> list[dict[str, Any]] | None:
    """The kept speakers of one connection, or None when none were kept."""
    if not connection_id or "/" in connection_id or connection_id.startswith("."):
        return None
    try:
        data = json.loads((prints_dir(state_dir) / f"{connection_id}.json").read_text())
    except (OSError, ValueError):
        return None
    speakers = data.get("speakers") if isinstance(data, dict) else None
    return speakers if isinstance(speakers, list) else None


def find(state_dir: Path, conversation: str, connection_ids: list[str], label: str) -> dict[str, Any]:
    """The kept speaker of ``connection_ids`` whose id or name (as published, or a label later merged
    into it) is ``label``; a bad_request naming what is wrong otherwise."""
    speakers = [s for cid in connection_ids for s in load(state_dir, cid) or []]
    if not speakers:
        raise ControlError("bad_request", f"conversation {conversation!r} has no kept speaker prints (it was not "
                           "diarized, is still running, or ended before prints were kept)",
                           {"argument": "conversationId"})
    wanted = label.strip().casefold()
    for s in speakers:
        names = [s.get("id"), s.get("name"), *(s.get("labels") or [])]
        if any(isinstance(n, str) and n.casefold() == wanted for n in names):
            return dict(s)
    known = ", ".join(sorted({str(s.get("name")) for s in speakers}))
    raise ControlError("bad_request", f"no speaker {label!r} in conversation {conversation!r} (it has: {known})",
                       {"argument": "speaker", "speakers": sorted({str(s.get("name")) for s in speakers})})
