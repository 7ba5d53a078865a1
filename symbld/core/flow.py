"""Flow control between a session's source and its engine stream: a bounded backlog, no silent loss.

The engine stream reports how much audio waits for a final decode (``backlog()["queuedSeconds"]``).
Over ``max_backlog_s``:

- a source that can wait (push, file) is simply not read: the session thread holds until the
  backlog is back under ``resume_backlog_s``. A push queue then fills and ``send_audio`` answers
  ``busy``; a file is read later. Memory stays bounded and nothing is dropped.
- a live source that cannot wait (mic, SIP) degrades in steps that keep every word: first the
  stream skips interims (level 1), then its frames are spooled to disk (``AudioSpool``, level 2)
  and fed back, oldest first, as the engine catches up.

Each step is published as an ``engine_backlog`` event with ``step`` and what was degraded; the
counters go into the connection object (``flow``). Only a failing disk can lose audio, and then
``audioSecondsDropped`` says how much.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from symbld.core.spool import BYTES_PER_SECOND, AudioSpool

WAITING_KINDS = ("push", "file")  # sources that can be paused (the CLI's stdin pushes)


@dataclass
class FlowSettings:
    max_backlog_s: float = 10.0  # audio waiting for a final decode before sources are held or spooled
    resume_backlog_s: float = 5.0  # ... and back under this before they resume
    spool_dir: Path | None = None  # where live audio waits when the engine is behind

    @classmethod
    def from_config(cls, cfg: dict[str, Any], state_dir: Path) -> FlowSettings:
        top = float(cfg.get("max_engine_backlog_s", cls.max_backlog_s))
        return cls(max_backlog_s=top, resume_backlog_s=top / 2, spool_dir=state_dir / "spool")


def _refuse(_pcm: bytes) -> None:
    raise RuntimeError("flow control used after its session ended")


class FlowControl:
    def __init__(self, *, stream: Any, feed: Callable[[bytes], None], source_kind: str, settings: FlowSettings,
                 connection_id: str,
                 emit: Callable[[str, dict[str, Any]], None], stopped: threading.Event) -> None:
        self._probe = getattr(stream, "backlog", None)
        self._degrade = getattr(stream, "degrade", None)
        self._feed = feed  # the stream's feed, through the recovery tee
        self.s = settings
        self._emit = emit
        self._abandon = stopped  # set when the daemon must stop now: no more holding
        self.can_wait = source_kind in WAITING_KINDS
        self.level = 0
        self.held_seconds = 0.0
        self.holds = 0
        self.spooled_bytes = 0
        self.dropped_bytes = 0
        self.spool_failures = 0
        self._spool: AudioSpool | None = None
        if not self.can_wait and settings.spool_dir is not None:
            self._spool = AudioSpool(settings.spool_dir / f"{connection_id}.live.pcm")

    def queued(self) -> float:
        if self._probe is None:
            return 0.0
        return float(self._probe().get("queuedSeconds", 0.0))

    # -- the session thread --------------------------------------------------------------------
    def feed(self, pcm: bytes) -> None:
        if self._probe is None:  # engines without a backlog report (remote ones) pace themselves
            self._feed(pcm)
            return
        if self.can_wait:
            self._feed(pcm)
            if self.queued() > self.s.max_backlog_s:
                self._hold()
            return
        self._feed_live(pcm)

    def _hold(self) -> None:
        t0 = time.monotonic()
        self.holds += 1
        self._step(1, "held", {"degraded": ["interims"], "held": True})
        while self.queued() > self.s.resume_backlog_s and not self._abandon.is_set():
            self._abandon.wait(0.05)  # poll the engine's backlog until it drains; shutdown ends the wait at once
        self.held_seconds += time.monotonic() - t0
        self._step(0, "caught_up", {"degraded": [], "held": False})

    def _feed_live(self, pcm: bytes) -> None:
        spool = self._spool
        queued = self.queued()
        if self.level == 0 and queued > self.s.max_backlog_s:
            self._step(1, "interims_skipped", {"degraded": ["interims"]})
        if spool is not None and (spool.pending_bytes or queued > 1.5 * self.s.max_backlog_s):
            try:
                spool.write(pcm)
                self.spooled_bytes += len(pcm)
                if self.level < 2:
                    self._step(2, "spooling", {"degraded": ["interims"], "spooledSeconds": self.spooled_seconds})
            except OSError:  # the disk failed: keep the words, in memory
                self.spool_failures += 1
                self._feed(pcm)
        else:
            self._feed(pcm)
        self._drain_spool(max_seconds=2.0)
        if self.level and not (spool and spool.pending_bytes) and self.queued() < self.s.resume_backlog_s:
            self._step(0, "caught_up", {"degraded": []})

    def _drain_spool(self, max_seconds: float) -> None:
        spool = self._spool
        budget = int(max_seconds * BYTES_PER_SECOND)
        while spool is not None and spool.pending_bytes and budget > 0 and self.queued() < self.s.resume_backlog_s:
            chunk = spool.read(min(budget, BYTES_PER_SECOND // 2))
            budget -= len(chunk)
            self._feed(chunk)

    def finish(self) -> None:
        """The source ended: feed what the spool still holds (the engine's finish decodes it)."""
        spool = self._spool
        while spool is not None and spool.pending_bytes:
            self._feed(spool.read(BYTES_PER_SECOND))
        if spool is not None:
            spool.close()

    def spill(self, keep: Callable[[bytes], None]) -> None:
        """Shutdown: hand the spool's audio to ``keep`` (the recovery file) instead of the engine."""
        spool = self._spool
        while spool is not None and spool.pending_bytes:
            keep(spool.read(BYTES_PER_SECOND))
        if spool is not None:
            spool.close()

    def detach(self) -> None:
        """The session ended: keep the counters, let go of the engine stream (ended sessions are kept)."""
        self._probe = self._degrade = None
        self._feed = _refuse

    @property
    def dropped_seconds(self) -> float:
        return self.dropped_bytes / BYTES_PER_SECOND

    def _step(self, level: int, step: str, info: dict[str, Any]) -> None:
        if level == self.level:
            return
        self.level = level
        if self._degrade is not None:
            self._degrade(level)
        self._emit("engine_backlog", {"behind": level > 0, "step": step, "queuedSeconds": round(self.queued(), 2),
                                      "maxSeconds": self.s.max_backlog_s, **info})

    @property
    def spooled_seconds(self) -> float:
        return round(self.spooled_bytes / BYTES_PER_SECOND, 3)

    def as_dict(self) -> dict[str, Any]:
        return {"maxBacklogSeconds": self.s.max_backlog_s, "level": self.level, "holds": self.holds,
                "heldSeconds": round(self.held_seconds, 3), "spooledSeconds": self.spooled_seconds,
                "spoolPendingSeconds": round(self._spool.pending_seconds, 3) if self._spool else 0.0,
                "spoolFailures": self.spool_failures,
                "audioSecondsDropped": round(self.dropped_bytes / BYTES_PER_SECOND, 3)}
