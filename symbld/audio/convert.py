"""PCM conversion shared by the sources: any rate/channels/dtype to 16 kHz mono int16."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr

from symbld.audio.base import SAMPLE_RATE


def to_mono_f32(samples: np.ndarray) -> np.ndarray:
    """(frames,) or (frames, channels) of any numeric dtype → mono float32 in [-1, 1]."""
    if samples.dtype == np.int16:
        samples = samples.astype(np.float32) / 32768.0
    elif samples.dtype == np.int32:
        samples = samples.astype(np.float32) / 2147483648.0
    else:
        samples = samples.astype(np.float32, copy=False)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    return samples


def f32_to_pcm16(samples: npt.NDArray[np.float32]) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class StreamResampler:
    """Streaming resampler to 16 kHz (soxr keeps filter state between chunks)."""

    def __init__(self, in_rate: int, channels: int = 1) -> None:
        self.in_rate = in_rate
        self.channels = channels
        self._rs = None if in_rate == SAMPLE_RATE else soxr.ResampleStream(in_rate, SAMPLE_RATE, 1, dtype="float32")

    def process(self, samples: np.ndarray, last: bool = False) -> bytes:
        mono = to_mono_f32(samples)
        if self._rs is not None:
            mono = self._rs.resample_chunk(mono, last=last)
        return f32_to_pcm16(mono)
