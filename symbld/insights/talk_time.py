"""Who spoke how much: each speaker's talk time, from a conversation's messages.

The summary page and the summary e-mail both show it. A message's talk time is its audio's length
(``duration.duration``, from the recogniser's word times), so pauses between messages count for
nobody. Speakers are keyed by ``from.id`` (a diarization label or an enrolled voice; the same voice
keeps its id) and else by name; messages nobody is named for are left out. Read the messages with
speaker revisions already applied (``core.speakers.attribute_history``), so a merged label's time
goes to the person it turned out to be.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass
class Talk:
    key: str  # from.id, else the name: what a colour or a row is tied to
    name: str
    seconds: float = 0.0
    messages: int = 0
    words: int = 0


def speaker_key(who: Any) -> tuple[str, str]:
    """(key, shown name) of a ``from``/``user`` object; ("", "") when it names nobody."""
    if not isinstance(who, dict):
        return "", ""
    name = str(who.get("name") or who.get("userId") or "").strip()
    if not name:
        return "", ""
    return str(who.get("id") or who.get("userId") or name), name


def talk_times(messages: Iterable[dict[str, Any]]) -> list[Talk]:
    """Talk time per speaker, in the order they were first heard."""
    out: dict[str, Talk] = {}
    for m in messages:
        if not isinstance(m, dict) or m.get("dismissed"):
            continue
        key, name = speaker_key(m.get("from"))
        content = (m.get("payload") or {}).get("content")
        if not key or not isinstance(content, str) or not content.strip():
            continue
        talk = out.setdefault(key, Talk(key=key, name=name))
        length = (m.get("duration") or {}).get("duration")
        talk.seconds += max(0.0, float(length)) if isinstance(length, int | float) else 0.0
        talk.messages += 1
        talk.words += len(content.split())
    return list(out.values())


def share(talks: list[Talk], talk: Talk) -> int:
    """``talk``'s percentage of everyone's talk time (0 when nobody's time is known)."""
    total = sum(t.seconds for t in talks)
    return round(100 * talk.seconds / total) if total > 0 else 0
