"""Durable per-connection event journals (JSON lines under the state directory).

One file per connection, ``<state>/journal/<connectionId>.jsonl``, one event per line, exactly
the bodies published on the bus. Policy: every event is written before it is published; the
file is fsync'ed before publishing any event that is not an interim transcript, so a final,
a message, an insight or a lifecycle event that a consumer saw survives SIGKILL. Interim
transcripts are written too but may be lost with the page cache (they are superseded anyway).

Files are written so that a torn tail can never merge with the next record: a write that fails
part way (ENOSPC, EIO) is cut back to the last whole line, and a file opened for appending whose
last line is torn (power cut, SIGKILL mid-write) is truncated to its last whole line first.
Every line read is checked (an object with an integer ``seq``, a string ``type``, an object
``data``); a bad line is skipped on read, and at start-up a file that is not a journal at all
(a directory, binary junk, a last line that is not an event) is moved aside to
``journal/quarantine/`` with a log line, so one bad file never stops the daemon.
"""

from __future__ import annotations

import json
import math
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


def valid_event(event: Any) -> bool:
    """A journal line we can serve: the shape every published event has."""
    if not isinstance(event, dict):
        return False
    seq = event.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 < seq < 1 << 62:
        return False
    return isinstance(event.get("type"), str) and isinstance(event.get("data"), dict)


def parse_line(line: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(line, parse_constant=lambda c: math.nan)  # NaN/Infinity: never a valid seq
    except (ValueError, RecursionError):
        return None
    return event if valid_event(event) else None


class Journal:
    def __init__(self, directory: Path, retention_days: float = 30.0) -> None:
        self.dir = directory
        self.retention_days = retention_days
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._open: dict[str, IO[bytes]] = {}
        self._size: dict[str, int] = {}  # bytes of whole lines in each open file
        self.quarantined: list[str] = []

    def path(self, connection_id: str) -> Path:
        if not _SAFE_ID.fullmatch(connection_id):
            raise ValueError(f"unsafe connection id {connection_id!r}")
        return self.dir / f"{connection_id}.jsonl"

    # -- writing (bus thread only) ------------------------------------------------------
    def append(self, connection_id: str, body: bytes) -> IO[bytes]:
        """Write one line whole or not at all (a failed write is cut back); raises OSError."""
        f = self._open.get(connection_id)
        if f is None:
            p = self.path(connection_id)
            f = open(p, "ab", buffering=0,  # noqa: SIM115 - kept open while the connection lives
                     opener=lambda p, fl: os.open(p, fl, 0o600))
            try:
                self._size[connection_id] = self._cut_torn_tail(f, p)
            except OSError:
                f.close()
                raise
            self._open[connection_id] = f
        start = self._size[connection_id]
        data = body + b"\n"
        try:
            done = 0
            while done < len(data):
                done += os.write(f.fileno(), data[done:])
        except OSError:
            try:  # never leave half a line for the next record to merge with
                os.ftruncate(f.fileno(), start)
            except OSError:
                log.error("journal_truncate_failed", connection_id=connection_id)
            raise
        self._size[connection_id] = start + len(data)
        return f

    @staticmethod
    def _cut_torn_tail(f: IO[bytes], path: Path) -> int:
        """Truncate a last line without its newline; returns the size of the whole lines."""
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return 0
        with open(path, "rb") as r:
            end = size
            while end > 0:
                start = max(0, end - 65536)
                r.seek(start)
                chunk = r.read(end - start)
                if end == size and chunk.endswith(b"\n"):
                    return size
                i = chunk.rfind(b"\n")
                if i >= 0:
                    end = start + i + 1
                    break
                end = start
        os.ftruncate(f.fileno(), end)
        log.warning("journal_torn_tail_truncated", path=str(path), bytes=size - end)
        return end

    def sync(self, files: set[IO[bytes]]) -> None:
        for f in files:
            os.fsync(f.fileno())

    def close_connection(self, connection_id: str) -> None:
        f = self._open.pop(connection_id, None)
        self._size.pop(connection_id, None)
        if f is not None:
            try:
                os.fsync(f.fileno())
            finally:
                f.close()

    def open_ids(self) -> list[str]:
        return list(self._open)

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
        try:
            f = open(p, "rb")  # noqa: SIM115 - closed below; a directory or unreadable file has no events
        except OSError:
            return
        with f:
            for line in f:
                event = parse_line(line)
                if event is None:
                    if line.endswith(b"\n"):  # a torn last line is expected after a crash; others are not
                        log.warning("journal_corrupt_line", connection_id=connection_id)
                    continue
                if event["seq"] <= after_seq:
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
        except (ValueError, OSError):
            return None
        if size > tail_bytes:
            lines = lines[1:]  # the first line of the tail may be cut
        for line in reversed(lines):
            event = parse_line(line)
            if event is not None:  # blank, torn or corrupt lines: look further back
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
        return sorted(p.stem for p in self.dir.glob("*.jsonl") if _SAFE_ID.fullmatch(p.stem) and p.is_file())

    def check_all(self) -> list[str]:
        """Start-up: move aside every file here that is not a journal we can continue; returns good ids."""
        good = []
        for p in sorted(self.dir.glob("*.jsonl")):
            reason = self._check(p)
            if reason is None:
                good.append(p.stem)
            else:
                self.quarantine(p, reason)
        return good

    def _check(self, p: Path) -> str | None:
        if not _SAFE_ID.fullmatch(p.stem):
            return "unsafe file name"
        if p.is_symlink() or not p.is_file():
            return "not a regular file"
        try:
            with open(p, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - 65536))
                tail = f.read()
        except OSError as e:
            return f"unreadable: {e.strerror}"
        if size == 0:
            return None
        body = tail[: tail.rfind(b"\n") + 1]  # whole lines; what follows is a torn tail (cut on append)
        last = body.rstrip(b"\n").rsplit(b"\n", 1)[-1] if body else b""
        if not last:
            return "no complete event line" if size <= 65536 or not body else "last line too long"
        if parse_line(last) is None:
            if size > len(tail) and body.count(b"\n") <= 1:  # one line longer than the tail: read it all
                return None if self.last_event(p.stem) is not None else "no event in the file"
            return "last line is not an event"
        return None

    def quarantine(self, p: Path, reason: str) -> None:
        qdir = self.dir / "quarantine"
        try:
            qdir.mkdir(exist_ok=True, mode=0o700)
            dest = qdir / f"{p.name}.{int(time.time() * 1000)}"
            os.replace(p, dest)
        except OSError as e:
            log.error("journal_quarantine_failed", path=str(p), reason=reason, error=str(e))
            return
        self.quarantined.append(p.name)
        log.warning("journal_file_moved_aside", path=str(p), moved_to=str(dest), reason=reason)

    def expire(self, now: float | None = None) -> list[str]:
        """Delete journals untouched for longer than the retention; returns the ids removed."""
        cutoff = (now or time.time()) - self.retention_days * 86400
        removed = []
        for p in self.dir.glob("*.jsonl"):
            if p.stem in self._open:
                continue
            try:
                if p.is_file() and p.stat().st_mtime < cutoff:
                    p.unlink()
                    removed.append(p.stem)
            except FileNotFoundError:
                continue
        if removed:
            log.info("journal_expired", count=len(removed))
        return removed
