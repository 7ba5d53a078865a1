"""Diarization's ``speaker_revision`` events, read back: which labels and messages they re-attribute.

One reading for both sides: the daemon applies it wherever a conversation is read later
(``symbld/core/speakers.py``: the Conversation API, the summary page, insights), and ``symblctl transcript``
applies it to an export from a connection's history (``symblctl/export.py``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

REVISION = "speaker_revision"  # diarization revised labels it published (symbld/diarization/labeller.py)
LATE = "late"  # a message published before its prints, attributed to another speaker when they came


class Revised(NamedTuple):
    """Diarization's ``speaker_revision`` events of one connection, ready to apply."""

    labels: dict[str, dict[str, Any]]  # label id → the from that replaces it (merged, identified)
    moved: dict[str, dict[str, Any]]  # message id → the from it has now (late)
    parts: dict[str, list[dict[str, Any]]]  # message id → the messages it was split into (late, a voice change)

    def who(self, who: dict[str, Any], message_id: Any = None) -> dict[str, Any]:
        """A message's ``from`` as revised: moved by a late print, then its label merged or named since."""
        who = self.moved.get(str(message_id), who) if message_id is not None else who
        return self.labels.get(str(who.get("id")), who)


def revisions(events: list[dict[str, Any]]) -> Revised:
    """Diarization's ``speaker_revision`` events: label id → the ``from`` that replaces it (``merged``,
    ``identified``: every result that carried the label; chains followed: a label merged into one that was
    merged later ends at the last), message id → the ``from`` it has now (``late``: those messages only, the
    label's other messages keep it), and message id → the messages it became (``late`` with ``parts``)."""
    to: dict[str, dict[str, Any]] = {}
    moved: dict[str, dict[str, Any]] = {}
    parts: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        data = e.get("data")
        if e.get("type") != REVISION or not isinstance(data, dict) or not isinstance(data.get("to"), dict):
            continue
        if data.get("reason") == LATE:
            moved.update({str(mid): data["to"] for mid in data.get("messageIds") or []})
            if isinstance(data.get("parts"), list) and len(data.get("messageIds") or []) == 1:
                parts[str(data["messageIds"][0])] = [p for p in data["parts"] if isinstance(p, dict)]
        elif isinstance(data.get("from"), dict) and data["from"].get("id"):
            to[str(data["from"]["id"])] = data["to"]
    for old, new in to.items():
        seen = {old}
        while str(new.get("id")) in to and str(new.get("id")) not in seen:
            seen.add(str(new.get("id")))
            new = to[str(new.get("id"))]
        to[old] = new
    return Revised(to, moved, parts)
