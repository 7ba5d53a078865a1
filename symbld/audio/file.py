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


# Uncompressed subtypes: their header's frame count must fit in the file (8/16/24/32/64-bit samples).
_PCM_BYTES = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8,
              "ULAW": 1, "ALAW": 1}
MIN_RATE, MAX_RATE = 4000, 384_000  # outside this no header is telling the truth about speech


def probe(path: str) -> sf._SoundFileInfo:
    """Check at ``start`` that the file can be read and is audio, so the error comes back at once.

    Each failure names the file and what is wrong with it: a relative path (the daemon's working
    directory is not the client's: symblctl and the Client resolve paths before sending),
    a missing file, not a regular file, no read permission for the daemon's user, not audio.
    The header is checked against the file: a rate no recorder uses, or more samples than the
    file holds, is refused rather than turned into hours of audio.
    """
    details = {"path": path[:300]}
    try:
        p = Path(path)
        absolute, exists, regular, directory = p.is_absolute(), p.exists(), p.is_file(), p.is_dir()
        size = p.stat().st_size if regular else None
    except (OSError, ValueError) as e:  # name too long, NUL byte
        raise SourceError("bad_request", f"bad audio file path ({e})", details) from None
    if not absolute:
        raise SourceError("bad_request", f"audio file path must be absolute, got {path!r} (the daemon runs in "
                          f"{os.getcwd()}; symblctl and symblctl.Client make paths absolute)", details)
    if not exists:
        raise SourceError("bad_request", f"audio file not found: {path}", details)
    if size is None:
        what = "a directory" if directory else "not a regular file"
        raise SourceError("bad_request", f"not an audio file: {path} is {what}", details)
    if not os.access(p, os.R_OK):
        raise SourceError("bad_request", f"cannot read {path}: permission denied for the daemon's user "
                          f"(uid {os.getuid()})", details)
    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise SourceError("bad_request", f"not a readable audio file: {path} ({e})", {"path": path}) from None
    if not MIN_RATE <= info.samplerate <= MAX_RATE or not 1 <= info.channels <= 8:
        raise SourceError("bad_request", f"{path}: header claims {info.samplerate} Hz, {info.channels} channel(s); "
                          f"expected {MIN_RATE}..{MAX_RATE} Hz, 1..8 channels",
                          {"path": path, "sampleRate": info.samplerate, "channels": info.channels})
    width = _PCM_BYTES.get(info.subtype)
    if width is not None and info.frames * info.channels * width > size:
        raise SourceError("bad_request", f"{path}: header claims {info.frames} frames, more than the "
                          f"{size}-byte file holds", {"path": path, "frames": info.frames, "bytes": size})
    return info


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

    def rush(self) -> None:
        """Shutdown: stop pacing, hand the rest of the file over now (it goes to the recovery spool)."""
        self.realtime = False

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "realtime": self.realtime,
                "nativeRate": self.info.samplerate, "channels": self.info.channels,
                "seconds": round(self.info.duration, 3), "sent": round(self.frames_sent * FRAME_MS / 1000, 3)}


__all__ = ["SAMPLE_RATE", "FileSource", "probe"]
