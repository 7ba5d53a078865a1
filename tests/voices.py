"""Real voices of different people, from Debian packages, joined into conversations with known turns.

Nothing here is synthesised. Sources (installed by scripts/install-deps.sh):

- ``pocketsphinx-testdata`` (/usr/share/pocketsphinx/test/data): a LibriVox reader of Sense and
  Sensibility (``librivox/*.wav``, 16 kHz, with transcripts) and a second speaker reading playing
  cards (``cards/*.wav``);
- ``codec2-examples`` (/usr/share/codec2): codec2's speech samples, each a different person
  recorded at 8 kHz (``wav/vk5qi.wav``, ``wav/ve9qrp.wav``, ``wav/mmt1.wav``, ``wav/hts1a.wav``,
  ...), resampled here to 16 kHz.

A conversation is turns joined with a pause between them; each turn keeps who spoke and where.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

RATE = 16000
SPHINX = Path("/usr/share/pocketsphinx/test/data")
CODEC2 = Path("/usr/share/codec2")


@dataclass(frozen=True)
class Turn:
    speaker: str
    start: float  # seconds in the joined audio
    end: float


def load(path: Path, seconds: float | None = None, offset: float = 0.0) -> np.ndarray:
    """A recording as float32 16 kHz mono (``.raw``: codec2's 8 kHz 16-bit), optionally a slice."""
    if path.suffix == ".raw":
        audio, rate = np.frombuffer(path.read_bytes(), dtype="<i2").astype(np.float32) / 32768, 8000
    else:
        audio, rate = sf.read(path, dtype="float32")
    if rate != RATE:
        audio = soxr.resample(audio, rate, RATE, quality="HQ").astype(np.float32)
    a = int(offset * RATE)
    b = len(audio) if seconds is None else a + int(seconds * RATE)
    return np.ascontiguousarray(audio[a:b], dtype=np.float32)


def available() -> bool:
    return (SPHINX / "librivox").is_dir() and (CODEC2 / "wav").is_dir()


def join(parts: list[tuple[str, np.ndarray]], pause: float = 1.0) -> tuple[np.ndarray, list[Turn]]:
    """The parts one after another, ``pause`` seconds of silence before each; the turns' bounds."""
    gap = np.zeros(int(pause * RATE), np.float32)
    chunks, turns, t = [], [], 0.0
    for speaker, audio in parts:
        chunks += [gap, audio]
        t += pause
        turns.append(Turn(speaker, t, t + len(audio) / RATE))
        t = turns[-1].end
    chunks.append(gap)
    return np.concatenate(chunks), turns


def write_wav(path: Path, audio: np.ndarray) -> Path:
    sf.write(path, audio, RATE, subtype="PCM_16")
    return path
