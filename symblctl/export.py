"""A conversation's events as the formats transcription users expect: txt, md, srt, vtt, json.

Times are offsets from the start of the conversation's audio (``duration.timeOffset`` of each
message, as Symbl sends it), never wall-clock times; speakers come from each message's ``from``.
``render(events, fmt)`` takes the connection's history (``Client.all_history``) in seq order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from symblctl.revisions import Revised, revisions

FORMATS = ("txt", "md", "srt", "vtt", "json")


@dataclass(frozen=True)
class Cue:
    start: float  # seconds from the start of the conversation
    end: float
    speaker: str | None
    text: str
    speaker_id: str | None = None  # from.id: a diarization label or an enrolled voice (the same person, the same id)
    user_id: str | None = None


@dataclass
class Conversation:
    connection_id: str | None = None
    conversation_id: str | None = None
    title: str | None = None
    started_at: str | None = None
    state: str | None = None
    error: str | None = None
    cues: list[Cue] | None = None
    insights: list[dict[str, Any]] | None = None
    topics: list[str] | None = None


def _seconds_between(start: str | None, later: str | None) -> float | None:
    if not start or not later:
        return None
    try:
        return (datetime.fromisoformat(later.replace("Z", "+00:00"))
                - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()
    except ValueError:
        return None


def _cue(message: dict[str, Any], audio_start: str | None, revised: Revised | None = None) -> Cue:
    d = message.get("duration") or {}
    start = d.get("timeOffset")
    if start is None:  # an engine that gives only wall-clock times: offset from the first audio
        start = _seconds_between(audio_start, d.get("startTime")) or 0.0
    length = d.get("duration")
    if length is None:
        length = _seconds_between(d.get("startTime"), d.get("endTime")) or 0.0
    who = message.get("from") or {}
    if revised is not None:
        who = revised.who(who, message.get("id"))
    return Cue(round(max(0.0, float(start)), 3), round(max(0.0, float(start) + float(length)), 3),
               who.get("name") or who.get("userId") or None, (message.get("payload") or {}).get("content", ""),
               speaker_id=who.get("id") or None, user_id=who.get("userId") or None)


def _revised_insight(insight: dict[str, Any], revised: Revised) -> dict[str, Any]:
    """The insight with its ``from`` and ``assignee`` as revised (a merged label: the person it turned out to be;
    a late print: the speaker of the message it refers to, also as assignee when that was its ``from``)."""
    out = dict(insight)
    ref = (insight.get("messageReference") or {}).get("id")
    old = out.get("from")
    for key in ("from", "assignee"):
        who = out.get(key)
        follows = key == "from" or (isinstance(old, dict) and who == old)
        if follows and ref is not None and str(ref) in revised.moved:
            who = revised.moved[str(ref)]
        if isinstance(who, dict):
            out[key] = revised.labels.get(str(who.get("id")), who)
    return out


def _name(who: Any) -> str | None:
    return (who.get("name") or who.get("userId") or None) if isinstance(who, dict) else None


def collect(events: Iterable[dict[str, Any]]) -> Conversation:
    conv = Conversation(cues=[], insights=[], topics=[])
    events = list(events)
    revised = revisions(events)
    for e in events:
        data = e.get("data") or {}
        conv.connection_id = conv.connection_id or e.get("connectionId")
        conv.conversation_id = conv.conversation_id or e.get("conversationId")
        kind = e.get("type")
        if kind == "connection_started":
            conv.title = data.get("meetingTitle")
            conv.started_at = data.get("startedAt") or e.get("time")
        elif kind == "message_response":
            messages = [p for m in data.get("messages", []) for p in revised.parts.get(str(m.get("id")), [m])]
            conv.cues.extend(_cue(m, conv.started_at, revised) for m in messages)  # type: ignore[union-attr]
        elif kind == "insight_response":
            conv.insights.extend(_revised_insight(i, revised) for i in data.get("insights", []))  # type: ignore[union-attr]
        elif kind == "topic_response":
            conv.topics = [t.get("phrases", "") for t in data.get("topics", [])]
        elif kind in ("connection_stopped", "connection_failed"):
            conv.state = data.get("state")
            conv.error = (data.get("error") or {}).get("message")
    conv.cues.sort(key=lambda c: c.start)  # type: ignore[union-attr]
    return conv


def clock(seconds: float, sep: str = ".", hours: bool = True) -> str:
    """00:01:02.345 (``sep`` "," for SRT); without ``hours`` 01:02 for the text formats."""
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    if not hours:
        return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _insight_text(i: dict[str, Any]) -> str:
    return str((i.get("payload") or {}).get("content") or i.get("text", ""))


def _txt(c: Conversation) -> str:
    out = [f"[{clock(q.start, hours=False)}] {q.speaker + ': ' if q.speaker else ''}{q.text}" for q in c.cues or []]
    if c.error:
        out.append(f"-- connection failed: {c.error}")
    return "\n".join(out) + "\n"


def _md(c: Conversation) -> str:
    out = [f"# {c.title or 'Conversation ' + str(c.conversation_id)}", ""]
    meta = [f"conversation `{c.conversation_id}`", f"connection `{c.connection_id}`"]
    if c.started_at:
        meta.append(f"started {c.started_at}")
    out += [", ".join(meta), ""]
    for q in c.cues or []:
        who = f"**{q.speaker}** " if q.speaker else ""
        out += [f"{who}`{clock(q.start, hours=False)}` {q.text}", ""]
    if c.error:
        out += [f"> connection failed: {c.error}", ""]
    if c.insights:
        out += ["## Insights", ""] + [_md_insight(i) for i in c.insights] + [""]
    if c.topics:
        out += ["## Topics", "", ", ".join(c.topics), ""]
    return "\n".join(out)


def _md_insight(i: dict[str, Any]) -> str:
    assignee = _name(i.get("assignee"))
    return f"- {i.get('type', '?')}: {_insight_text(i)}" + (f" (→ **{assignee}**)" if assignee else "")


def _srt(c: Conversation) -> str:
    blocks = []
    for n, q in enumerate(c.cues or [], 1):
        text = f"{q.speaker}: {q.text}" if q.speaker else q.text
        blocks.append(f"{n}\n{clock(q.start, ',')} --> {clock(q.end, ',')}\n{text}\n")
    return "\n".join(blocks)


def _vtt_text(text: str) -> str:
    """WebVTT cue text: '&', '<' and '>' are markup there, so they are escaped (a name too)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _vtt(c: Conversation) -> str:
    blocks = ["WEBVTT\n"]
    for q in c.cues or []:
        said = _vtt_text(q.text)
        text = f"<v {_vtt_text(q.speaker)}>{said}" if q.speaker else said
        blocks.append(f"{clock(q.start)} --> {clock(q.end)}\n{text}\n")
    return "\n".join(blocks)


def _json(c: Conversation) -> str:
    body = {
        "connectionId": c.connection_id, "conversationId": c.conversation_id, "title": c.title,
        "startedAt": c.started_at, "state": c.state, "error": c.error,
        "messages": [{"start": q.start, "end": q.end, "speaker": q.speaker, "speakerId": q.speaker_id,
                      "userId": q.user_id, "text": q.text} for q in c.cues or []],
        "insights": [{"type": i.get("type"), "text": _insight_text(i), "from": _name(i.get("from")),
                      "assignee": _name(i.get("assignee"))} for i in c.insights or []],
        "topics": c.topics or [],
    }
    return json.dumps(body, ensure_ascii=False, indent=2) + "\n"


_RENDER = {"txt": _txt, "md": _md, "srt": _srt, "vtt": _vtt, "json": _json}


def render(events: Iterable[dict[str, Any]], fmt: str) -> str:
    if fmt not in _RENDER:
        raise ValueError(f"unknown transcript format {fmt!r} (one of {', '.join(FORMATS)})")
    return _RENDER[fmt](collect(events))
