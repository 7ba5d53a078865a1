"""Audio that could not be decoded before the daemon stopped: kept on disk, decoded at the next start.

Every session tees the audio it feeds its engine into ``<state>/spool/<connectionId>.pcm``
(``AudioTee``), forgetting what is already decoded: the file holds only the stretch after the last
final (plus at most ``_KEEP_S`` when nothing is pending). When shutdown cannot wait for the engine
(systemd's ``TimeoutStopSec`` is close), the session writes what its source still held into the
same file and a ``<connectionId>.json`` next to it (``save``), publishes ``audio_spooled`` and ends
without ``connection_stopped``. The next start (``pending``) decodes the file in a new session under
the same connection id: its events carry ``recovered: true`` and their original times
(``shift_times``), then ``connection_stopped`` / ``conversation_completed`` as usual.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import structlog

from symbld.core.spool import BYTES_PER_SECOND

log = structlog.get_logger(__name__)

_KEEP_S = 30.0  # with no final pending, audio older than this is decoded (or silence)
_ROLL_S = 120.0  # start a new file once this much decoded audio sits at the head of the current one


def _gone(_pcm: bytes) -> None:
    raise RuntimeError("audio fed after the session ended")


class AudioTee:
    """Feeds the engine and keeps, on disk, the audio it has not decoded yet. Session thread only,
    except ``mark_decoded`` (the engine's emit thread)."""

    def __init__(self, path: Path, feed: Callable[[bytes], None]) -> None:
        self.path = path
        self._feed = feed
        self.base = 0  # engine-time byte offset of the file's first byte
        self.fed = 0  # bytes fed (engine time)
        self._decoded = 0  # bytes up to the end of the last final
        self._lock = threading.Lock()
        self._fd: int | None = None
        self.failed = False

    def feed(self, pcm: bytes) -> None:
        self.keep(pcm)
        self._feed(pcm)

    def keep(self, pcm: bytes) -> None:
        """Write to disk only (shutdown: the engine will not see this audio in this run)."""
        if not self.failed:
            try:
                if self._fd is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                    self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
                os.pwrite(self._fd, pcm, self.fed - self.base)
            except OSError as e:  # no spool: the run goes on; only a shutdown could lose audio now
                log.error("spool_write_failed", path=str(self.path), error=str(e))
                self.failed = True
        self.fed += len(pcm)

    def mark_decoded(self, end_seconds: float) -> None:
        with self._lock:
            self._decoded = max(self._decoded, int(end_seconds * BYTES_PER_SECOND) & ~1)

    def decoded(self) -> int:
        with self._lock:
            return self._decoded

    def roll(self, finals_pending: bool) -> None:
        """Drop the decoded head of the file (called now and then from the session thread)."""
        safe = self.decoded() if finals_pending else max(self.decoded(), self.fed - int(_KEEP_S * BYTES_PER_SECOND))
        safe = min(safe & ~1, self.fed)
        if self._fd is None or self.failed or safe - self.base < _ROLL_S * BYTES_PER_SECOND:
            return
        tail = os.pread(self._fd, self.fed - safe, safe - self.base)
        tmp = self.path.with_suffix(".pcm.new")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, tail)
        os.replace(tmp, self.path)
        os.close(self._fd)
        self._fd, self.base = fd, safe

    def detach(self) -> None:
        self._feed = _gone

    def close(self, keep: bool = False) -> None:
        if self._fd is not None:
            if keep:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        if not keep:
            self.path.unlink(missing_ok=True)


def save(tee: AudioTee, config: Any, started_at: float, shift: float, reason: str) -> dict[str, Any]:
    """Write the recovery note beside the tee's file; returns it."""
    cfg = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "extra"}
    resume = max(tee.decoded(), tee.base)
    note = {"connectionId": config.connection_id, "conversationId": config.conversation_id, "reason": reason,
            "audio": tee.path.name, "baseBytes": tee.base, "resumeBytes": resume, "fedBytes": tee.fed,
            "startedAt": started_at, "shiftSeconds": shift, "config": cfg}
    p = tee.path.with_suffix(".json")
    tmp = p.with_suffix(".json.new")
    # A connection that got no audio yet never opened its spool file, so the directory may not exist.
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(tmp, "w") as f:
        json.dump(note, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)
    return note


def pending(spool_dir: Path) -> list[dict[str, Any]]:
    """Recovery notes left by the last run (unreadable ones are logged and set aside)."""
    out = []
    for p in sorted(spool_dir.glob("*.json")) if spool_dir.is_dir() else []:
        try:
            note = json.loads(p.read_text())
            if not isinstance(note, dict) or not isinstance(note.get("config"), dict):
                raise ValueError("not a recovery note")
            note["_path"] = str(p)
            out.append(note)
        except (OSError, ValueError) as e:
            log.error("spool_note_unreadable", path=str(p), error=str(e))
            os.replace(p, p.with_suffix(".json.bad"))
    return out


def remove_orphans(spool_dir: Path, notes: list[dict[str, Any]]) -> None:
    """Audio files no note names: a run killed (SIGKILL) mid-session; its journal marks it cut."""
    named = {n.get("audio") for n in notes}
    for p in spool_dir.glob("*.pcm") if spool_dir.is_dir() else []:
        if p.name not in named:
            log.warning("spool_orphan_removed", path=str(p), bytes=p.stat().st_size)
            p.unlink(missing_ok=True)


def discard(note: dict[str, Any]) -> None:
    p = Path(note["_path"])
    (p.parent / note["audio"]).unlink(missing_ok=True)
    p.unlink(missing_ok=True)


class RecoveredSource:
    """The spooled audio of a note, from where decoding stopped, as fast as the engine takes it."""

    kind = "recovered"

    def __init__(self, note: dict[str, Any]) -> None:
        self.path = Path(note["_path"]).parent / note["audio"]
        self.offset = int(note["resumeBytes"]) - int(note["baseBytes"])
        self.seconds = max(0, int(note["fedBytes"]) - int(note["resumeBytes"])) / BYTES_PER_SECOND
        self._closed = False
        self.sent = 0

    def frames(self) -> Iterator[bytes]:
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return
        with f:
            f.seek(self.offset)
            while not self._closed:
                chunk = f.read(BYTES_PER_SECOND // 2)
                if not chunk:
                    return
                self.sent += len(chunk)
                yield chunk

    def close(self) -> None:
        """Nothing: this audio was captured in an earlier run; a stop still decodes all of it (like push)."""

    def rush(self) -> None:
        """Shutdown: already as fast as it goes."""

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "seconds": round(self.seconds, 3), "sent": round(self.sent / BYTES_PER_SECOND, 3)}


def shift_times(data: dict[str, Any], seconds: float) -> dict[str, Any]:
    """A recovered event: marked, and its offsets counted from the conversation's real start."""
    data = {**data, "recovered": True}
    if seconds:
        if isinstance(data.get("duration"), dict):
            data["duration"] = _shift(data["duration"], seconds)
        if isinstance(data.get("messages"), list):
            data["messages"] = [{**m, "duration": _shift(m["duration"], seconds)}
                                if isinstance(m.get("duration"), dict) else m for m in data["messages"]]
    return data


def _shift(d: dict[str, Any], seconds: float) -> dict[str, Any]:
    if isinstance(d.get("timeOffset"), int | float):
        return {**d, "timeOffset": round(d["timeOffset"] + seconds, 3)}
    return d
