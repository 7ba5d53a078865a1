"""An extractive summary of a conversation in Symbl's shape: a handful of its own sentences, each
with a reference to the message it came from.

Sentences are scored by the weight of their content words (word frequency in the conversation,
stop words and fillers out), with a bonus for sentences that carry a decision or request cue; the
best are given back in the order they were said. No model, nothing downloaded.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from symbld.insights.stems import stem

_WORD = re.compile(r"[a-z][a-z']+")
_STOP_WORDS = """a an the and or but if so of to in on at by for with from as is are was were be been being
this that these those it its i you he she we they me him her us them my your our their what which who whom
do does did doing have has had having will would can could should shall may might must not no yes just
um uh like okay ok yeah well really very also then there here about into over than too all any some
let's lets i'm you're we're it's that's don't can't"""
_STOP = frozenset(_STOP_WORDS.split())
_CUES = re.compile(r"\b(decid|agree|will|need|must|plan|deadline|budget|next|schedule|send|review|launch)",
                   re.IGNORECASE)
MAX_SENTENCES = 5


def _content_words(text: str) -> list[str]:
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP]


class Summariser:
    def __init__(self) -> None:
        self._messages: list[tuple[str, str]] = []  # (message id, text), in order

    def add(self, message_id: str | None, text: str) -> None:
        if message_id and text.strip():
            self._messages.append((message_id, text.strip()))

    def __len__(self) -> int:
        return len(self._messages)

    def summary(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Symbl's ``summary`` entries: ``[{"id", "text", "messageRefs": [{"id"}]}]``."""
        if not self._messages:
            return []
        freq = Counter(w for _, t in self._messages for w in _content_words(t))
        top = max(freq.values(), default=1)
        scored = []
        for index, (mid, text) in enumerate(self._messages):
            words = _content_words(text)
            if len(words) < 2:
                continue  # "Thanks." and "Okay, sure." summarise nothing
            weight = sum(freq[w] / top for w in words) / math.sqrt(len(words))
            weight *= 1.3 if _CUES.search(text) else 1.0
            scored.append((weight, index, mid, text))
        n = limit or max(1, min(MAX_SENTENCES, round(len(self._messages) / 4)))
        best = sorted(sorted(scored, reverse=True)[:n], key=lambda s: s[1])
        return [{"id": f"summary-{i}", "text": text, "messageRefs": [{"id": mid}]}
                for i, (_, _, mid, text) in enumerate(best)]


def summary_of_events(events: Any, limit: int | None = None) -> list[dict[str, Any]]:
    """The summary of a connection's events so far (its ``message_response`` texts, in order)."""
    summariser = Summariser()
    for event in events:
        if event.get("type") == "message_response":
            for m in (event.get("data") or {}).get("messages", []):
                payload = m.get("payload") if isinstance(m, dict) else None
                if isinstance(payload, dict) and isinstance(payload.get("content"), str):
                    summariser.add(m.get("id"), payload["content"])
    return summariser.summary(limit)
