"""``--since`` values: an ISO date or time (local time unless it has a zone), an age (30m, 2h, 3d,
1w) or today / yesterday, as the UTC ISO 8601 time the daemon compares with."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta

_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def since_time(text: str, now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    value = text.strip().lower()
    local_midnight = now.astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
    if value == "today":
        return local_midnight.astimezone(UTC)
    if value == "yesterday":
        return (local_midnight - timedelta(days=1)).astimezone(UTC)
    m = _AGE.match(value)
    if m:
        return now - timedelta(seconds=float(m.group(1)) * _UNIT[m.group(2)])
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not a time: {text!r}") from None
    return (t if t.tzinfo else t.astimezone()).astimezone(UTC)


def parse_since(text: str) -> str:
    """argparse type: the UTC ISO time (``2026-12-01T09:00:00.000Z``)."""
    try:
        t = since_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time: use 2026-12-01, 2026-12-01T09:00, 2h, 3d, "
                                         "today or yesterday") from None
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
