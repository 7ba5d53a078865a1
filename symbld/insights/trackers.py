"""Trackers: validate a connection's definitions and match them against messages.

Symbl's tracker matches are "vocabulary" matches: the exact phrase at a character
``offset``, or a variant of it (inflection, a word in between, a near spelling) with
``offset: -1``. Matching works on an index from word stem to terms, so 500 trackers x 50
terms cost only the terms that share a word with the message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec
from rapidfuzz import fuzz

from symblctl import protocol
from symbld.insights.stems import stemmer_for
from symbld.insights.text import MAX_CHARS, wordset
from symbld.insights.topics import stopwords_for

_WORD = re.compile(r"[A-Za-z0-9]+(?:['\u2019][A-Za-z]+)?")
_ANY_WORD = re.compile(r"[^\W_]+")  # another language's words, in any script
_FILLER = wordset("a an the of to and or for in on at by with is are be")
FUZZY_RATIO = 85  # rapidfuzz ratio (0-100) for one near-spelled word in a multi-word term
MAX_GAP = 2  # words allowed between a variant's words ("price increase" ~ "price of the increase")


class TrackerError(ValueError):
    """A tracker definition Symbl would refuse; ``message`` says which one and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def validate_trackers(trackers: object) -> list[dict[str, Any]]:
    """Check and normalise ``[{"name": str, "vocabulary": [str, ...]}, ...]`` against the declaration
    (``symblctl.protocol.Tracker``: Symbl's limits, no blank names, terms with a letter or digit).

    ``None`` means no trackers. Returns new dicts with names and terms stripped (an ``id`` string is kept).
    Raises TrackerError naming the first bad entry by its path (``$[0].vocabulary[1]``).
    """
    if trackers is None:
        return []
    try:
        declared = msgspec.convert(trackers, protocol.Trackers, strict=True)
    except msgspec.ValidationError as e:
        raise TrackerError(str(e)) from None
    return normalise_trackers(declared)


def normalise_trackers(declared: list[protocol.Tracker]) -> list[dict[str, Any]]:
    """Decoded trackers as the matcher takes them: names and terms stripped, an ``id`` kept."""
    out = []
    for tracker in declared:
        entry = {"name": tracker.name.strip(), "vocabulary": [" ".join(term.split()) for term in tracker.vocabulary]}
        if tracker.id is not None:
            entry["id"] = tracker.id
        out.append(entry)
    return out


@dataclass(frozen=True)
class _Term:
    tracker: int
    value: str
    pattern: str  # compiled on first use: 25,000 terms compiled up front took seconds at start
    stems: tuple[str, ...]
    key_stems: frozenset[str]  # without filler words: what a variant must contain


@dataclass(frozen=True)
class Match:
    tracker: int  # index into the validated tracker list
    value: str  # the vocabulary term
    offset: int  # character offset of an exact match, -1 for a variant


class TrackerMatcher:
    def __init__(self, trackers: list[dict[str, Any]], language: str = "en") -> None:
        """``language``: the Whisper code of the text matched (its words and stems)."""
        self.trackers = trackers
        self.language = language
        self._word = _WORD if language == "en" else _ANY_WORD
        stem = self._stem = stemmer_for(language)
        filler = _FILLER if language == "en" else (stopwords_for(language) or frozenset())
        self._terms: list[_Term] = []
        self._compiled: dict[int, re.Pattern[str]] = {}
        self._by_stem: dict[str, list[int]] = {}
        for t_index, tracker in enumerate(trackers):
            for value in tracker["vocabulary"]:
                words = self._word.findall(value)
                pattern = r"\s+".join(re.escape(w) for w in value.split())
                stems = tuple(stem(w) for w in words)
                keys = frozenset(s for s, w in zip(stems, words, strict=True) if w.lower() not in filler) or frozenset(
                    stems
                )
                term = _Term(t_index, value, rf"(?<!\w){pattern}(?!\w)", stems, keys)
                index = len(self._terms)
                self._terms.append(term)
                for s in keys:
                    self._by_stem.setdefault(s, []).append(index)

    def __bool__(self) -> bool:
        return bool(self._terms)

    def match(self, text: str) -> list[Match]:
        """Every term found in text: exact (with offset) or as a variant (offset -1)."""
        if not self._terms or not text:
            return []
        text = text[:MAX_CHARS]
        words = self._word.findall(text)
        stems = [self._stem(w) for w in words]
        present = set(stems)
        candidates: set[int] = set()
        for s in present:
            candidates.update(self._by_stem.get(s, ()))
        # A near spelling of one word ("colour"/"color") can only be caught by comparing
        # against the words present; do it for multi-word terms with that word missing.
        out = []
        for index in sorted(candidates):
            term = self._terms[index]
            exact = self._compiled.get(index)
            if exact is None:
                exact = self._compiled[index] = re.compile(term.pattern, re.IGNORECASE)
            m = exact.search(text)
            if m:
                out.append(Match(term.tracker, term.value, m.start()))
            elif self._variant(term, stems, present):
                out.append(Match(term.tracker, term.value, -1))
        return out

    @staticmethod
    def _variant(term: _Term, stems: list[str], present: set[str]) -> bool:
        missing = [s for s in term.key_stems if s not in present]
        if len(missing) > 1 or (missing and len(term.key_stems) < 2):
            return False
        if missing:
            # one word may be a near spelling of a word in the message
            best = max((fuzz.ratio(missing[0], s) for s in present if abs(len(s) - len(missing[0])) <= 2),
                       default=0)
            return best >= FUZZY_RATIO
        if len(term.key_stems) == 1:
            return True
        # all key words present: they must sit close together, in any order
        positions = [i for i, s in enumerate(stems) if s in term.key_stems]
        need = len(term.key_stems)
        for a in range(len(positions)):
            seen: set[str] = set()
            for b in range(a, len(positions)):
                seen.add(stems[positions[b]])
                if positions[b] - positions[a] > need - 1 + MAX_GAP:
                    break
                if len(seen) == need:
                    return True
        return False
