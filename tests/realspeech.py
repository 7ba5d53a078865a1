"""A real-speech evaluation set: recordings of people, with their transcripts, from Debian.

``pocketsphinx-testdata`` (installed by scripts/install-deps.sh) ships read LibriVox speech
(Sense and Sensibility), spoken playing-card names and "go forward ten meters", each with the
transcript its speakers read. Nothing here is synthesised. Each clip comes in three copies:

- ``clean``: as recorded;
- ``noise``: white noise added at 10 dB SNR (seeded, so every run hears the same noise);
- ``phone``: band-limited to 8 kHz telephone audio and back to 16 kHz (what the RTP path feeds).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

DATA = Path("/usr/share/pocketsphinx/test/data")
RATE = 16000
VARIANTS = ("clean", "noise", "phone")


@dataclass(frozen=True)
class Clip:
    name: str
    text: str
    audio: np.ndarray  # float32 mono 16 kHz


def available() -> bool:
    return (DATA / "librivox" / "transcription").is_file()


def _transcripts(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"\s*(?:<s>)?(.*?)(?:</s>)?\s*\((\S+)\)\s*$", line)
        if m:
            out[m.group(2)] = " ".join(m.group(1).split())
    return out


def clips() -> list[Clip]:
    """The clips with their transcripts (sorted by name), as recorded."""
    found: list[Clip] = []
    for folder, trans in (("librivox", "transcription"), ("cards", "cards.transcription")):
        for name, text in sorted(_transcripts(DATA / folder / trans).items()):
            audio, rate = sf.read(DATA / folder / f"{name}.wav", dtype="float32")
            assert rate == RATE, (name, rate)
            found.append(Clip(name, text, audio))
    raw = np.frombuffer((DATA / "goforward.raw").read_bytes(), dtype="<i2").astype(np.float32) / 32768
    found.append(Clip("goforward", "go forward ten meters", raw))
    return found


def variant(audio: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    if kind == "clean":
        return audio
    if kind == "noise":
        power = float(np.mean(audio**2))
        noise = np.random.default_rng(seed).standard_normal(len(audio)).astype(np.float32)
        noisy = audio + noise * np.sqrt(power / 10.0)  # 10 dB below the speech power
        return np.clip(noisy, -1.0, 1.0).astype(np.float32)
    if kind == "phone":
        narrow = soxr.resample(audio, RATE, 8000, quality="HQ")
        return soxr.resample(narrow, 8000, RATE, quality="HQ").astype(np.float32)
    raise ValueError(kind)


def speech_bounds(audio: np.ndarray, frame: int = 160, floor_db: float = -35.0) -> tuple[float, float]:
    """(start, end) in seconds of the speech inside a clip: its own leading/trailing silence trimmed,
    by frame energy relative to the loudest frame (the true end of speech for latency figures)."""
    n = len(audio) // frame
    energy = np.array([np.mean(audio[i * frame : (i + 1) * frame] ** 2) + 1e-12 for i in range(n)])
    db = 10 * np.log10(energy / energy.max())
    voiced = np.nonzero(db > floor_db)[0]
    return voiced[0] * frame / RATE, (voiced[-1] + 1) * frame / RATE


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
