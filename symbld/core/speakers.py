"""Speaker events (the ``speaker_event`` command; over the Symbl server ``POST /v1/event/{id}``, the
JS SDK's ``pushSpeakerEvents``) applied to results.

A speaker event is journaled on the daemon connection as ``speaker_event`` with the audio position
it arrived at (``timeOffset``, seconds of that connection's audio). Results are attributed by
where their audio is, not by when they arrive: a result belongs to whoever was speaking at the
middle of its audio (its start carries the recogniser's pre-roll, so it can lie before the event
that began it), and a message finalised after the event keeps the speaker of its audio. The same ``Attribution``
rewrites live frames (the server's pump) and the journal (the Conversation API), so both agree.

Rules (Symbl never published its own): ``started_speaking`` and ``speaker_change`` make their
``user`` the speaker from that position on; ``stopped_speaking`` of the current speaker gives the
audio back to the connection's own speaker (its ``start_request.speaker``); ``joined``/``left``
and events without a ``user`` change nothing.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable
from typing import Any

from symblctl.revisions import Revised, revisions
from symbld import shapes

EVENT = "speaker_event"  # the daemon event type (symbld/control/commands/speakers.py)
TYPES = ("started_speaking", "stopped_speaking", "speaker_change", "joined", "left")
SPEAKING = ("started_speaking", "speaker_change")


def check_event(body: Any) -> str | None:
    """Why a client's speaker event cannot be applied, or None when it can."""
    if not isinstance(body, dict):
        return "a speaker event is a JSON object"
    if body.get("topic", "speaker") != "speaker":
        return "topic must be 'speaker'"
    if body.get("type") not in TYPES:
        return f"type must be one of {', '.join(TYPES)}"
    user = body.get("user")
    if user is not None and not (isinstance(user, dict) and all(isinstance(user.get(k, ""), str)
                                                                 for k in ("userId", "name"))):
        return "user must be an object with string userId and name"
    return None


class Attribution:
    """Who spoke where on one daemon connection: its own speaker, changed by speaker events."""

    def __init__(self, connection_id: str, own: dict[str, Any] | None = None) -> None:
        self.connection_id = connection_id
        self.own = own  # the Symbl user object of the connection's speaker (None: no speaker)
        self._offsets: list[float] = []
        self._users: list[dict[str, Any] | None] = []
        self._by_message: dict[str, dict[str, Any] | None] = {}  # message id → who said it

    def on_event(self, data: dict[str, Any]) -> None:
        """One journaled ``speaker_event`` (in the order the daemon published them)."""
        user = data.get("user") if isinstance(data.get("user"), dict) else None
        if user is None or data.get("type") not in (*SPEAKING, "stopped_speaking"):
            return
        offset = float(data.get("timeOffset") or 0.0)
        symbl_user = shapes.user_of(user, self.connection_id)
        if data["type"] == "stopped_speaking":
            if self.who(offset) != symbl_user:
                return  # someone else stopped: the current speaker goes on
            symbl_user = self.own
        at = bisect.bisect_right(self._offsets, offset)
        self._offsets.insert(at, offset)
        self._users.insert(at, symbl_user)

    @property
    def changed(self) -> bool:
        return bool(self._offsets)

    def who(self, offset: float | None) -> dict[str, Any] | None:
        at = bisect.bisect_right(self._offsets, float(offset or 0.0))
        return self._users[at - 1] if at else self.own

    def apply(self, etype: str, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` of one result event with its speaker as the events say (a copy when changed)."""
        if etype == "message_response":
            out = []
            for m in data.get("messages") or []:
                user = self.who(_middle(m))
                if m.get("id"):
                    self._by_message[m["id"]] = user
                out.append(_with(m, "from", user) if self.changed else m)
            return {**data, "messages": out} if self.changed else data
        if not self.changed:
            return data
        if etype == "transcript_response":
            return _with(data, "user", self.who(_middle(data)))
        if etype == "insight_response":
            return {**data, "insights": [self._insight(i) for i in data.get("insights") or []]}
        return data

    def _insight(self, insight: dict[str, Any]) -> dict[str, Any]:
        ref = (insight.get("messageReference") or {}).get("id")
        if ref not in self._by_message:
            return insight
        user = self._by_message[ref]
        old = insight.get("from")
        out = _with(insight, "from", user)
        if isinstance(old, dict) and insight.get("assignee") == old:  # "I will ...": the speaker's task
            out = _with(out, "assignee", user)
        return out


def _middle(result: dict[str, Any]) -> float:
    d = result.get("duration") or {}
    return float(d.get("timeOffset") or 0.0) + float(d.get("duration") or 0.0) / 2


def _with(obj: dict[str, Any], key: str, user: dict[str, Any] | None) -> dict[str, Any]:
    out = {k: v for k, v in obj.items() if k != key}
    if user is not None:
        out[key] = dict(user)
    return out


def conversation_events(histories: Iterable[Iterable[dict[str, Any]]]) -> list[dict[str, Any]]:
    """A conversation's events: each connection's history (a speaker socket each) with its speaker
    events applied, merged in time order. What the Conversation API and the summary page read."""
    return list(heapq.merge(*(attribute_history(h) for h in histories), key=lambda e: str(e.get("time") or "")))


def revise(etype: str, data: dict[str, Any], revised: Revised) -> dict[str, Any]:
    """One result event with revised speaker labels (a copy when one changed): a message moved by a late
    print takes its new label (and an insight on it, when its ``from`` and ``assignee`` were the message's),
    or is replaced by the parts it was split into; then every label merged or named since is replaced."""
    to, moved = revised.labels, revised.moved

    def fix(obj: dict[str, Any], *keys: str) -> dict[str, Any]:
        changed = {k: dict(to[obj[k]["id"]]) for k in keys
                   if isinstance(obj.get(k), dict) and obj[k].get("id") in to}
        return {**obj, **changed} if changed else obj

    def late(obj: dict[str, Any], mid: Any, *keys: str) -> dict[str, Any]:
        if mid not in moved:
            return obj
        old = obj.get(keys[0])  # an insight's assignee follows its from when it was the speaker ("I will ...")
        return {**obj, **{k: dict(moved[mid]) for k in keys if k == keys[0] or (old and obj.get(k) == old)}}

    if etype == "message_response":
        messages = [p for m in data.get("messages") or [] for p in revised.parts.get(str(m.get("id")), [m])]
        return {**data, "messages": [fix(late(m, m.get("id"), "from"), "from") for m in messages]}
    if etype == "transcript_response":
        return fix(data, "user")
    if etype == "insight_response":
        return {**data, "insights": [fix(late(i, (i.get("messageReference") or {}).get("id"), "from", "assignee"),
                                         "from", "assignee") for i in data.get("insights") or []]}
    return data


def attribute_history(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """A connection's journaled events with the speaker events and speaker revisions applied."""
    events = list(events)
    revised = revisions(events)
    if revised.labels or revised.moved:
        events = [{**e, "data": revise(e.get("type", ""), e["data"], revised)} if isinstance(e.get("data"), dict)
                  else e for e in events]
    out: list[dict[str, Any]] = []
    attribution: Attribution | None = None
    for e in events:
        data: dict[str, Any] = e["data"] if isinstance(e.get("data"), dict) else {}
        etype = e.get("type", "")
        if etype == "connection_started":
            cid = str(e.get("connectionId") or data.get("connectionId") or "")
            attribution = Attribution(cid, shapes.user_of(data.get("speaker"), cid))
        elif attribution is not None and etype == EVENT:
            attribution.on_event(data)
        elif attribution is not None and etype in ("message_response", "transcript_response", "insight_response"):
            e = {**e, "data": attribution.apply(etype, data)}
        out.append(e)
    return out
