"""Where a final's time goes: per-final timestamps, written only when ``SYMBLD_TRACE_FINALS`` names a file.

For latency work (``bench/bench_latency.py --trace`` sets it for the daemon it starts and reads the file back):
each final appends one JSON line with its connection, the stream offset where its speech ended, and the
``time.monotonic()`` of each step (the clock is system-wide, so the bench's own timestamps compare): the last
speech frame fed, the speculative decode asked for / started / done (or why it was refused), the utterance
closed, the final decode queued / started / done, the final published. Off (the default) it costs one
attribute test per step.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

PATH = os.environ.get("SYMBLD_TRACE_FINALS") or None
_lock = threading.Lock()


class FinalTrace:
    """One utterance's timestamps (monotonic seconds) and notes."""

    __slots__ = ("marks", "notes")

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self.notes: dict[str, Any] = {}

    def mark(self, step: str, **notes: Any) -> None:
        self.marks.setdefault(step, time.monotonic())  # the first time a step happened
        self.notes.update(notes)

    def count(self, what: str) -> None:
        self.notes[what] = self.notes.get(what, 0) + 1


def new() -> FinalTrace | None:
    return FinalTrace() if PATH else None


def write(trace: FinalTrace | None, **fields: Any) -> None:
    if trace is None or PATH is None:
        return
    line = json.dumps({**fields, **trace.notes, "schedule": os.environ.get("SYMBLD_SCHEDULE"), "marks": trace.marks})
    with _lock, open(PATH, "a", encoding="utf-8") as f:
        f.write(line + "\n")
