"""Entities in a message, offline, for ``entity_response`` (asked with ``detectEntities``).

Dates (resolved by ``symbld.insights.dates``), times, amounts with their currency, phone numbers and
e-mail addresses, found with patterns. People, organisations and places need a statistical model;
none is used (see docs/insights.md). With redaction on, the text seen here is already masked, so a
masked phone or address is never an entity value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from symbld.insights.dates import find_dates


@dataclass(frozen=True)
class Entity:
    type: str
    sub_type: str
    value: str  # the normalised value (ISO date, "15:30", "1500.00 USD", digits)
    text: str  # as said
    offset: int


_CURRENCY_WORDS = {"dollar": "USD", "buck": "USD", "euro": "EUR", "pound": "GBP", "yen": "JPY",
                   "rupee": "INR", "franc": "CHF"}
_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "₹": "INR"}
# The recogniser may write "$20 ,000" and "3 p .m.": a space before the punctuation is allowed.
_NUMBER = r"\d{1,3}(?:\s?,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_SCALE = r"(?:\s?(thousand|million|billion|k|m|bn)\b)?"
_MONEY_SYMBOL = re.compile(rf"([$€£¥₹])\s?({_NUMBER}){_SCALE}", re.IGNORECASE)
_MONEY_WORD = re.compile(rf"\b({_NUMBER}){_SCALE}\s?(dollar|buck|euro|pound|yen|rupee|franc)s?\b", re.IGNORECASE)
_SCALES = {"thousand": 1e3, "k": 1e3, "million": 1e6, "m": 1e6, "billion": 1e9, "bn": 1e9}
_TIME = re.compile(r"\b(\d{1,2})(?::(\d{2}))?\s?(a\s?\.m\.|p\s?\.m\.|am|pm)(?!\w)"
                   r"|\b(\d{1,2}):(\d{2})\b|\b(noon|midnight)\b", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"(?<![\w(])[+(]?\d(?:[\d \-.()]*\d)?(?![\w])")


def _amount(number: str, scale: str | None) -> float:
    return float(re.sub(r"[\s,]", "", number)) * _SCALES.get((scale or "").lower(), 1)


def _times(text: str) -> list[Entity]:
    out = []
    for m in _TIME.finditer(text):
        if m.group(6):
            value = "12:00" if m.group(6).lower() == "noon" else "00:00"
        elif m.group(3):
            hour, minute = int(m.group(1)), int(m.group(2) or 0)
            pm = m.group(3).lower().startswith("p")
            hour = (hour % 12) + (12 if pm else 0)
            value = f"{hour:02d}:{minute:02d}"
        else:
            hour, minute = int(m.group(4)), int(m.group(5))
            if hour > 23 or minute > 59:
                continue
            value = f"{hour:02d}:{minute:02d}"
        out.append(Entity("datetime", "time", value, m.group(0), m.start()))
    return out


def _money(text: str) -> list[Entity]:
    out = [Entity("money", _SYMBOLS[m.group(1)], f"{_amount(m.group(2), m.group(3)):.2f} {_SYMBOLS[m.group(1)]}",
                  m.group(0), m.start()) for m in _MONEY_SYMBOL.finditer(text)]
    for m in _MONEY_WORD.finditer(text):
        code = _CURRENCY_WORDS[m.group(3).lower()]
        out.append(Entity("money", code, f"{_amount(m.group(1), m.group(2)):.2f} {code}", m.group(0), m.start()))
    return out


def find_entities(text: str, today: date) -> list[Entity]:
    """Every entity in ``text``, by offset; a span claimed by an earlier kind is not reused."""
    found = [Entity("datetime", "date", d.day.isoformat(), d.text, d.begin) for d in find_dates(text, today)]
    found += _times(text) + _money(text)
    found += [Entity("email", "email", m.group(0).lower(), m.group(0), m.start()) for m in _EMAIL.finditer(text)]
    for m in _PHONE.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if 7 <= len(digits) <= 15 and not re.fullmatch(_NUMBER, m.group(0)) and "," not in m.group(0):
            found.append(Entity("phone", "phone", digits, m.group(0), m.start()))
    found.sort(key=lambda e: (e.offset, -len(e.text)))
    out: list[Entity] = []
    end = -1
    for e in found:
        if e.offset >= end:
            out.append(e)
            end = e.offset + len(e.text)
    return out


def entity_payload(hits: list[tuple[Entity, dict[str, Any]]]) -> dict[str, Any]:
    """``entity_response`` data (the spec's §2.4.9 shape): one entry per type/subType, matches per value."""
    by_kind: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for entity, message in hits:
        values = by_kind.setdefault((entity.type, entity.sub_type), {})
        match = values.setdefault(entity.value, {"detectedValue": entity.value, "messageRefs": []})
        match["messageRefs"].append({"id": message.get("id"), "text": entity.text, "offset": entity.offset,
                                     "startIndex": entity.offset, "endIndex": entity.offset + len(entity.text)})
    return {"type": "entity_response", "entities": [
        {"type": t, "subType": st, "category": "Generic", "matches": list(values.values())}
        for (t, st), values in by_kind.items()]}
