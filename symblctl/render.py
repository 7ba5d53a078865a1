"""Human rendering of events: a live terminal view and a readable transcript."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TextIO

_INSIGHT_MARK = {"question": "?", "action_item": "!", "follow_up": ">"}


def _who(data: dict[str, Any]) -> str:
    user = data.get("from") or data.get("user") or {}
    return user.get("name") or user.get("userId") or ""


def _insight_line(insight: dict[str, Any]) -> str:
    kind = insight.get("type", "?")
    text = (insight.get("payload") or {}).get("content") or insight.get("text", "")
    extra = []
    if insight.get("assignee", {}).get("name"):
        extra.append(f"assignee {insight['assignee']['name']}")
    if insight.get("dueBy", {}).get("value"):
        extra.append(f"due {insight['dueBy']['value']}")
    tail = f"  ({', '.join(extra)})" if extra else ""
    return f"  {_INSIGHT_MARK.get(kind, '*')} {kind}: {text}{tail}"


class EventPrinter:
    """Prints events for a person; interim text is rewritten in place on a terminal."""

    def __init__(self, out: TextIO, as_json: bool = False, live: bool = True, show_ids: bool = False) -> None:
        self.out = out
        self.as_json = as_json
        self.live = live and hasattr(out, "isatty") and out.isatty()
        self.show_ids = show_ids
        self._interim = False
        self._conversation_id: str | None = None

    def _clear_interim(self) -> None:
        if self._interim:
            self.out.write("\r\x1b[K")
            self._interim = False

    def _line(self, text: str, event: dict[str, Any]) -> None:
        self._clear_interim()
        prefix = f"[{event.get('connectionId', '')[:8]}] " if self.show_ids else ""
        self.out.write(prefix + text + "\n")
        self.out.flush()

    def show(self, event: dict[str, Any]) -> None:
        self._conversation_id = event.get("conversationId") or self._conversation_id
        if self.as_json:
            self.out.write(json.dumps(event, ensure_ascii=False) + "\n")
            self.out.flush()
            return
        kind = event.get("type")
        data = event.get("data") or {}
        if kind == "transcript_response":
            text = (data.get("punctuated") or {}).get("transcript") or (data.get("payload") or {}).get("content", "")
            if not data.get("isFinal"):
                if self.live:
                    self._clear_interim()
                    self.out.write("… " + text[-150:])
                    self.out.flush()
                    self._interim = True
                return
            self._clear_interim()  # the final is printed with its message_response
            return
        if kind == "message_response":
            for m in data.get("messages", []):
                who = _who(m)
                self._line(f"{who + ': ' if who else ''}{m.get('payload', {}).get('content', '')}", event)
        elif kind == "insight_response":
            for i in data.get("insights", []):
                self._line(_insight_line(i), event)
        elif kind == "topic_response":
            phrases = ", ".join(t.get("phrases", "") for t in data.get("topics", []))
            if phrases:
                self._line(f"  # topics: {phrases}", event)
        elif kind == "tracker_response":
            for t in data.get("trackers", []):
                values = ", ".join(m.get("value", "") for m in t.get("matches", []))
                self._line(f"  @ tracker {t.get('name')}: {values}", event)
        elif kind in ("connection_failed", "device_lost", "device_restored", "call_failed", "call_ended"):
            err = data.get("error") or {}
            self._line(f"  [{kind}] {err.get('message') or data.get('reason') or data.get('message') or ''}", event)

    def interrupt(self) -> None:
        self._clear_interim()
        self.out.flush()

    def done(self, final: dict[str, Any] | None) -> None:
        self._clear_interim()
        if not self.as_json:
            conversation = (final or {}).get("conversationId") or self._conversation_id
            self.out.write(f"{'stopped' if final else 'completed'}; conversationId {conversation}\n")
        self.out.flush()


def transcript_lines(events: Iterable[dict[str, Any]]) -> list[str]:
    """A finished (or cut) conversation as text: messages in order, then insights and topics."""
    lines: list[str] = []
    insights: list[str] = []
    topics: list[str] = []
    header = None
    for e in events:
        data = e.get("data") or {}
        if header is None and e.get("conversationId"):
            header = f"conversation {e['conversationId']} (connection {e.get('connectionId')})"
        if e.get("type") == "message_response":
            for m in data.get("messages", []):
                start = (m.get("duration") or {}).get("startTime", "")
                who = _who(m)
                lines.append(f"[{start[11:19]}] {who + ': ' if who else ''}{m.get('payload', {}).get('content', '')}")
        elif e.get("type") == "insight_response":
            insights.extend(_insight_line(i) for i in data.get("insights", []))
        elif e.get("type") == "topic_response":
            topics = [t.get("phrases", "") for t in data.get("topics", [])]
        elif e.get("type") == "connection_failed":
            lines.append(f"-- connection failed: {(data.get('error') or {}).get('message', '')}")
    out = [header or "conversation", *lines]
    if insights:
        out += ["", "insights:", *insights]
    if topics:
        out += ["", "topics: " + ", ".join(topics)]
    return out
