"""What a connection asked to be done to its events before they leave: sentiment added, personal data
masked; and the summary page's URL put in ``conversation_completed``. The session calls
``OutgoingFilter.apply`` on every event BEFORE the bus numbers, journals and publishes it, so raw
text that redaction masks is never on disk nor on the wire.

The start request's ``sentiment`` (bool) and ``redaction`` (see ``symbld.insights.redaction``) land in
``StreamConfig.extra``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from symbld.engines.base import StreamConfig
from symbld.insights.redaction import redact_event
from symbld.insights.sentiment import add_to_messages, suggested

_KEEP_SCORES = 5000  # message scores remembered for topic sentiment (a long conversation's worth)


class OutgoingFilter:
    def __init__(self, config: StreamConfig) -> None:
        self.sentiment = bool(config.extra.get("sentiment"))
        self.redaction: frozenset[str] = frozenset(config.extra.get("redaction") or ())
        self._scores: OrderedDict[str, float] = OrderedDict()
        # The conversation's summary page, while the daemon serves one (ConnectionService.summary_url).
        self.summary_url: str | None = config.extra.get("summary_url")

    @property
    def active(self) -> bool:
        return self.sentiment or bool(self.redaction) or self.summary_url is not None

    def apply(self, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
        if event_type == "conversation_completed" and self.summary_url is not None:
            data = {**data, "summaryUrl": self.summary_url}
        if self.sentiment:
            if event_type == "message_response":
                add_to_messages(data)
                self._remember(data)
            elif event_type == "topic_response":
                self._topic_sentiment(data)
        return redact_event(data, self.redaction) if self.redaction else data

    def _remember(self, data: dict[str, Any]) -> None:
        for m in data.get("messages") or []:
            if isinstance(m, dict) and isinstance(m.get("sentiment"), dict):
                self._scores[str(m.get("id"))] = m["sentiment"]["polarity"]["score"]
        while len(self._scores) > _KEEP_SCORES:
            self._scores.popitem(last=False)

    def _topic_sentiment(self, data: dict[str, Any]) -> None:
        """A topic's sentiment: the mean polarity of the messages it was found in (Symbl's topics carry one)."""
        for topic in data.get("topics") or []:
            refs = [self._scores[r["id"]] for r in topic.get("messageReferences") or []
                    if isinstance(r, dict) and r.get("id") in self._scores]
            score = round(sum(refs) / len(refs), 3) if refs else 0.0
            topic["sentiment"] = {"polarity": {"score": score}, "suggested": suggested(score)}
