"""Sentiment per message and per topic, offline, in Symbl's shape.

VADER (vaderSentiment, lexicon inside the wheel) scores a text's compound polarity in -1..1;
Symbl's shape is ``{"polarity": {"score": s}, "suggested": "positive"|"neutral"|"negative"}``.
The thresholds are VADER's own recommended cut-offs (±0.05).
"""

from __future__ import annotations

import functools
from typing import Any

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from symbld.languages import SENTIMENT_LANGUAGES, message_language

POSITIVE_AT = 0.05
NEGATIVE_AT = -0.05


@functools.cache
def _analyzer() -> SentimentIntensityAnalyzer:
    # Loading the lexicon takes ~0.1 s: once per daemon, not per message.
    return SentimentIntensityAnalyzer()


def suggested(score: float) -> str:
    if score >= POSITIVE_AT:
        return "positive"
    if score <= NEGATIVE_AT:
        return "negative"
    return "neutral"


def sentiment_of(text: str) -> dict[str, Any]:
    """Symbl's ``sentiment`` object for one text."""
    score = round(float(_analyzer().polarity_scores(text or "")["compound"]), 3)
    return {"polarity": {"score": score}, "suggested": suggested(score)}


def sentiment_of_many(texts: list[str]) -> dict[str, Any]:
    """A topic's sentiment: the mean polarity of the messages it came from."""
    scores = [sentiment_of(t)["polarity"]["score"] for t in texts if t]
    score = round(sum(scores) / len(scores), 3) if scores else 0.0
    return {"polarity": {"score": score}, "suggested": suggested(score)}


def add_to_messages(data: dict[str, Any]) -> None:
    """Put ``sentiment`` on every English message of a ``message_response`` (in place): VADER's
    lexicon is English, and on other languages it gives noise, so those messages get none."""
    for message in data.get("messages") or []:
        if isinstance(message, dict) and message_language(message) in SENTIMENT_LANGUAGES:
            payload = message.get("payload")
            text = payload.get("content") if isinstance(payload, dict) else None
            if isinstance(text, str):
                message["sentiment"] = sentiment_of(text)


def ensure_on_api_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Conversation API ``GET .../messages?sentiment=true``: every message (``text``) gets a sentiment,
    the one journaled at the time when the connection asked for it, else computed now."""
    for message in messages:
        if "sentiment" not in message and isinstance(message.get("text"), str):
            message["sentiment"] = sentiment_of(message["text"])
    return messages
