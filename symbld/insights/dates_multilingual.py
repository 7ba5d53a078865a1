"""Dates said in Spanish, French, German, Italian and Portuguese, found with ``dateparser``.

"el lunes", "mañana", "demain", "am Montag", "nächste Woche", "sexta-feira", "15 de enero": the
English rules (``dates``) know none of these, and a well-kept library knows them all, so this is
``dateparser.search.search_dates`` with the conversation's day as its base and dates preferred in the
future. Resolved as people mean them, like the English rules: a bare weekday said on that very day
("el lunes", on a Monday) is the next one (dateparser's ``PREFER_DATES_FROM = future`` does exactly
that); "mañana" is the next day.

dateparser is in the ``[base]`` extra: text in these languages only exists when the multilingual
model (the same extra) decoded it. Its search also reads a few non-dates as dates, filtered here:
French "je" (an abbreviation of jeudi) and other tokens of three letters or fewer that are not a date
word on their own; and "pasado mañana" (the day after tomorrow), which it reads as "mañana": dropped
rather than dated a day early.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

import structlog

from symbld.insights.dates import DateMention

log = structlog.get_logger(__name__)

LANGUAGES = frozenset({"es", "fr", "de", "it", "pt"})

# Date words of three letters or fewer: the only short matches kept.
_SHORT_DATE_WORDS = frozenset({"hoy"})
# A word just before a match that changes its meaning in a way dateparser's search does not read.
_SPOILERS = {"es": re.compile(r"\bpasado\s+$", re.IGNORECASE)}
_LETTERS = re.compile(r"[^\W\d_]+")

_search: Any = None
_missing_said = False


def _search_dates() -> Any:
    """dateparser's search, imported on first use (0.4 s; 1 ms a sentence afterwards)."""
    global _search
    if _search is None:
        from dateparser.search import search_dates  # the [base] extra

        _search = search_dates
    return _search


def _kept(found: str, before: str, language: str) -> bool:
    words = _LETTERS.findall(found.lower())
    if not any(ch.isdigit() for ch in found) and all(len(w) <= 3 and w not in _SHORT_DATE_WORDS for w in words):
        return False
    spoiler = _SPOILERS.get(language)
    return not (spoiler and spoiler.search(before))


def find_dates(text: str, today: date, language: str) -> list[DateMention]:
    """Date mentions in ``text`` (in ``language``, a Whisper code), left to right; [] for a language
    not in :data:`LANGUAGES` or when dateparser is not installed."""
    if language not in LANGUAGES or not text.strip():
        return []
    try:
        search = _search_dates()
    except ImportError:
        global _missing_said
        if not _missing_said:  # an older [base] install: say once why tasks have no dueBy
            _missing_said = True
            log.warning("dates in es/fr/de/it/pt need dateparser: pip install 'symbld[base]'")
        return []
    base = datetime(today.year, today.month, today.day)
    settings = {"RELATIVE_BASE": base, "PREFER_DATES_FROM": "future", "RETURN_AS_TIMEZONE_AWARE": False}
    found = search(text, languages=[language], settings=settings) or []
    out: list[DateMention] = []
    cursor = 0
    for phrase, when in found:
        begin = text.find(phrase, cursor)
        if begin < 0:
            continue
        cursor = begin + len(phrase)
        if not _kept(phrase, text[:begin], language):
            continue
        day = when.date()
        out.append(DateMention(phrase, begin, day, day >= today))
    return out
