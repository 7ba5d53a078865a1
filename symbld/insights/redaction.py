"""Redaction: personal data masked in every text a connection publishes or stores.

Asked for with ``redaction`` in the start request (``true``, or a list of kinds) or the
``redaction`` config key. ``redact_text`` masks, in this order: e-mail addresses, payment card
numbers (13-19 digits that pass the Luhn check), phone numbers (7-15 digits in the usual
groupings) and number sequences spoken as words ("four one five five five five ..."), which a
recogniser writes out instead of digits. ``redact_event`` walks an event's data and masks every
string in it, so messages, interims, insights, topics and the journal all carry the masked text.
"""

from __future__ import annotations

import json
import re
from typing import Any, get_args

from symblctl.protocol import RedactionKind, RedactionOptions

KINDS: tuple[str, ...] = get_args(RedactionKind)  # declared once, in symblctl.protocol
MASK = {"email": "[EMAIL]", "card": "[CARD]", "phone": "[PHONE]", "spoken_digits": "[NUMBER]"}

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Spoken forms of an e-mail address as a recogniser writes them: "john at example dot com",
# "john.smith at example.com".
# "John at example .com" (a space before the dot) too, but only before a known top-level domain,
# so "look at this. Then" stays.
_TLD = r"(?:com|org|net|io|edu|gov|co|uk|de|fr|info|biz|us|eu)"
_SPOKEN_EMAIL = re.compile(rf"\b[\w.+-]+ at [\w-]+(?:(?:\s?\.\s?| dot )[\w-]+)*(?:\s?\.\s?| dot ){_TLD}\b",
                           re.IGNORECASE)
# Digits with the separators people and recognisers put between them ("415 555 0134", "5, 5, 0, 1").
_DIGIT_RUN = re.compile(r"(?<![\w(])[+(]?\d(?:[\d \-.,()]*\d)?(?![\w])")
_AMOUNT = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+")  # 1,500,000 and 3.25 are amounts, not phones
_DIGIT_WORDS = ("zero|oh|o|one|two|three|four|five|six|seven|eight|nine|double|triple")
_SPOKEN_RUN = re.compile(rf"\b(?:(?:{_DIGIT_WORDS})\b[\s,.-]*){{4,}}", re.IGNORECASE)
_DATE_OR_TIME = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}[.-]\d{1,2}[.-]\d{2,4}")
_SPOKEN_DIGIT_WORD = re.compile(rf"^(?:{_DIGIT_WORDS})[,.?!]*$|\d|@", re.IGNORECASE)
_MIN_SPOKEN_DIGITS = 4  # "one two three" is a count, not personal data


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def kinds_of(value: bool | list[str] | RedactionOptions | None) -> frozenset[str]:
    """The kinds a decoded ``redaction`` (``symblctl.protocol.Redaction``: its kinds already checked) asks for:
    ``true`` every kind, a list those, ``{enabled, kinds}`` its kinds (all when omitted), false/None none."""
    if isinstance(value, RedactionOptions):
        if not value.enabled:
            return frozenset()
        return frozenset(KINDS if value.kinds is None else value.kinds)
    if value is None or value is False:
        return frozenset()
    if value is True:
        return frozenset(KINDS)
    return frozenset(value)


# What makes a comma-grouped number an amount: a currency sign before it, or a unit after it.
_CURRENCY_BEFORE = re.compile(r"[$€£¥]\s*$")
_UNIT_AFTER = re.compile(r"^\s*(?:%|percent|dollars?|euros?|pounds?|yen|usd|eur|gbp|k\b|thousand|million|billion)",
                         re.IGNORECASE)


def _is_amount(match: re.Match[str]) -> bool:
    """1,500,000 dollars and $40,000 are amounts; a bare 4,111,111 may be a card or phone number the
    recogniser grouped with commas (tiny.en writes spoken digit runs that way): masked, when in doubt."""
    if not _AMOUNT.fullmatch(match.group(0).strip()):
        return False
    before, after = match.string[:match.start()], match.string[match.end():]
    if len(re.sub(r"\D", "", match.group(0))) < 7:  # too short for a phone or card number
        return True
    return bool(_CURRENCY_BEFORE.search(before) or _UNIT_AFTER.match(after))


def _mask_digits(match: re.Match[str], kinds: frozenset[str]) -> str:
    text = match.group(0)
    if _DATE_OR_TIME.fullmatch(text.strip()) or _is_amount(match):
        return text
    digits = re.sub(r"\D", "", text)
    if "card" in kinds and 13 <= len(digits) <= 19 and luhn_ok(digits):
        return MASK["card"]
    if "phone" in kinds and 7 <= len(digits) <= 15:
        return MASK["phone"]
    return text


def _mask_spoken(match: re.Match[str]) -> str:
    text = match.group(0)
    words = re.findall(rf"\b(?:{_DIGIT_WORDS})\b", text, re.IGNORECASE)
    if len(words) < _MIN_SPOKEN_DIGITS:
        return text
    trail = text[len(text.rstrip(" ,.-")):]  # keep the sentence's punctuation and spacing
    return MASK["spoken_digits"] + trail


def redact_text(text: str, kinds: frozenset[str]) -> str:
    if not kinds or not text:
        return text
    if "email" in kinds:
        text = _EMAIL.sub(MASK["email"], text)
        text = _SPOKEN_EMAIL.sub(MASK["email"], text)
    if kinds & {"card", "phone"}:
        text = _DIGIT_RUN.sub(lambda m: _mask_digits(m, kinds), text)
    if "spoken_digits" in kinds:
        text = _SPOKEN_RUN.sub(_mask_spoken, text)
    return text


def redact_event(data: Any, kinds: frozenset[str]) -> Any:
    """A copy of an event's data with every string masked (ids and times have no digits runs that
    look like phones: UUIDs and ISO times are kept by skipping those keys)."""
    if not kinds:
        return data
    if isinstance(data, str):
        return redact_text(data, kinds)
    if isinstance(data, list):
        return [redact_event(v, kinds) for v in data]
    if isinstance(data, dict):
        return {k: v if k in _UNTOUCHED else _redact_words(v) if k == "words" else redact_event(v, kinds)
                for k, v in data.items()}
    return data


def _redact_words(words: Any) -> Any:
    """``metadata.words`` (a JSON string of timed words): a number said one word at a time cannot be
    judged per word, so with redaction on every digit, digit word and address is masked."""
    if not isinstance(words, str):
        return words
    try:
        items = json.loads(words)
    except ValueError:
        return "[]"
    for w in items if isinstance(items, list) else []:
        if isinstance(w, dict) and isinstance(w.get("word"), str) and _SPOKEN_DIGIT_WORD.search(w["word"]):
            w["word"] = "[REDACTED]"
    return json.dumps(items, separators=(",", ":"))


# Machine fields, never personal text: masking them would break references and times.
_UNTOUCHED = frozenset({
    "id", "connectionId", "conversationId", "originalMessageId", "startTime", "endTime", "createdAt",
    "startedAt", "endedAt", "timeOffset", "duration", "userId", "type", "contentType", "channel",
    "source", "sequenceNumber", "events", "backlog", "error", "lastSeq", "insightTypes",
    # A link names the conversation id, 16 digits that pass Luhn one time in ten: masked as a card, the page
    # link of a redacted conversation was broken (403) that often.
    "summaryUrl", "url",
})
