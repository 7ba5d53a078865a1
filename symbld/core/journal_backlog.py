"""Events the journal could not take yet (disk full, I/O error), kept in order until it can.

Used only from the bus thread. Per connection, once one event is waiting every later one waits
behind it, so the journal stays in seq order; ``retry`` writes them back oldest first and stops at
the first failure. The daemon is told once per episode (``journal_degraded`` / ``journal_recovered``
daemon events) and ``state()`` goes into ``status``. Nothing is dropped here; at shutdown what is
still waiting is logged with its count.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import IO, Any

import structlog

from symblctl import events
from symbld.core.journal import Journal

log = structlog.get_logger(__name__)


class JournalBacklog:
    def __init__(self, journal: Journal, announce: Callable[[str, events.EventData], None]) -> None:
        self.journal = journal
        self._announce = announce
        self._waiting: OrderedDict[str, deque[bytes]] = OrderedDict()
        self._close_after: set[str] = set()  # connections that ended while their events waited
        self.pending = 0
        self.pending_bytes = 0
        self.degraded = False
        self.error: str | None = None
        self.since: float | None = None
        self.episodes = 0
        self.retried = 0  # events written late, after the journal came back

    def append(self, cid: str, body: bytes) -> IO[bytes] | None:
        """Journal one event, or keep it for later; returns the file to fsync when written."""
        if cid in self._waiting:
            self._keep(cid, body)
            return None
        try:
            return self.journal.append(cid, body)
        except ValueError:  # an id the journal refuses as a file name never reaches here from start
            log.error("journal_unsafe_id", connection_id=cid)
            return None
        except OSError as e:
            self._fail(e)
            self._keep(cid, body)
            return None

    def _keep(self, cid: str, body: bytes) -> None:
        self._waiting.setdefault(cid, deque()).append(body)
        self.pending += 1
        self.pending_bytes += len(body)

    def _fail(self, e: OSError) -> None:
        self.error = f"{type(e).__name__}: {e}"
        if not self.degraded:
            self.degraded = True
            self.since = time.time()
            self.episodes += 1
            log.error("journal_degraded", error=self.error)
            self._announce("journal_degraded", events.JournalDegraded(error=self.error, pending_events=self.pending))

    def retry(self) -> None:
        synced: set[IO[bytes]] = set()
        for cid in list(self._waiting):
            q = self._waiting[cid]
            while q:
                try:
                    synced.add(self.journal.append(cid, q[0]))
                except OSError as e:
                    self.error = f"{type(e).__name__}: {e}"
                    self.sync(synced)
                    return
                body = q.popleft()
                self.pending -= 1
                self.pending_bytes -= len(body)
                self.retried += 1
            del self._waiting[cid]
            if cid in self._close_after:
                self._close_after.discard(cid)
                self._close(cid)
        self.sync(synced)
        if self.degraded and not self.pending:
            self.degraded = False
            log.warning("journal_recovered", written_late=self.retried)
            self._announce("journal_recovered", events.JournalRecovered(written_late=self.retried))

    def sync(self, files: set[IO[bytes]]) -> None:
        try:
            self.journal.sync(files)
        except OSError as e:  # the data may not be on disk: say so, the next write tells more
            log.error("journal_sync_failed", error=str(e))
            self._fail(e)

    def close_connection(self, cid: str) -> None:
        if cid in self._waiting:
            self._close_after.add(cid)
        else:
            self._close(cid)

    def _close(self, cid: str) -> None:
        try:
            self.journal.close_connection(cid)
        except OSError as e:
            log.error("journal_close_failed", connection_id=cid, error=str(e))

    def state(self) -> dict[str, Any]:
        return {"degraded": self.degraded, "error": self.error if self.degraded else None,
                "pendingEvents": self.pending, "pendingBytes": self.pending_bytes, "episodes": self.episodes,
                "writtenLate": self.retried}

    def close(self) -> None:
        self.retry()
        if self.pending:
            log.error("journal_incomplete_at_exit", pending_events=self.pending, error=self.error)
        for cid in self.journal.open_ids():
            self._close(cid)
