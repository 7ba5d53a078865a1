"""Durable per-connection event journals (JSON lines under the state directory).

One file per connection, ``<state>/journal/<connectionId>.jsonl``, one event per line, exactly
the bodies published on the bus. Policy: every event is written before it is published; the
file is fsync'ed before publishing any event that is not an interim transcript, so a final,
a message, an insight or a lifecycle event that a consumer saw survives SIGKILL. Interim
transcripts are written too but may be lost with the page cache (they are superseded anyway).
A half-written last line (power cut, SIGKILL mid-write) is skipped on read.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import structlog

log = structlog.get_logger(__name__)

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def is_durable(event: dict[str, Any]) -> bool:
    """Interim transcripts are the only events we do not fsync for."""
    return not (event.get("type") == "transcript_response" and not event.get("data", {}).get("isFinal"))


class Journal:
    def __init__(self, directory: Path, retention_days: float = 30.0) -> None:
        self.dir = directory
        self.retention_days = retention_days
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._open: dict[str, IO[bytes]] = {}

    def path(self, connection_id: str) -> Path:
        if not _SAFE_ID.match(connection_id):
            raise ValueError(f"unsafe connection id {connection_id!r}")
        return self.dir / f"{connection_id}.jsonl"

    # -- writing (bus thread only) ------------------------------------------------------
    def append(self, connection_id: str, body: bytes) -> IO[bytes]:
        f = self._open.get(connection_id)
        if f is None:
            f = open(self.path(connection_id), "ab", buffering=0,  # noqa: SIM115 - kept open while the connection lives
                     opener=lambda p, fl: os.open(p, fl, 0o600))
            self._open[connection_id] = f
        f.write(body + b"\n")
        return f

    def sync(self, files: set[IO[bytes]]) -> None:
        for f in files:
            os.fsync(f.fileno())

    def close_connection(self, connection_id: str) -> None:
        f = self._open.pop(connection_id, None)
        if f is not None:
            os.fsync(f.fileno())
            f.close()

    def close(self) -> None:
        for cid in list(self._open):
            self.close_connection(cid)

    # -- reading (any thread) ---------------------------------------------------------------
    def read(self, connection_id: str, after_seq: int = 0, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Events of a connection with seq > after_seq, oldest first; a corrupt line is skipped."""
        try:
            p = self.path(connection_id)
        except ValueError:
            return
        if not p.exists():
            return
        n = 0
        with open(p, "rb") as f:
            for line in f:
                try:
                    event = json.loads(line)
                except ValueError:
                    log.warning("journal_corrupt_line", connection_id=connection_id)
                    continue
                if not isinstance(event, dict) or event.get("seq", 0) <= after_seq:
                    continue
                yield event
                n += 1
                if limit is not None and n >= limit:
                    return

    def last_event(self, connection_id: str, tail_bytes: int = 64 * 1024) -> dict[str, Any] | None:
        """The last readable event, from the file's tail (start-up checks every journal with this)."""
        try:
            p = self.path(connection_id)
            with open(p, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - tail_bytes))
                lines = f.read().split(b"\n")
        except (ValueError, FileNotFoundError):
            return None
        if size > tail_bytes:
            lines = lines[1:]  # the first line of the tail may be cut
        for line in reversed(lines):
            try:
                event = json.loads(line)
            except ValueError:
                continue  # blank, torn or corrupt: look further back
            if isinstance(event, dict):
                return event
        if size > tail_bytes:  # no complete event in the tail (a huge line): scan it all
            last = None
            for last in self.read(connection_id):  # noqa: B007 - we want the final one
                pass
            return last
        return None

    def exists(self, connection_id: str) -> bool:
        try:
            return self.path(connection_id).exists()
        except ValueError:
            return False

    def connection_ids(self) -> list[str]:
        return sorted(p.stem for p in self.dir.glob("*.jsonl"))

    def expire(self, now: float | None = None) -> list[str]:
        """Delete journals untouched for longer than the retention; returns the ids removed."""
        cutoff = (now or time.time()) - self.retention_days * 86400
        removed = []
        for p in self.dir.glob("*.jsonl"):
            if p.stem in self._open:
                continue
            try:
                if p.stat().st_mtime < cutoff:
                    p.unlink()
                    removed.append(p.stem)
            except FileNotFoundError:
                continue
        if removed:
            log.info("journal_expired", count=len(removed))
        return removed
