"""The Conversation API's response bodies, made from a conversation's events (pure: no I/O).

The shapes follow the models of Symbl's own SDKs (PyPI ``symbl-rest`` 1.0.14, npm ``@symblai/symbl-js``);
``conversations.py`` serves them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

_MEMBER_NS = uuid.UUID("5f0c7a52-5d0e-4a58-9b7e-2d3c0f1b8a11")
TASK_TYPES = ("action_item", "follow_up")


class NotFound(Exception):
    pass


# ---------------------------------------------------------------- shapes (pure: events → JSON)


def _data(events: list[dict[str, Any]], etype: str) -> Iterator[dict[str, Any]]:
    for e in events:
        if e.get("type") == etype and isinstance(e.get("data"), dict):
            yield e["data"]


def _ts(text: str | None) -> float | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp() if text else None
    except ValueError:
        return None


def member_of(speaker: dict[str, Any] | None) -> dict[str, Any]:
    """A speaker (``from``/``user`` of our events) as a Symbl member: stable id from who it is."""
    speaker = speaker or {}
    key = str(speaker.get("userId") or speaker.get("email") or speaker.get("name") or "unknown")
    # The id follows who it is (not an id our events carry): the same person in the start request,
    # in messages and in insights is one member.
    member = {"id": str(uuid.uuid5(_MEMBER_NS, key)), "name": speaker.get("name") or key}
    email = speaker.get("email") or (speaker.get("userId") if "@" in str(speaker.get("userId", "")) else None)
    if email:
        member["email"] = email
    return member


def messages(events: list[dict[str, Any]], conversation_id: str, verbose: bool = False,
             members: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    out = []
    for data in _data(events, "message_response"):
        for m in data.get("messages") or []:
            duration = m.get("duration") or {}
            member = _renamed(member_of(m.get("from")), members)
            msg: dict[str, Any] = {
                "id": m.get("id"), "text": (m.get("payload") or {}).get("content", ""),
                "from": member, "startTime": duration.get("startTime"), "endTime": duration.get("endTime"),
                "timeOffset": duration.get("timeOffset"), "duration": duration.get("duration"),
                "conversationId": conversation_id, "phrases": [],
            }
            if "sentiment" in m:
                msg["sentiment"] = m["sentiment"]
            if verbose:
                msg["words"] = _words(m)
            out.append(msg)
    # Several speakers' connections finalise independently: the conversation reads in spoken order.
    return sorted(out, key=lambda m: str(m["startTime"] or ""))


def _words(m: dict[str, Any]) -> list[dict[str, Any]]:
    raw = (m.get("metadata") or {}).get("words") or "[]"
    try:
        words = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return []
    return [{"word": w.get("word"), "startTime": w.get("startTime"), "endTime": w.get("endTime"),
             "score": w.get("score", 0.9), "timeOffset": None, "duration": None} for w in words]


def _renamed(member: dict[str, Any], members: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    return {**member, **(members or {}).get(member["id"], {})}


def insights(events: list[dict[str, Any]], types: tuple[str, ...],
             members: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    out = []
    for data in _data(events, "insight_response"):
        for i in data.get("insights") or []:
            if i.get("type") not in types:
                continue
            speaker = _renamed(member_of(i.get("from")), members)
            item: dict[str, Any] = {
                "id": i.get("id"), "text": i.get("text") or (i.get("payload") or {}).get("content", ""),
                "type": i.get("type"), "score": i.get("confidence", 0.0),
                "messageIds": [ref] if (ref := (i.get("messageReference") or {}).get("id")) else [],
                "from": {"id": speaker["id"], "name": speaker["name"],
                         "userId": (i.get("from") or {}).get("userId") or speaker.get("email")},
            }
            if i.get("type") in TASK_TYPES:
                assignee = member_of(i["assignee"]) if i.get("assignee") else speaker
                item.update({"entities": _entities(i), "phrases": [], "definitive": True, "assignee": assignee})
                due = i.get("dueBy")
                if due:  # real-time frames wrap it ({"value": ...}); the REST models want the date-time
                    item["dueBy"] = due.get("value") if isinstance(due, dict) else due
            out.append(item)
    return out


def _entities(insight: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": t.get("type"), "text": t.get("text"), "offset": t.get("beginOffset"), "value": t.get("value")}
            for t in insight.get("tags") or []]


def topics(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The latest topic list of each connection (each topic_response restates its ranking so far)."""
    latest: dict[Any, list[dict[str, Any]]] = {}
    for e in events:
        if e.get("type") == "topic_response" and isinstance(e.get("data"), dict):
            latest[e.get("connectionId")] = e["data"].get("topics") or latest.get(e.get("connectionId"), [])
    merged: dict[str, dict[str, Any]] = {}  # the same topic from two speakers is one topic
    for ts in latest.values():
        for t in ts:
            merged.setdefault(str(t.get("phrases")).lower(), t)
    return [{"id": t.get("id"), "text": t.get("phrases"), "type": "topic", "score": t.get("score"),
             "messageIds": [r.get("id") for r in t.get("messageReferences") or []], "entities": [],
             "parentRefs": [], **({"sentiment": t["sentiment"]} if "sentiment" in t else {})} for t in merged.values()]


def trackers(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Final tracker matches, merged per tracker and value."""
    merged: dict[str, dict[str, Any]] = {}
    for data in _data(events, "tracker_response"):
        if data.get("isFinal") is False:
            continue
        for t in data.get("trackers") or []:
            entry = merged.setdefault(t.get("name"), {"id": t.get("id") or str(uuid.uuid5(_MEMBER_NS, t.get("name"))),
                                                     "name": t.get("name"), "matches": {}})
            for m in t.get("matches") or []:
                got = entry["matches"].setdefault(m.get("value"), {"type": m.get("type", "vocabulary"),
                                                                   "value": m.get("value"), "messageRefs": [],
                                                                   "insightRefs": []})
                got["messageRefs"].extend(m.get("messageRefs") or [])
                got["insightRefs"].extend(m.get("insightRefs") or [])
    return [{**e, "matches": list(e["matches"].values())} for e in merged.values()]


def entities(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``entity_response`` matches as the REST model's entities (``EntitiesTag``): one per value."""
    times = {m["id"]: m for m in messages(events, "")}
    out: dict[tuple[Any, Any, Any], dict[str, Any]] = {}
    for data in _data(events, "entity_response"):
        for e in data.get("entities") or []:
            for match in e.get("matches") or []:
                key = (e.get("type"), e.get("subType"), match.get("detectedValue"))
                refs = [{"id": r.get("id"), "startTime": (times.get(r.get("id")) or {}).get("startTime"),
                         "endTime": (times.get(r.get("id")) or {}).get("endTime"), "text": r.get("text"),
                         "offset": r.get("offset")} for r in match.get("messageRefs") or []]
                entry = out.setdefault(key, {"type": e.get("type"), "subType": e.get("subType"),
                                             "category": e.get("category", "Generic"),
                                             "value": match.get("detectedValue"),
                                             "text": refs[0]["text"] if refs else None, "messageRefs": []})
                entry["messageRefs"].extend(refs)
    return list(out.values())


def members(events: list[dict[str, Any]], renamed: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for data in _data(events, "connection_started"):
        if isinstance(data.get("speaker"), dict):
            m = member_of(data["speaker"])
            seen[m["id"]] = m
    for m in messages(events, ""):
        seen.setdefault(m["from"]["id"], m["from"])
    return [_renamed(m, renamed) for m in seen.values()]


def conversation(events: list[dict[str, Any]], conversation_id: str,
                 renamed: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    started = next(_data(events, "connection_started"), {})
    times = [e.get("time") for e in events if e.get("time")]
    connections = {e.get("connectionId") for e in events}
    ended = connections <= {e.get("connectionId") for e in events if e.get("type") == "conversation_completed"}
    return {"id": conversation_id, "type": "meeting", "name": started.get("meetingTitle") or "Conversation",
            "startTime": times[0] if times else None, "endTime": times[-1] if ended and times else None,
            "members": members(events, renamed)}


def analytics(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Talk time, silence and pace per member from the messages' times and words."""
    spans: list[tuple[float, float, str]] = []
    words: dict[str, int] = {}
    info: dict[str, dict[str, Any]] = {}
    for m in messages(events, ""):
        start, end = _ts(m["startTime"]), _ts(m["endTime"])
        if start is None or end is None:
            continue
        mid = m["from"]["id"]
        info[mid] = m["from"]
        spans.append((start, end, mid))
        words[mid] = words.get(mid, 0) + len(m["text"].split())
    times = [t for e in events if (t := _ts(e.get("time"))) is not None]
    total = max(times) - min(times) if len(times) > 1 else 0.0
    talk = {mid: sum(e - s for s, e, who in spans if who == mid) for mid in info}
    covered = _union(sorted((s, e) for s, e, _ in spans))
    total = max(total, covered)
    overlap = sum(talk.values()) - covered

    def pct(seconds: float) -> float:
        return round(100 * seconds / total, 2) if total else 0.0

    silence = max(0.0, total - covered)
    return {
        "metrics": [{"type": "total_silence", "percent": pct(silence), "seconds": round(silence, 2)},
                    {"type": "total_talk_time", "percent": pct(covered), "seconds": round(covered, 2)},
                    {"type": "total_overlap", "percent": pct(overlap), "seconds": round(overlap, 2)}],
        "members": [{"id": mid, "name": m.get("name"), "userId": m.get("email") or m.get("name"),
                     "pace": {"wpm": round(words[mid] / (talk[mid] / 60)) if talk[mid] else 0},
                     "talkTime": {"percentage": pct(talk[mid]), "seconds": round(talk[mid], 2)},
                     "listenTime": {"percentage": pct(total - talk[mid]), "seconds": round(total - talk[mid], 2)},
                     "overlap": {}} for mid, m in info.items()],
    }


def _union(spans: list[tuple[float, float]]) -> float:
    covered, cur_s, cur_e = 0.0, None, None
    for s, e in spans:
        if cur_e is None or s > cur_e:
            if cur_e is not None and cur_s is not None:
                covered += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None and cur_s is not None:
        covered += cur_e - cur_s
    return covered


def transcript(events: list[dict[str, Any]], content_type: str, speakers: bool = True,
               names: dict[str, dict[str, Any]] | None = None) -> str:
    """Symbl's formatted transcript: ``text/markdown`` or ``text/srt``."""
    msgs = messages(events, "", members=names)
    if content_type == "text/srt":
        origin = min((t for m in msgs if (t := _ts(m["startTime"])) is not None), default=0.0)
        blocks = []
        for n, m in enumerate(msgs, 1):
            start, end = (_ts(m["startTime"]) or origin) - origin, (_ts(m["endTime"]) or origin) - origin
            who = f"{m['from']['name']}: " if speakers else ""
            blocks.append(f"{n}\n{_srt_time(start)} --> {_srt_time(end)}\n{who}{m['text']}\n")
        return "\n".join(blocks)
    lines = []
    for m in msgs:
        offset = _ts(m["startTime"]) or 0.0
        origin = _ts(msgs[0]["startTime"]) or 0.0
        stamp = _clock(offset - origin)
        lines.append(f"{m['from']['name']} ({stamp}): {m['text']}" if speakers else m["text"])
    return "\n\n".join(lines)


def _srt_time(seconds: float) -> str:
    ms = round(max(0.0, seconds) * 1000)
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def _clock(seconds: float) -> str:
    s = int(max(0.0, seconds))
    return f"{s // 60:02d}:{s % 60:02d}"


# ---------------------------------------------------------------- routes
