"""symbld.audio.g711, the one G.711 decoder (RTP calls and the Symbl server's MULAW), against the standard
expansion as Python's own audioop computes it (deprecated, still in 3.11/3.12: skipped where it is gone)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from symbld.audio import g711
from symbld.audio.telephony.rtp import PT_PCMA, PT_PCMU, decode_g711

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    audioop = pytest.importorskip("audioop")

EVERY_BYTE = bytes(range(256))


def test_both_laws_expand_every_byte_as_the_standard_does() -> None:
    assert g711.ulaw_to_pcm(EVERY_BYTE).tobytes() == audioop.ulaw2lin(EVERY_BYTE, 2)
    assert g711.alaw_to_pcm(EVERY_BYTE).tobytes() == audioop.alaw2lin(EVERY_BYTE, 2)


def test_rtp_decodes_through_it() -> None:
    assert np.array_equal(decode_g711(EVERY_BYTE, PT_PCMU), g711.ulaw_to_pcm(EVERY_BYTE))
    assert np.array_equal(decode_g711(EVERY_BYTE, PT_PCMA), g711.alaw_to_pcm(EVERY_BYTE))
    assert g711.ULAW_TO_PCM[0xFF] == 0 and g711.ALAW_TO_PCM[0xD5] == 8  # the silence bytes RTP sends
