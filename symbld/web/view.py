"""What the summary page shows, taken from a conversation's events (memory, else the journal): one
connection's, or several merged when each speaker had their own (``core.speakers.conversation_events``).

Pure data: no HTML here (``render`` writes it). Events are already redacted when the connection
asked for redaction (the session masks them before they are journaled), so the page never sees raw
personal data either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from symbld.insights.sentiment import suggested
from symbld.insights.summary import summary_of_events
from symbld.insights.talk_time import Talk, speaker_key, talk_times

_ENDED = ("connection_stopped", "connection_failed", "conversation_completed")


@dataclass
class Line:
    """One finished message of the transcript."""

    id: str
    offset: float | None  # seconds from the start of the conversation
    speaker: str
    text: str
    sentiment: str | None = None  # positive | neutral | negative, when the connection asked for it
    score: float | None = None
    speaker_key: str = ""  # from.id (else the name): what the speaker's colour is tied to
    language: str | None = None  # BCP-47 (metadata.language, or translatedTo): the page's lang= for it


@dataclass
class Item:
    """A question, action item or follow-up."""

    kind: str
    text: str
    speaker: str = ""
    assignee: str = ""
    due: str = ""  # ISO date
    offset: float | None = None


@dataclass
class Topic:
    phrase: str
    score: float
    mentions: int
    sentiment: str | None = None


@dataclass
class Tracker:
    name: str
    values: dict[str, int] = field(default_factory=dict)  # matched term -> times
    texts: list[str] = field(default_factory=list)


@dataclass
class Page:
    connection_id: str
    conversation_id: str
    title: str
    state: str = "live"
    started_at: str = ""
    ended: bool = False
    seq: int = 0  # grows with every event of any of its connections (the page's version)
    connections: int = 1
    audio_seconds: float = 0.0
    speakers: list[str] = field(default_factory=list)
    talk: list[Talk] = field(default_factory=list)  # talk time per speaker, in order of first words
    lines: list[Line] = field(default_factory=list)
    interim: str = ""
    interim_speaker: str = ""
    interim_key: str = ""
    items: list[Item] = field(default_factory=list)
    topics: list[Topic] = field(default_factory=list)
    trackers: list[Tracker] = field(default_factory=list)
    entities: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, value, said as)
    summary: list[str] = field(default_factory=list)
    summary_final: bool = False
    sentiment: tuple[str, float] | None = None  # the conversation's mean (suggested, score)

    def of_kind(self, kind: str) -> list[Item]:
        return [i for i in self.items if i.kind == kind]


def _name(who: Any) -> str:
    if not isinstance(who, dict):
        return ""
    return str(who.get("name") or who.get("userId") or "")


def _offset(obj: dict[str, Any]) -> float | None:
    value = (obj.get("duration") or {}).get("timeOffset")
    return float(value) if isinstance(value, int | float) else None


class _Builder:
    def __init__(self, page: Page) -> None:
        self.page = page
        self.offsets: dict[str, float | None] = {}
        self.topics: dict[str, Topic] = {}
        self.trackers: dict[str, Tracker] = {}
        self.entities: dict[tuple[str, str, str], None] = {}
        self.summary: list[dict[str, Any]] | None = None
        self.seqs: dict[str, int] = {}  # connectionId -> its last seq
        self.completed = 0  # connections whose conversation_completed came
        self.states: dict[str, str] = {}  # connectionId -> its last state
        self.messages: list[dict[str, Any]] = []

    def add(self, event: dict[str, Any]) -> None:
        etype, data = event.get("type", ""), event.get("data") or {}
        cid = str(event.get("connectionId") or "")
        self.seqs[cid] = max(self.seqs.get(cid, 0), int(event.get("seq") or 0))
        handler = getattr(self, "_" + etype, None)
        if handler is not None:
            handler(data)
        if etype == "conversation_completed":
            self.completed += 1
        elif etype in _ENDED:
            self._connection_started(data)
        if etype in ("connection_started", *_ENDED) and data.get("state"):
            self.states[cid] = str(data["state"])

    def _connection_started(self, data: dict[str, Any]) -> None:
        p = self.page
        p.state = str(data.get("state") or p.state)
        p.started_at = str(data.get("startedAt") or data.get("createdAt") or p.started_at)
        p.audio_seconds = float(data.get("audioSeconds") or p.audio_seconds)
        if data.get("meetingTitle"):
            p.title = str(data["meetingTitle"])

    def _transcript_response(self, data: dict[str, Any]) -> None:
        punctuated = data.get("punctuated") or {}
        text = punctuated.get("transcript") or (data.get("payload") or {}).get("content") or ""
        self.page.interim = "" if data.get("isFinal") else str(text)
        self.page.interim_key, self.page.interim_speaker = speaker_key(data.get("user"))

    def _message_response(self, data: dict[str, Any]) -> None:
        for m in data.get("messages") or []:
            if not isinstance(m, dict):
                continue
            text = (m.get("payload") or {}).get("content")
            if not isinstance(text, str) or not text.strip():
                continue
            found = m.get("sentiment")
            sentiment: dict[str, Any] = found if isinstance(found, dict) else {}
            key, _ = speaker_key(m.get("from"))
            found_meta = m.get("metadata")
            meta: dict[str, Any] = found_meta if isinstance(found_meta, dict) else {}
            language = meta.get("translatedTo") or meta.get("language")
            line = Line(id=str(m.get("id")), offset=_offset(m), speaker=_name(m.get("from")), text=text,
                        sentiment=sentiment.get("suggested"), score=(sentiment.get("polarity") or {}).get("score"),
                        language=language if isinstance(language, str) else None, speaker_key=key)
            self.messages.append(m)
            self.offsets[line.id] = line.offset
            self.page.lines.append(line)
            if line.speaker and line.speaker not in self.page.speakers:
                self.page.speakers.append(line.speaker)
        self.page.interim = ""

    def _insight_response(self, data: dict[str, Any]) -> None:
        for i in data.get("insights") or []:
            if not isinstance(i, dict) or not isinstance(i.get("text"), str):
                continue
            due = str((i.get("dueBy") or {}).get("value") or "")[:10]
            ref = str((i.get("messageReference") or {}).get("id"))
            self.page.items.append(Item(kind=str(i.get("type")), text=i["text"], speaker=_name(i.get("from")),
                                        assignee=_name(i.get("assignee")), due=due, offset=self.offsets.get(ref)))

    def _topic_response(self, data: dict[str, Any]) -> None:
        # Each topic_response carries the conversation's current top topics: the latest one wins.
        for t in data.get("topics") or []:
            if not isinstance(t, dict) or not t.get("phrases"):
                continue
            found = t.get("sentiment")
            sentiment: dict[str, Any] = found if isinstance(found, dict) else {}
            self.topics[str(t.get("id") or t["phrases"])] = Topic(
                phrase=str(t["phrases"]), score=float(t.get("score") or 0.0),
                mentions=len(t.get("messageReferences") or []), sentiment=sentiment.get("suggested"))

    def _tracker_response(self, data: dict[str, Any]) -> None:
        if not data.get("isFinal", True):
            return  # interim tracker hits are confirmed by the final one of the same message
        for t in data.get("trackers") or []:
            tracker = self.trackers.setdefault(str(t.get("name")), Tracker(name=str(t.get("name"))))
            for match in t.get("matches") or []:
                value = str(match.get("value") or "")
                refs = match.get("messageRefs") or []
                tracker.values[value] = tracker.values.get(value, 0) + max(1, len(refs))
                tracker.texts.extend(str(r.get("text")) for r in refs if r.get("text") not in tracker.texts)

    def _entity_response(self, data: dict[str, Any]) -> None:
        for e in data.get("entities") or []:
            kind = str(e.get("subType") or e.get("type") or "")
            if e.get("type") in ("money",):
                kind = "money"
            for match in e.get("matches") or []:
                said = ", ".join(str(r.get("text")) for r in match.get("messageRefs") or [])
                self.entities[(kind, str(match.get("detectedValue") or ""), said)] = None

    def _summary_response(self, data: dict[str, Any]) -> None:
        self.summary = list(data.get("summary") or [])


def build(connection_id: str, conversation_id: str, events: list[dict[str, Any]], connections: int = 1) -> Page:
    """The page of ``events``: those of ``connections`` connections (``connection_id`` the first)."""
    page = Page(connection_id=connection_id, conversation_id=conversation_id,
                title=f"Conversation {conversation_id}", connections=connections)
    b = _Builder(page)
    for event in events:
        b.add(event)
    page.seq = sum(b.seqs.values())
    page.ended = b.completed >= connections
    if "live" in b.states.values():
        page.state = "live"  # one speaker still talking: the conversation is live
    page.topics = sorted(b.topics.values(), key=lambda t: -t.score)
    page.talk = talk_times(b.messages)
    page.trackers = list(b.trackers.values())
    page.entities = list(b.entities)
    # A connection's summary_response summarises that connection; several are summarised together.
    if connections == 1 and b.summary is not None:
        summary, page.summary_final = b.summary, True
    else:
        summary, page.summary_final = summary_of_events(events), page.ended and connections > 1
    page.summary = [str(s.get("text")) for s in summary if isinstance(s, dict) and s.get("text")]
    scores = [line.score for line in page.lines if isinstance(line.score, int | float)]
    if scores:
        mean = sum(scores) / len(scores)
        page.sentiment = (suggested(mean), round(mean, 3))
    return page
