"""Past and present conversations from the journals: the ``conversations`` list and id lookup.

Each journal (one per connection) is summarised once per version of the file (size, mtime):
time, duration, source, title, words, state, both ids. The summaries let the control
commands accept a conversationId wherever a connectionId is expected (``resolve``).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from symbld.core.journal import Journal

_END_TYPES = ("connection_stopped", "connection_failed")


@dataclass
class _Cached:
    stamp: tuple[int, float]
    summary: dict[str, Any]


def _source_label(source: dict[str, Any]) -> str:
    """"file meeting.flac", "sip sip:bob@host", "mic", "push"."""
    kind = str(source.get("kind") or source.get("type") or "?")
    detail = source.get("path") or source.get("uri") or source.get("phoneNumber") or source.get("device")
    if kind == "file" and isinstance(detail, str):
        detail = os.path.basename(detail)
    return f"{kind} {detail}" if detail else kind


def summarise(journal: Journal, connection_id: str) -> dict[str, Any] | None:
    """One conversation from its journal, or None when the file holds no start event."""
    out: dict[str, Any] | None = None
    words = 0
    for event in journal.read(connection_id):
        kind, data = event.get("type"), event.get("data") or {}
        if kind == "connection_started":
            source = data.get("source") or {}
            out = {"connectionId": connection_id, "conversationId": event.get("conversationId"),
                   "startedAt": data.get("startedAt") or event.get("time"), "endedAt": None,
                   "durationSeconds": None, "audioSeconds": None, "source": source.get("kind"),
                   "sourceLabel": _source_label(source), "title": data.get("meetingTitle"),
                   "engine": data.get("engine"), "words": 0, "state": "live", "reason": None}
        elif out is None:
            continue
        elif kind == "message_response":
            words += sum(len((m.get("payload") or {}).get("content", "").split()) for m in data.get("messages", []))
        elif kind in _END_TYPES:
            out.update(state=data.get("state") or ("failed" if kind == "connection_failed" else "stopped"),
                       endedAt=data.get("endedAt") or event.get("time"), reason=data.get("reason"),
                       durationSeconds=data.get("durationSeconds"), audioSeconds=data.get("audioSeconds"))
    if out is not None:
        out["words"] = words
    return out


class ConversationIndex:
    """Summaries of every journal, refreshed lazily when a file changed."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def _stamp(self, connection_id: str) -> tuple[int, float] | None:
        try:
            st = self.journal.path(connection_id).stat()
        except (OSError, ValueError):
            return None
        return st.st_size, st.st_mtime

    def all(self) -> list[dict[str, Any]]:
        """Every conversation with a journal, newest first."""
        out = []
        with self._lock:
            ids = self.journal.connection_ids()
            for stale in set(self._cache) - set(ids):
                del self._cache[stale]
            for cid in ids:
                stamp = self._stamp(cid)
                if stamp is None:
                    continue
                cached = self._cache.get(cid)
                if cached is None or cached.stamp != stamp:
                    summary = summarise(self.journal, cid)
                    if summary is None:
                        continue
                    cached = self._cache[cid] = _Cached(stamp, summary)
                out.append(dict(cached.summary))
        out.sort(key=lambda s: s.get("startedAt") or "", reverse=True)
        return out

    def connection_for(self, conversation_id: str) -> str | None:
        """The (newest) connection of a conversation id, from the journals."""
        for s in self.all():
            if s.get("conversationId") == conversation_id:
                return str(s["connectionId"])
        return None


def listing(index: ConversationIndex, live: dict[str, dict[str, Any]], *, since: str | None = None,
            source: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The ``conversations`` result: journals plus the live state of connections still running.

    ``since``: an ISO 8601 time, only conversations started at or after it; ``source``: a source
    kind (file, mic, push, sip, pstn). ``live``: connectionId -> the session's object.
    """
    after = _when(since) if since is not None else None
    rows = []
    for s in index.all():
        now = live.get(s["connectionId"])
        if now is not None:  # the journal lags a live connection: take the session's own figures
            s.update(state=now.get("state", s["state"]), audioSeconds=now.get("audioSeconds"),
                     durationSeconds=now.get("durationSeconds"))
        elif s["state"] == "live":
            s["state"] = "cut"  # no end event and not running: the daemon died under it
        if after is not None and (_when(s.get("startedAt")) or after) < after:
            continue
        if source is not None and s.get("source") != source:
            continue
        rows.append(s)
    return rows[:limit]


def _when(text: str | None) -> datetime | None:
    """An ISO 8601 time as an aware datetime (UTC when no zone is given); None if unreadable."""
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def parse_since(text: str) -> datetime | None:
    return _when(text)


def resolve(value: str, *, known: Any, index: ConversationIndex | None,
            live_by_conversation: dict[str, str]) -> str:
    """A connectionId for ``value``, which may be a connectionId or a conversationId.

    ``known(id)`` says whether a connection of that id exists (session or journal). Unknown
    values are returned unchanged, so the command reports them as unknown connections.
    """
    if known(value):
        return value
    if value in live_by_conversation:
        return live_by_conversation[value]
    if index is not None:
        found = index.connection_for(value)
        if found is not None:
            return found
    return value
