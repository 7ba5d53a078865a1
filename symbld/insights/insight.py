"""Turn one finished message into Symbl-shaped insights (§2.4.6 of the protocol notes).

One insight per sentence and type: a request phrased as a question ("Can you send the
report by Friday?") gives a ``question`` and an ``action_item``. A follow-up is an action
item that implies later contact; it is emitted as ``follow_up`` when that type is wanted,
otherwise as ``action_item`` — never both, so one commitment is one insight.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Any

from symbld import languages
from symbld.insights import dates_multilingual
from symbld.insights.classify import Classification, classify
from symbld.insights.dates import DateMention, due_by, find_dates
from symbld.insights.multilingual import question_confidence, task
from symbld.insights.text import Sentence, english_ratio, split_sentences, wordset

INSIGHT_TYPES = ("question", "action_item", "follow_up")
_PERSON_NS = uuid.UUID("6f1c2a1e-93b5-4c1e-9a8e-2f1d7c0b5a10")
# Capitalised words after these are people in meetings ("check in with Priya", "ask Tom").
_PERSON_CUE = re.compile(r"\b(?:with|to|ask|tell|ping|cc|email|call|and|from|for|thank|thanks)\s+([A-Z][a-z]+)\b")
_NOT_NAMES = wordset("""I Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April
    May June July August September October November December The A An We You They He She It This That Let Please Okay OK
    Can Could Would Will Should Do Does Did Is Are What When Where Who Why How Which Yes No So And But Also
    Then Now Today Tomorrow Yesterday Thanks Thank Hi Hey Hello Team Everyone Dear Sir Madam Mr Mrs Ms Dr
    Legal Finance Marketing Sales Engineering Product Design Support Accounting""")


@dataclass
class Context:
    """What a message's insights need from the connection."""

    conversation_id: str
    types: frozenset[str]
    threshold: float
    tz: tzinfo
    people: dict[str, dict[str, Any]]  # lower-case first name -> a participant's ``from`` dict


def person_ref(ctx: Context, name: str) -> dict[str, Any]:
    """A participant's identity for a name said in the text: the known speaker of that name,
    else a stable made-up id (uuid5 of conversation and name)."""
    known = ctx.people.get(name.split()[0].lower())
    if known:
        return dict(known)
    return {"id": str(uuid.uuid5(_PERSON_NS, f"{ctx.conversation_id}:{name.lower()}")), "name": name}


def _people_in(sentence: Sentence, c: Classification) -> list[tuple[str, int]]:
    found: dict[str, int] = {}
    if c.subject_name:
        pos = sentence.text.lower().find(c.subject_name.lower())
        found[c.subject_name] = max(pos, 0)
    for m in _PERSON_CUE.finditer(sentence.text):
        name = m.group(1)
        if name not in _NOT_NAMES and name.lower() not in (n.lower() for n in found):
            found[name] = m.start(1)
    return sorted(found.items(), key=lambda item: item[1])


def _hints(sentence: Sentence, conf: float, kind: str, c: Classification) -> list[dict[str, str]]:
    words = sentence.words
    content = [w for w in words if len(w) > 3]
    hints = [
        # share of substantial words: "Okay, let's do it." informs less than a full request
        {"key": "informationScore", "value": f"{min(1.0, len(content) / 6):.3f}"},
        {"key": "confidenceScore", "value": f"{conf:.3f}"},
        # how English-like the words are: low for garbage or another language
        {"key": "comprehensionScore", "value": f"{min(1.0, english_ratio(words) * 3):.3f}"},
    ]
    if kind == "follow_up":
        addressed = {"self": "first_person_singular" if words[:1] in (["i"], ["i'll"], ["i'm"])
                     else "first_person_plural", "you": "second_person"}.get(c.subject_kind or "", "third_person")
        hints.append({"key": "addressedTo", "value": json.dumps([addressed])})
    return hints


def _tags(sentence: Sentence, ctx: Context, c: Classification, dates: list[DateMention],
          assignee_name: str | None) -> list[dict[str, Any]]:
    tags: list[dict[str, Any]] = []
    for name, offset in _people_in(sentence, c):
        value = person_ref(ctx, name)
        value["name"] = value.get("name") or name
        value["assignee"] = name == assignee_name
        tags.append({"type": "person", "text": name, "beginOffset": offset, "value": {"value": value}})
    for d in dates:
        tags.append({"type": "date", "text": d.text, "beginOffset": d.begin,
                     "value": {"value": {"datetime": d.day.isoformat()}}})
    tags.sort(key=lambda t: t["beginOffset"])
    return tags


def _assignee(ctx: Context, c: Classification, speaker: dict[str, Any]) -> dict[str, Any] | None:
    if c.subject_kind == "name" and c.subject_name:
        return person_ref(ctx, c.subject_name)
    if c.subject_kind == "self" and speaker:
        return dict(speaker)
    return None


def insights_for_message(message: dict[str, Any], ctx: Context, today: date) -> list[dict[str, Any]]:
    content = (message.get("payload") or {}).get("content") or message.get("text") or ""
    if not isinstance(content, str) or not content.strip():
        return []
    sender = message.get("from")
    speaker: dict[str, Any] = sender if isinstance(sender, dict) else {}
    message_id = message.get("id")
    language = languages.message_language(message)
    if language != "en":
        return _other_language_insights(content, language, ctx, message_id, speaker, today)
    out = []
    for sentence in split_sentences(content):
        c = classify(sentence)
        wanted: list[tuple[str, float]] = []
        if c.question >= ctx.threshold and "question" in ctx.types:
            wanted.append(("question", c.question))
        if c.follow_up >= ctx.threshold and "follow_up" in ctx.types:
            wanted.append(("follow_up", c.follow_up))
        elif c.action >= ctx.threshold and "action_item" in ctx.types:
            wanted.append(("action_item", c.action))
        if not wanted:
            continue
        dates = find_dates(sentence.text, today)
        for kind, conf in wanted:
            is_task = kind != "question"
            assignee = _assignee(ctx, c, speaker) if is_task else None
            insight: dict[str, Any] = {
                "id": str(uuid.uuid4()),
                "type": kind,
                "confidence": round(conf, 4),
                "messageReference": {"id": message_id},
                "hints": _hints(sentence, conf, kind, c),
            }
            if assignee:
                insight["assignee"] = assignee
            due = due_by(dates, ctx.tz) if is_task else None
            if due:
                insight["dueBy"] = due
            assignee_name = assignee.get("name") if assignee and c.subject_kind == "name" else None
            insight.update({
                "tags": _tags(sentence, ctx, c, dates, assignee_name),
                "dismissed": False,
                "payload": {"content": sentence.text, "contentType": "text/plain"},
                "text": sentence.text,
                "from": dict(speaker),
                "entities": None,
            })
            out.append(insight)
    return out


def _other_language_insights(content: str, language: str, ctx: Context, message_id: Any,
                             speaker: dict[str, Any], today: date) -> list[dict[str, Any]]:
    """Another language's insights: questions, and the commitments symbld.insights.multilingual
    reads (first-person future, requests, contact later), due on the dates dateparser finds."""
    out = []
    for sentence in split_sentences(content):
        wanted: list[tuple[str, float, str | None]] = []
        conf = question_confidence(sentence.text, language)
        if "question" in ctx.types and conf and conf >= ctx.threshold:
            wanted.append(("question", conf, None))
        commitment = task(sentence.text, language)
        if commitment and commitment.confidence >= ctx.threshold:
            # As in English: a follow-up is an action item when follow_up is not wanted, never both.
            kind = commitment.kind if commitment.kind in ctx.types else "action_item"
            if kind in ctx.types:
                wanted.append((kind, commitment.confidence, commitment.on))
        if not wanted:
            continue
        is_task = any(on is not None for _kind, _conf, on in wanted)
        dates = dates_multilingual.find_dates(sentence.text, today, language) if is_task else []
        for kind, confidence, on in wanted:
            out.append(_other_language_insight(sentence.text, kind, confidence, on, dates, ctx, message_id, speaker))
    return out


def _other_language_insight(text: str, kind: str, conf: float, on: str | None, dates: list[DateMention],
                            ctx: Context, message_id: Any, speaker: dict[str, Any]) -> dict[str, Any]:
    content_words = [w for w in text.split() if len(w) > 3]
    hints = [{"key": "informationScore", "value": f"{min(1.0, len(content_words) / 6):.3f}"},
             {"key": "confidenceScore", "value": f"{conf:.3f}"}]
    insight: dict[str, Any] = {"id": str(uuid.uuid4()), "type": kind, "confidence": round(conf, 4),
                               "messageReference": {"id": message_id}, "hints": hints}
    tags: list[dict[str, Any]] = []
    if on is not None:  # a task: the speaker's own is assigned to them; the dates make its dueBy
        if on == "self" and speaker:
            insight["assignee"] = dict(speaker)
        if kind == "follow_up":
            hints.append({"key": "addressedTo", "value": json.dumps(["second_person" if on == "you"
                                                                      else "first_person_singular"])})
        due = due_by(dates, ctx.tz)
        if due:
            insight["dueBy"] = due
        tags = [{"type": "date", "text": d.text, "beginOffset": d.begin,
                 "value": {"value": {"datetime": d.day.isoformat()}}} for d in dates]
    insight.update({"tags": tags, "dismissed": False, "payload": {"content": text, "contentType": "text/plain"},
                    "text": text, "from": dict(speaker), "entities": None})
    return insight


def message_day(message: dict[str, Any], fallback: float, tz: tzinfo) -> date:
    """The conversation's calendar day when the message was said: its start time if it
    carries one, else the connection's clock (``StreamConfig.started_at``)."""
    start = (message.get("duration") or {}).get("startTime") if isinstance(message.get("duration"), dict) else None
    if isinstance(start, str):
        try:
            return datetime.fromisoformat(start.replace("Z", "+00:00")).astimezone(tz).date()
        except ValueError:
            pass
    try:
        return datetime.fromtimestamp(fallback, tz).date()
    except (OverflowError, OSError, ValueError):
        return datetime.now(tz).date()  # a nonsense clock must not stop the analysis
