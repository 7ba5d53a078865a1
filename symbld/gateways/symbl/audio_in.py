"""Audio a Symbl client sends, in the formats Symbl accepts, to the engine's 16 kHz LINEAR16.

LINEAR16 at 8000-48000 Hz is resampled with soxr (``symbld.audio.convert``); MULAW is 8 kHz
G.711 mu-law, expanded to 16-bit first. One ``ClientAudio`` per socket: the resampler keeps its
filter state between chunks, and an odd byte of 16-bit PCM waits for the next chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from symbld.audio import g711
from symbld.audio.convert import StreamResampler

ENCODINGS = ("LINEAR16", "MULAW")
MIN_RATE, MAX_RATE = 8000, 48000


def check_speech(speech: dict[str, Any], current: tuple[str, int] = ("LINEAR16", 16000)) -> str | None:
    """Why ``speechRecognition`` cannot be served, or None."""
    encoding = str(speech.get("encoding") or current[0]).upper()
    if encoding not in ENCODINGS:
        return f"encoding {encoding} is not supported; use LINEAR16 (8000-48000 Hz) or MULAW (8000 Hz)"
    rate = speech.get("sampleRateHertz") or (current[1] if encoding == current[0] else None) \
        or (8000 if encoding == "MULAW" else 16000)
    if not isinstance(rate, int | float) or isinstance(rate, bool):
        return f"sampleRateHertz {rate!r} must be a number"
    if encoding == "MULAW" and rate != 8000:
        return f"sampleRateHertz {rate!r} is not supported for MULAW; use 8000"
    if not MIN_RATE <= rate <= MAX_RATE:
        return f"sampleRateHertz {rate!r} out of range {MIN_RATE}-{MAX_RATE} for LINEAR16"
    return None


def speech_format(speech: dict[str, Any], current: tuple[str, int] = ("LINEAR16", 16000)) -> tuple[str, int]:
    """(encoding, rate) of a ``speechRecognition`` that ``check_speech`` accepted."""
    encoding = str(speech.get("encoding") or current[0]).upper()
    default = current[1] if encoding == current[0] else (8000 if encoding == "MULAW" else 16000)
    return encoding, int(speech.get("sampleRateHertz") or default)


@dataclass
class ClientAudio:
    encoding: str = "LINEAR16"
    sample_rate: int = 16000
    carry: bytes = b""
    _resampler: StreamResampler | None = field(default=None, repr=False)

    def set_format(self, encoding: str, sample_rate: int) -> bytes:
        """Switch format for the following audio; returns what the old resampler still held."""
        tail = self.flush()
        self.encoding, self.sample_rate, self.carry = encoding, sample_rate, b""
        self._resampler = None
        return tail

    def decode(self, data: bytes) -> bytes:
        """A client chunk → 16 kHz mono LINEAR16 (may be empty while the resampler fills)."""
        if self.encoding == "MULAW":
            samples = g711.ulaw_to_pcm(data)
        else:
            pcm = self.carry + data
            cut = len(pcm) - len(pcm) % 2
            self.carry, pcm = pcm[cut:], pcm[:cut]
            samples = np.frombuffer(pcm, dtype="<i2")
        if self.sample_rate == 16000 and self.encoding == "LINEAR16":
            return samples.tobytes()
        if self._resampler is None:
            self._resampler = StreamResampler(self.sample_rate)
        return self._resampler.process(samples) if samples.size else b""

    def flush(self) -> bytes:
        if self._resampler is None:
            return b""
        return self._resampler.process(np.zeros(0, dtype=np.int16), last=True)
