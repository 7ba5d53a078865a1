"""Undecoded audio on disk: a FIFO of 16 kHz s16le PCM in one file next to the journal.

A live source (microphone, call) cannot be paused when the engine falls behind, so its frames go
here and are fed back, oldest first, as the engine catches up: the audio waits on disk instead of
in memory, and every word still reaches a final. Used from one thread (the session's).
"""

from __future__ import annotations

import os
from pathlib import Path

BYTES_PER_SECOND = 32000


class AudioSpool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._written = 0  # bytes appended
        self._read = 0  # bytes handed back

    @property
    def pending_bytes(self) -> int:
        return self._written - self._read

    @property
    def pending_seconds(self) -> float:
        return self.pending_bytes / BYTES_PER_SECOND

    def write(self, pcm: bytes) -> None:
        """Append; raises OSError (disk full) with nothing half-written counted."""
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        done = 0
        try:
            while done < len(pcm):
                done += os.pwrite(self._fd, pcm[done:], self._written + done)
        except OSError:
            os.ftruncate(self._fd, self._written)
            raise
        self._written += len(pcm)

    def read(self, max_bytes: int) -> bytes:
        if self._fd is None or not self.pending_bytes:
            return b""
        n = min(max_bytes, self.pending_bytes)
        data = os.pread(self._fd, n - n % 2, self._read)
        self._read += len(data)
        if self._read == self._written:  # empty again: start over so the file never grows for good
            os.ftruncate(self._fd, 0)
            self._read = self._written = 0
        return data

    def close(self, keep: bool = False) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if not keep:
            self.path.unlink(missing_ok=True)
