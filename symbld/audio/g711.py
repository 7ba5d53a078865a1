"""G.711 (µ-law and A-law) to 16-bit PCM: one 256-entry table per law, one lookup per byte.

Shared by the RTP calls (``audio/telephony``: PCMU/PCMA payloads) and the Symbl server (``MULAW`` client
audio). ``audioop`` did this, but it is deprecated and gone in Python 3.13.
"""

from __future__ import annotations

import numpy as np

RATE = 8000  # G.711 is 8 kHz audio


def _ulaw_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exp = (u >> 4) & 0x07
    val = ((((u & 0x0F) << 3) + 0x84) << exp) - 0x84
    return np.where(u & 0x80, -val, val).astype(np.int16)


def _alaw_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    exp = (a >> 4) & 0x07
    mant = a & 0x0F
    mag = np.where(exp == 0, (mant << 4) + 8, ((mant << 4) + 0x108) << np.maximum(exp - 1, 0))
    return np.where(a & 0x80, mag, -mag).astype(np.int16)


ULAW_TO_PCM = _ulaw_table()
ALAW_TO_PCM = _alaw_table()


def ulaw_to_pcm(data: bytes) -> np.ndarray:
    """µ-law bytes to int16 samples."""
    return ULAW_TO_PCM[np.frombuffer(data, dtype=np.uint8)]


def alaw_to_pcm(data: bytes) -> np.ndarray:
    """A-law bytes to int16 samples."""
    return ALAW_TO_PCM[np.frombuffer(data, dtype=np.uint8)]
