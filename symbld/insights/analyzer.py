"""Per-connection analytics worker: insights, topics and trackers off the audio path.

The session hands finished messages (and, for interim trackers, live transcripts) to
``on_messages`` / ``on_transcript``, which only enqueue. One worker thread per connection
analyses them in order and calls ``emit(event_type, data)`` with Symbl-shaped payloads::

    a = Analyzer(config, emit)
    a.on_messages(message_response["messages"])
    a.on_transcript(transcript_response)      # used only when config.tracker_interim_results
    a.flush(timeout=5.0)                      # on stop: everything queued is emitted
    a.close()
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from symbld import languages
from symbld.engines.base import StreamConfig
from symbld.insights.dates import zone
from symbld.insights.entities import Entity, entity_payload, find_entities
from symbld.insights.insight import INSIGHT_TYPES, Context, insights_for_message, message_day
from symbld.insights.summary import Summariser
from symbld.insights.topics import TopicModel
from symbld.insights.trackers import Match, TrackerMatcher, validate_trackers

log = structlog.get_logger(__name__)

MAX_QUEUE = 2000  # batches waiting; beyond this the newest are dropped (logged), audio never waits
MAX_MESSAGES_PER_BATCH = 200
_STOP = object()


def insight_types(requested: list[str] | None) -> frozenset[str]:
    """The types to emit. None or an empty list means all three (the issue's default; Symbl's
    cloud treated an empty list as "none", which surprised users). Unknown names (e.g.
    "topic") are ignored."""
    if not requested:
        return frozenset(INSIGHT_TYPES)
    return frozenset(t for t in requested if t in INSIGHT_TYPES)


class Analyzer:
    def __init__(self, config: StreamConfig, emit: Callable[[str, dict[str, Any]], None]) -> None:
        self.config = config
        self._emit = emit
        trackers = validate_trackers(config.trackers or None)  # raises TrackerError
        # The text's language: the one asked for (English when translated); in auto the first
        # message's, and the tracker words and topics follow it when it changes.
        self._language = languages.text_language(config.language_code, config.translate)
        self._trackers = TrackerMatcher(trackers, self._language)
        self._ctx = Context(
            conversation_id=config.conversation_id,
            types=insight_types(config.insight_types),
            threshold=float(config.confidence_threshold),
            tz=zone(config.timezone_offset_minutes),
            people={},
        )
        if config.speaker and config.speaker.get("name"):
            self._remember(dict(config.speaker))
        self._topic_models: dict[str, TopicModel] = {}
        self._topics = self._topic_model(self._language)
        self._last_topics: list[tuple[str, float]] = []
        self._seq = {"insight_response": 0, "topic_response": 0, "tracker_response": 0, "entity_response": 0}
        self._entities = bool(config.extra.get("detect_entities"))
        self.summariser = Summariser()
        self._seq["summary_response"] = 0
        self._interim_seen: dict[str, frozenset[tuple[int, str, int]]] = {}
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=MAX_QUEUE)
        self._pending = 0
        self._idle = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"insights-{config.connection_id}", daemon=True)
        self._thread.start()

    # ---- producer side (any thread; never blocks) ----
    def on_messages(self, messages: list[dict[str, Any]]) -> None:
        if not isinstance(messages, list) or not messages:
            return
        self._put(("messages", list(messages[:MAX_MESSAGES_PER_BATCH])))

    def on_transcript(self, data: dict[str, Any]) -> None:
        if self.config.tracker_interim_results and self._trackers and isinstance(data, dict):
            self._put(("transcript", data))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far was analysed and emitted, the summary last. False on timeout."""
        self._put(("summary", None))
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._idle.wait(left)
        return True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=1.0)
        self._thread.join(timeout=2.0)

    def _put(self, item: tuple[str, Any]) -> None:
        if self._closed:
            return
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            log.warning("insights_queue_full", connection_id=self.config.connection_id, dropped=item[0])
            self._done()

    def _done(self) -> None:
        with self._idle:
            self._pending -= 1
            if not self._pending:
                self._idle.notify_all()

    # ---- worker ----
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            kind, payload = item
            try:
                if kind == "messages":
                    self._analyse_messages(payload)
                elif kind == "summary":
                    self._send_summary()
                else:
                    self._analyse_transcript(payload)
            except Exception:
                # Analytics must never take the session down: log and go on with the next batch.
                log.exception("insights_failed", connection_id=self.config.connection_id, kind=kind)
            finally:
                self._done()

    def _send(self, event_type: str, data: dict[str, Any]) -> None:
        data["sequenceNumber"] = self._seq[event_type]
        self._seq[event_type] += 1
        self._emit(event_type, data)

    def _remember(self, person: dict[str, Any]) -> None:
        name = person.get("name")
        if isinstance(name, str) and name.strip():
            self._ctx.people.setdefault(name.split()[0].lower(), person)

    def _analyse_messages(self, messages: list[dict[str, Any]]) -> None:
        insights: list[dict[str, Any]] = []
        tracker_hits: list[tuple[Match, dict[str, Any], list[dict[str, Any]]]] = []
        entity_hits: list[tuple[Entity, dict[str, Any]]] = []
        for message in messages:
            if not isinstance(message, dict):
                continue
            payload = message.get("payload")
            content = payload.get("content") if isinstance(payload, dict) else message.get("text")
            if not isinstance(content, str) or not content.strip():
                continue
            if isinstance(message.get("from"), dict):
                self._remember(message["from"])
            self._follow_language(languages.message_language(message))
            day = message_day(message, self.config.started_at or time.time(), self._ctx.tz)
            found = insights_for_message(message, self._ctx, day)
            insights.extend(found)
            if self._entities:
                entity_hits.extend((e, message) for e in find_entities(content, day))
            self._topics.add(message.get("id"), content)
            self.summariser.add(message.get("id"), content)
            for match in self._trackers.match(content):
                ref = {"id": message.get("id"), "text": content, "offset": match.offset}
                tracker_hits.append((match, ref, self._insight_refs(match, found)))
        if insights:
            self._send("insight_response", {"type": "insight_response", "insights": insights})
        if tracker_hits:
            self._send("tracker_response", self._tracker_payload(tracker_hits, is_final=True))
        if entity_hits:
            self._send("entity_response", entity_payload(entity_hits))
        self._maybe_send_topics()

    def _topic_model(self, language: str) -> TopicModel:
        model = self._topic_models.get(language)
        if model is None:
            model = self._topic_models[language] = TopicModel(self.config.conversation_id, language)
        return model

    def _follow_language(self, language: str) -> None:
        """A message in another language than the last one (auto): its words, stems and stop words."""
        if language != self._language:
            self._language = language
            self._trackers = TrackerMatcher(self._trackers.trackers, language)
            self._topics = self._topic_model(language)

    def _analyse_transcript(self, data: dict[str, Any]) -> None:
        if data.get("isFinal"):
            return  # the finished message that follows gets the final tracker_response
        payload = data.get("payload")
        text = payload.get("content") if isinstance(payload, dict) else None
        punctuated = data.get("punctuated")
        if isinstance(punctuated, dict) and isinstance(punctuated.get("transcript"), str):
            text = punctuated["transcript"]
        if not isinstance(text, str) or not text.strip():
            return
        matches = self._trackers.match(text)
        key = str(data.get("id"))
        signature = frozenset((m.tracker, m.value, m.offset) for m in matches)
        if not matches or self._interim_seen.get(key) == signature:
            return  # the same matches as the last interim of this utterance: say nothing new
        self._interim_seen[key] = signature
        if len(self._interim_seen) > 64:
            self._interim_seen.pop(next(iter(self._interim_seen)))
        hits: list[tuple[Match, dict[str, Any], list[dict[str, Any]]]] = [
            (m, {"id": data.get("id"), "text": text, "offset": m.offset}, []) for m in matches]
        self._send("tracker_response", self._tracker_payload(hits, is_final=False))

    def _insight_refs(self, match: Match, insights: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The insights of the same message whose sentence holds the match (Symbl's insightRefs)."""
        refs = []
        for insight in insights:
            for m in self._trackers.match(insight["text"]):
                if (m.tracker, m.value) == (match.tracker, match.value):
                    refs.append({"id": insight["id"], "type": insight["type"], "text": insight["text"],
                                 "offset": m.offset})
                    break
        return refs

    def _tracker_payload(
        self, hits: list[tuple[Match, dict[str, Any], list[dict[str, Any]]]], is_final: bool
    ) -> dict[str, Any]:
        by_tracker: dict[int, dict[str, dict[str, Any]]] = {}
        for match, ref, insight_refs in hits:
            values = by_tracker.setdefault(match.tracker, {})
            entry = values.setdefault(
                match.value, {"type": "vocabulary", "value": match.value, "messageRefs": [], "insightRefs": []}
            )
            entry["messageRefs"].append(ref)
            entry["insightRefs"].extend(insight_refs)
        trackers = []
        for index, values in sorted(by_tracker.items()):
            definition = self._trackers.trackers[index]
            item: dict[str, Any] = {"name": definition["name"], "matches": list(values.values())}
            if "id" in definition:
                item["id"] = definition["id"]
            trackers.append(item)
        return {"type": "tracker_response", "isFinal": is_final, "trackers": trackers}

    def _send_summary(self) -> None:
        """At the end: the conversation's summary (Symbl's ``summary`` entries) as ``summary_response``."""
        if len(self.summariser):
            self._send("summary_response", {"type": "summary_response", "summary": self.summariser.summary()})

    def _maybe_send_topics(self) -> None:
        topics = self._topics.top()
        signature = [(t["phrases"], t["score"]) for t in topics]
        if topics and signature != self._last_topics:
            self._last_topics = signature
            self._send("topic_response", {"type": "topic_response", "topics": topics})
