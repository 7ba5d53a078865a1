"""Audio from a file (WAV, FLAC, OGG, MP3: whatever libsndfile reads), paced in real time or fast."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import soundfile as sf

from symbld.audio.base import FRAME_BYTES, FRAME_MS, SAMPLE_RATE, SourceError
from symbld.audio.convert import StreamResampler

_BLOCK_SECONDS = 0.5


def probe(path: str) -> sf._SoundFileInfo:
    """Check at ``start`` that the file can be read and is audio, so the error comes back at once.

    Each failure names the file and what is wrong with it: a relative path (the daemon's working
    directory is not the client's: symblctl and the Client resolve paths before sending),
    a missing file, not a regular file, no read permission for the daemon's user, not audio.
    """
    p = Path(path)
    details = {"path": path}
    if not p.is_absolute():
        raise SourceError("bad_request", f"audio file path must be absolute, got {path!r} (the daemon runs in "
                          f"{os.getcwd()}; symblctl and symblctl.Client make paths absolute)", details)
    if not p.exists():
        raise SourceError("bad_request", f"audio file not found: {path}", details)
    if not p.is_file():
        what = "a directory" if p.is_dir() else "not a regular file"
        raise SourceError("bad_request", f"not an audio file: {path} is {what}", details)
    if not os.access(p, os.R_OK):
        raise SourceError("bad_request", f"cannot read {path}: permission denied for the daemon's user "
                          f"(uid {os.getuid()})", details)
    try:
        return sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise SourceError("bad_request", f"not a readable audio file: {path} ({e})", details) from None


class FileSource:
    kind = "file"

    def __init__(self, path: str, realtime: bool = True) -> None:
        self.info = probe(path)
        self.path = path
        self.realtime = realtime
        self._closed = threading.Event()
        self.frames_sent = 0

    def frames(self) -> Iterator[bytes]:
        rs = StreamResampler(self.info.samplerate, self.info.channels)
        block = max(1, int(self.info.samplerate * _BLOCK_SECONDS))
        t0 = time.monotonic()
        pending = b""
        try:
            with sf.SoundFile(self.path) as f:
                while not self._closed.is_set():
                    data = f.read(block, dtype="float32", always_2d=True)
                    last = len(data) < block
                    pending += rs.process(data, last=last)
                    while len(pending) >= FRAME_BYTES or (last and pending):
                        chunk, pending = pending[:FRAME_BYTES], pending[FRAME_BYTES:]
                        if self.realtime:
                            # Pace by the audio clock, not by sleeps, so decode hiccups do not drift.
                            due = t0 + self.frames_sent * FRAME_MS / 1000
                            delay = due - time.monotonic()
                            if delay > 0 and self._closed.wait(delay):
                                return
                        yield chunk
                        self.frames_sent += 1
                    if last:
                        return
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            raise SourceError("bad_request", f"cannot decode {self.path}: {e}", {"path": self.path}) from None

    def close(self) -> None:
        self._closed.set()

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "realtime": self.realtime,
                "nativeRate": self.info.samplerate, "channels": self.info.channels,
                "seconds": round(self.info.duration, 3), "sent": round(self.frames_sent * FRAME_MS / 1000, 3)}


__all__ = ["SAMPLE_RATE", "FileSource", "probe"]
