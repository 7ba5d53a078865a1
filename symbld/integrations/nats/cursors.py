"""What the stream already holds, per connection: the highest seq JetStream acknowledged.

Kept in ``<state>/nats/cursors.json`` (next to the journal), rewritten atomically at most once a
second. With the journal it is the bridge's spill: whatever the stream has not acknowledged is
in the journal after the cursor, and is published from there after an outage or a crash. A cursor
that lags (SIGKILL between an ack and the next write) only re-sends events JetStream drops as
duplicates by their message id.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from symbld.core.journal import Journal


class Cursors:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = directory / "cursors.json"
        self.acked: dict[str, int] = {}
        self.since = time.time()  # journals older than the bridge's first run are not ours to publish
        try:
            data = json.loads(self.path.read_text())
            self.acked = {str(k): int(v) for k, v in data.get("acked", {}).items()}
            self.since = float(data.get("since", self.since))
        except FileNotFoundError:
            pass
        except (ValueError, TypeError, AttributeError):
            self.path.rename(self.path.with_suffix(".corrupt"))  # kept for a look; catch-up re-sends (deduplicated)
        self._dirty = True
        self._written_at = 0.0

    def advance(self, connection_id: str, seq: int) -> None:
        if seq > self.acked.get(connection_id, 0):
            self.acked[connection_id] = seq
            self._dirty = True

    def unpublished(self, journal: Journal) -> list[str]:
        """Connections whose journal holds events the stream has not acknowledged (after a crash or outage)."""
        out = []
        known = set(journal.connection_ids())
        for cid in list(self.acked):
            if cid not in known:
                del self.acked[cid]  # journal expired: nothing left to publish or to remember
        for cid in known:
            try:
                mtime = journal.path(cid).stat().st_mtime
            except (OSError, ValueError):
                continue
            if cid not in self.acked and mtime < self.since:
                continue
            last = journal.last_event(cid)
            if last is not None and int(last.get("seq", 0)) > self.acked.get(cid, 0):
                out.append(cid)
        return out

    def save(self, force: bool = False) -> None:
        if not self._dirty or (not force and time.monotonic() - self._written_at < 1.0):
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"since": self.since, "acked": self.acked}))
        os.replace(tmp, self.path)
        self._dirty = False
        self._written_at = time.monotonic()
