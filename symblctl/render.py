"""Human rendering of events: a live terminal view and a readable transcript."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import datetime
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
        self._interim = False  # a bottom line (interim text and/or status) is on screen
        self._interim_text = ""
        self._status = ""
        self._conversation_id: str | None = None
        self._connection_id: str | None = None
        self.end_event: dict[str, Any] | None = None  # connection_stopped / connection_failed

    def _clear_interim(self) -> None:
        if self._interim:
            self.out.write("\r\x1b[K")
            self._interim = False

    def _draw_bottom(self) -> None:
        """The rewritable last line: the progress status, then the interim text (cut to the width)."""
        if not self.live:
            return
        self._clear_interim()
        parts = [p for p in (self._status, "… " + self._interim_text[-150:] if self._interim_text else "") if p]
        if parts:
            width = shutil.get_terminal_size((100, 24)).columns - 1
            self.out.write("  ".join(parts)[:width])
            self._interim = True
        self.out.flush()

    def set_status(self, text: str) -> None:
        self._status = text
        self._draw_bottom()

    def _line(self, text: str, event: dict[str, Any]) -> None:
        self._clear_interim()
        prefix = f"[{event.get('connectionId', '')[:8]}] " if self.show_ids else ""
        self.out.write(prefix + text + "\n")
        self._draw_bottom()
        self.out.flush()

    def show(self, event: dict[str, Any]) -> None:
        self._conversation_id = event.get("conversationId") or self._conversation_id
        self._connection_id = event.get("connectionId") or self._connection_id
        if event.get("type") in ("connection_stopped", "connection_failed"):
            self.end_event = event
        if self.as_json:
            self.out.write(json.dumps(event, ensure_ascii=False) + "\n")
            self.out.flush()
            return
        kind = event.get("type")
        data = event.get("data") or {}
        if kind == "transcript_response":
            text = (data.get("punctuated") or {}).get("transcript") or (data.get("payload") or {}).get("content", "")
            if not data.get("isFinal"):
                self._interim_text = text
                self._draw_bottom()
                return
            self._interim_text = ""  # the final is printed with its message_response
            self._draw_bottom()
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
        elif kind in _CALL_PROGRESS:
            self._line(_CALL_PROGRESS[kind](data), event)
        elif kind in ("connection_failed", "device_lost", "device_restored"):
            err = data.get("error") or {}
            self._line(f"  [{kind}] {err.get('message') or data.get('reason') or data.get('message') or ''}", event)

    def interrupt(self) -> None:
        self._interim_text = self._status = ""
        self._clear_interim()
        self.out.flush()

    def done(self, final: dict[str, Any] | None, conn: dict[str, Any] | None = None) -> None:
        """The last line: how it ended and both ids (either names the conversation in every command)."""
        self._interim_text = self._status = ""
        self._clear_interim()
        if not self.as_json:
            conversation = (final or {}).get("conversationId") or self._conversation_id or (conn or {}).get(
                "conversationId")
            connection = (final or {}).get("connectionId") or self._connection_id or (conn or {}).get("connectionId")
            failed = self.end_event is not None and self.end_event.get("type") == "connection_failed"
            how = "stopped" if final else "failed" if failed else "completed"
            self.out.write(f"{how}; conversationId {conversation} connectionId {connection}\n")
        self.out.flush()


def _sip(data: dict[str, Any]) -> str:
    code, reason = data.get("sipCode"), data.get("reason") or ""
    return f"SIP {code} {reason}".strip() if code else reason


_CALL_PROGRESS: dict[str, Callable[[dict[str, Any]], str]] = {
    "call_dialling": lambda d: f"  [call] dialling {d.get('uri', '')}",
    "call_ringing": lambda d: f"  [call] ringing ({_sip(d)})",
    "call_answered": lambda d: f"  [call] answered ({d.get('codec', '')})",
    "call_held": lambda d: "  [call] on hold" if d.get("held") else "  [call] off hold",
    "call_dtmf": lambda d: f"  [call] sent DTMF {d.get('digits', '')}",
    "call_ended": lambda d: f"  [call] ended by the {'far end' if d.get('by') == 'remote' else 'caller'}: "
                            f"{_sip(d) or 'hung up'}",
    "call_failed": lambda d: f"  [call] failed: {_sip(d)}",
}


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def progress_line(position: float, duration: float | None, elapsed: float, width: int = 20) -> str:
    """``[#########-----------] 0:12 / 0:40  2.1x real time`` (no bar when the length is unknown)."""
    rtf = f"{position / elapsed:.1f}x real time" if elapsed > 0.5 else ""
    if duration:
        done = max(0, min(width, round(width * position / duration)))
        return f"[{'#' * done}{'-' * (width - done)}] {_clock(position)} / {_clock(duration)}  {rtf}".rstrip()
    return f"{_clock(position)}  {rtf}".rstrip()


def conversations_table(rows: list[dict[str, Any]]) -> list[str]:
    """The ``symblctl conversations`` listing: one line per conversation, newest first."""
    if not rows:
        return ["no conversations in the journals"]
    out = [f"{'STARTED':<16}  {'LENGTH':>7}  {'SOURCE':<22}  {'WORDS':>5}  {'STATE':<8}  {'CONVERSATION':<16}  "
           f"{'CONNECTION':<32}  TITLE"]
    for r in rows:
        started = _local_time(r.get("startedAt"))
        seconds = r.get("audioSeconds") if r.get("audioSeconds") is not None else r.get("durationSeconds")
        length = _clock(float(seconds)) if seconds is not None else "-"
        out.append(f"{started:<16}  {length:>7}  {str(r.get('sourceLabel') or r.get('source'))[:22]:<22}  "
                   f"{r.get('words', 0):>5}  {r.get('state')!s:<8}  {r.get('conversationId')!s:<16}  "
                   f"{r.get('connectionId')!s:<32}  {r.get('title') or ''}")
    return out


def _local_time(iso: str | None) -> str:
    if not iso:
        return "-"
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso[:16]
