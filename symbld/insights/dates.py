"""Date expressions in meeting speech, resolved against the conversation's clock.

"by Friday", "tomorrow", "next week", "end of the month", "March 3rd", "2026-12-01", "in two
weeks": each becomes a calendar date in the conversation's time zone. Hand-written because
the phrases meetings use are few, and ``dateparser`` (the library option) parses a whole
string, not "find the dates inside this sentence with their offsets".

Conventions (documented in docs/insights.md):
- a bare weekday ("Friday", "by Friday", "on Friday") is its next occurrence after today (said on a
  Friday, "on Friday" is the Friday a week later: people say "today" for today);
- "next Friday" is the Friday of next week (Monday-based weeks), "this Friday" the one of this week;
- "next week" is next Monday; "this week", "later this week", "end of the week" this Friday;
- "end of the month/quarter/year" is its last day; "next month" the first of next month;
- "today", "tonight", "this afternoon", "end of day", "EOD" are today.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december")
_MONTH_RE = (r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
             r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)")
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "couple of": 2,
            "few": 3}

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(rx, re.IGNORECASE))
    for name, rx in [
        ("iso", r"\b(\d{4})-(\d{2})-(\d{2})\b"),
        ("month_day", rf"\b{_MONTH_RE}\.? (\d{{1,2}})(?:st|nd|rd|th)?(?:,? (\d{{4}}))?\b"),
        ("day_month", rf"\b(?:the )?(\d{{1,2}})(?:st|nd|rd|th)? (?:of )?{_MONTH_RE}\b(?:,? (\d{{4}}))?"),
        ("day_after_tomorrow", r"\b(?:the )?day after tomorrow\b"),
        ("tomorrow", r"\btomorrow\b"),
        ("yesterday", r"\byesterday\b"),
        ("today", r"\b(?:today|tonight|this (?:morning|afternoon|evening)|end of (?:the )?day|eod|"
                  r"close of business|cob)\b"),
        ("weekday", r"\b(?:(next|this|last|coming) )?(monday|tuesday|wednesday|thursday|friday|saturday|sunday)s?\b"),
        ("end_of", r"\b(?:the )?end of (?:the |this |next )?(week|month|quarter|year)\b|\b(eow|eom)\b"),
        ("week", r"\b(?:(later|next|this|last) )(week(?:end)?)\b"),
        ("next_period", r"\b(next|last) (month|quarter|year)\b"),
        ("in_n", r"\bin (a|an|one|two|three|four|five|six|\d+|a couple of|a few) (day|week|month)s?\b"),
    ]
]


@dataclass(frozen=True)
class DateMention:
    text: str
    begin: int  # character offset in the text searched
    day: date
    future: bool  # today or later: a candidate for dueBy


def zone(timezone_offset_minutes: int | None) -> tzinfo:
    """The conversation's zone: Symbl's ``timezoneOffset`` (minutes east of UTC, as
    StreamConfig documents it) or, when the client gave none, this machine's local zone."""
    if timezone_offset_minutes is None:
        local = datetime.now().astimezone().tzinfo
        return local if local is not None else UTC
    return timezone(timedelta(minutes=int(timezone_offset_minutes)))


def _month_index(name: str) -> int:
    name = name.lower()[:3]
    return next(i + 1 for i, m in enumerate(MONTHS) if m.startswith(name))


def _end_of(today: date, unit: str) -> date:
    if unit in ("week", "eow"):
        return today + timedelta(days=(4 - today.weekday()) % 7)
    if unit in ("month", "eom"):
        return today.replace(day=calendar.monthrange(today.year, today.month)[1])
    if unit == "quarter":
        last_month = ((today.month - 1) // 3 + 1) * 3
        return date(today.year, last_month, calendar.monthrange(today.year, last_month)[1])
    return date(today.year, 12, 31)


def _add_months(d: date, months: int) -> date:
    m = d.month - 1 + months
    return date(d.year + m // 12, m % 12 + 1, 1)


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _iso(m: re.Match[str], today: date) -> date | None:
    g = m.groups()
    return _safe_date(int(g[0]), int(g[1]), int(g[2]))


def _month_and_day(m: re.Match[str], today: date, month_first: bool) -> date | None:
    g = m.groups()
    month_name, day_s = (g[0], g[1]) if month_first else (g[1], g[0])
    year_s = g[2]
    d = _safe_date(int(year_s) if year_s else today.year, _month_index(month_name), int(day_s))
    if d and not year_s and d < today - timedelta(days=60):
        d = _safe_date(today.year + 1, d.month, d.day)  # "January 5" said in December
    return d


def _weekday(m: re.Match[str], today: date) -> date | None:
    g = m.groups()
    which, name = (g[0] or "").lower(), g[1].lower()
    target = WEEKDAYS.index(name)
    monday = today - timedelta(days=today.weekday())
    if which == "next":
        return monday + timedelta(days=7 + target)
    if which == "this":
        return monday + timedelta(days=target)
    if which == "last":
        back = (today.weekday() - target) % 7 or 7
        return today - timedelta(days=back)
    # A bare weekday said on that very day ("I'll prepare the slides on Monday", on a Monday) is
    # the next one: people say "today" for today.
    return today + timedelta(days=(target - today.weekday()) % 7 or 7)


def _end_of_period(m: re.Match[str], today: date) -> date | None:
    g = m.groups()
    unit = (g[0] or g[1]).lower()
    base = today
    if "next" in m.group(0).lower():
        base = today + timedelta(days=7) if unit == "week" else _add_months(today, {"month": 1,
                                                                                 "quarter": 3}.get(unit, 12))
    return _end_of(base, unit)


def _week(m: re.Match[str], today: date) -> date | None:
    g = m.groups()
    which, unit = g[0].lower(), g[1].lower()
    monday = today - timedelta(days=today.weekday())
    if which == "next":
        return monday + timedelta(days=12 if unit == "weekend" else 7)
    if which == "last":
        return monday - timedelta(days=7)
    return monday + timedelta(days=5 if unit == "weekend" else 4)  # this/later this week → Friday


def _next_period(m: re.Match[str], today: date) -> date | None:
    g = m.groups()
    which, unit = g[0].lower(), g[1].lower()
    step = {"month": 1, "quarter": 3, "year": 12}[unit] * (1 if which == "next" else -1)
    if unit == "quarter":
        first_of_quarter = date(today.year, (today.month - 1) // 3 * 3 + 1, 1)
        return _add_months(first_of_quarter, step)
    if unit == "year":
        return date(today.year + (1 if which == "next" else -1), 1, 1)
    return _add_months(today, step)


def _in_n(m: re.Match[str], today: date) -> date | None:
    g = m.groups()
    n_s, unit = g[0].lower(), g[1].lower()
    n = int(n_s) if n_s.isdigit() else _NUMBERS.get(n_s.replace("a ", "").strip(), 1)
    n = min(n, 1000)
    if unit == "day":
        return today + timedelta(days=n)
    if unit == "week":
        return today + timedelta(days=7 * n)
    return _add_months(today, n)


# One named step per pattern kind (was one long _resolve).
_RESOLVERS: dict[str, Callable[[re.Match[str], date], date | None]] = {
    "iso": _iso,
    "month_day": lambda m, today: _month_and_day(m, today, month_first=True),
    "day_month": lambda m, today: _month_and_day(m, today, month_first=False),
    "day_after_tomorrow": lambda m, today: today + timedelta(days=2),
    "tomorrow": lambda m, today: today + timedelta(days=1),
    "yesterday": lambda m, today: today - timedelta(days=1),
    "today": lambda m, today: today,
    "weekday": _weekday,
    "end_of": _end_of_period,
    "week": _week,
    "next_period": _next_period,
    "in_n": _in_n,
}


def _resolve(kind: str, m: re.Match[str], today: date) -> date | None:
    resolver = _RESOLVERS.get(kind)
    return resolver(m, today) if resolver is not None else None


def find_dates(text: str, today: date) -> list[DateMention]:
    """Date mentions in text, left to right, without overlaps (the longer match wins)."""
    found: list[tuple[int, int, str, re.Match[str]]] = []
    for kind, rx in _PATTERNS:
        for m in rx.finditer(text):
            found.append((m.start(), m.end(), kind, m))
    found.sort(key=lambda f: (f[0], -(f[1] - f[0])))
    out: list[DateMention] = []
    last_end = -1
    for start, end, kind, m in found:
        if start < last_end:
            continue
        if kind == "month_day" and m.group(1).lower() == "may" and not m.group(0)[:1].isupper():
            continue  # "may 5 people join" — lower-case "may" is the verb far more often
        d = _resolve(kind, m, today)
        if d is None:
            continue
        last_end = end
        out.append(DateMention(m.group(0), start, d, d >= today))
    return out


def due_by(mentions: list[DateMention], tz: tzinfo) -> dict[str, str] | None:
    """Symbl's ``dueBy``: the first future date, at local midnight with the zone's offset."""
    for mention in mentions:
        if mention.future:
            stamp = datetime(mention.day.year, mention.day.month, mention.day.day, tzinfo=tz)
            return {"value": stamp.isoformat()}
    return None
