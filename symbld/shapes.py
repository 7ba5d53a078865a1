"""Builders for Symbl-shaped event payloads (``docs/events.md``), shared by every engine.

Engines compute text and times; these functions put them into the exact field layout consumers
expect, so the wire shape lives in one place.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Namespace for deterministic user ids: the same speaker on the same connection always gets
# the same ``user.id``/``from.id`` in transcript and message events.
_USER_NS = uuid.UUID("6f1c3c39-1c1e-4a8f-9d37-3b0c8a8e5a11")

_NOT_CONTENT = re.compile(r"[^\w\s'%-]+")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class TimedWord:
    """One recognised word; ``start``/``end`` are seconds from the start of the stream."""

    word: str
    start: float
    end: float


def iso(epoch_seconds: float) -> str:
    """ISO-8601 UTC with milliseconds and a ``Z``, as Symbl writes times."""
    dt = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def normalise(text: str) -> str:
    """``payload.content`` form: lower case, punctuation dropped (apostrophes and % kept)."""
    return _SPACES.sub(" ", _NOT_CONTENT.sub(" ", text.lower())).strip()


def new_id() -> str:
    return str(uuid.uuid4())


def user_of(speaker: dict[str, Any] | None, connection_id: str) -> dict[str, Any] | None:
    """Symbl's ``user``/``from`` object for a connection's speaker, or None without one."""
    if not speaker:
        return None
    key = f"{connection_id}/{speaker.get('userId') or ''}/{speaker.get('name') or ''}"
    user: dict[str, Any] = {"id": str(uuid.uuid5(_USER_NS, key))}
    if speaker.get("name") is not None:
        user["name"] = speaker["name"]
    if speaker.get("userId") is not None:
        user["userId"] = speaker["userId"]
    return user


def duration(started_at: float, offset: float, length: float) -> dict[str, Any]:
    """``duration`` object: absolute start/end plus offset/length in seconds from stream start."""
    return {  # float(): engines compute with numpy, and its scalars are not JSON numbers
        "startTime": iso(started_at + offset),
        "endTime": iso(started_at + offset + length),
        "timeOffset": round(float(offset), 3),
        "duration": round(float(length), 3),
    }


def transcript_response(
    *,
    utterance_id: str,
    text: str,
    is_final: bool,
    started_at: float,
    offset: float,
    length: float,
    user: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``transcript_response`` data: ``text`` is the cased, punctuated transcript."""
    data: dict[str, Any] = {
        "type": "transcript_response",
        "id": utterance_id,
        "isFinal": is_final,
        "payload": {"content": normalise(text), "contentType": "text/plain"},
        "punctuated": {"transcript": text},
        "duration": duration(started_at, offset, length),
    }
    if user:
        data["user"] = user
    return data


def message(
    *,
    text: str,
    words: Sequence[TimedWord],
    started_at: float,
    offset: float,
    length: float,
    user: dict[str, Any] | None = None,
    timezone_offset_minutes: int | None = None,
    message_id: str | None = None,
    language: str | None = None,
    translated_to: str | None = None,
) -> dict[str, Any]:
    """One entry of ``message_response.messages``; ``language`` is the spoken language (BCP-47),
    ``translated_to`` the language of ``text`` when it was translated (docs/languages.md)."""
    mid = message_id or new_id()
    words_json = json.dumps(
        [{"word": w.word, "startTime": iso(started_at + w.start), "endTime": iso(started_at + w.end)} for w in words],
        separators=(",", ":"),
    )
    return {
        "id": mid,
        "from": dict(user) if user else {},
        "payload": {"content": text, "contentType": "text/plain"},
        "channel": {"id": "realtime-api"},
        "metadata": {
            "disablePunctuation": False,
            "timezoneOffset": timezone_offset_minutes or 0,
            "originalContent": text,
            "words": words_json,
            "originalMessageId": mid,
            **({"language": language} if language else {}),
            **({"translatedTo": translated_to} if translated_to else {}),
        },
        "dismissed": False,
        "duration": duration(started_at, offset, length),
    }


def message_response(messages: Sequence[dict[str, Any]], sequence_number: int) -> dict[str, Any]:
    """``message_response`` data wrapping entries built by :func:`message`."""
    return {"type": "message_response", "messages": list(messages), "sequenceNumber": sequence_number}


def split_sentences(words: Sequence[TimedWord]) -> list[list[TimedWord]]:
    """Group words into sentences at words ending in ``.``, ``?`` or ``!``."""
    sentences: list[list[TimedWord]] = []
    current: list[TimedWord] = []
    for w in words:
        current.append(w)
        if w.word.endswith((".", "?", "!", "。", "？", "！", "؟", "।")):
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    return sentences
