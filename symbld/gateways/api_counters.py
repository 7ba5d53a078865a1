"""Requests and errors per API of the HTTP listener, for ``/metrics`` (symbld/web/metrics.py).

A plain locked counter rather than prometheus-client objects: the gateways count here without
importing the metrics library, and ``/metrics`` reads the totals when it is scraped. Keyed by
(api, outcome) where outcome is ``ok`` or the error's HTTP status as text.
"""

from __future__ import annotations

import threading
from collections import Counter

_lock = threading.Lock()
_counts: Counter[tuple[str, str]] = Counter()


def count(api: str, status: int) -> None:
    """One request of ``api`` answered with HTTP ``status`` (a WebSocket session counts as its upgrade)."""
    outcome = "ok" if status < 400 else str(status)
    with _lock:
        _counts[(api, outcome)] += 1


def snapshot() -> dict[tuple[str, str], int]:
    with _lock:
        return dict(_counts)
