"""Known speech for tests: espeak-ng sentences as 16 kHz mono s16le WAV, plus WER scoring.

    from tests.speechgen import synth, pcm16, wer, SENTENCES
    wav = synth("Can you send me the quarterly report before Friday?")   # cached Path
    pcm = pcm16(wav)                                                  # raw s16le bytes
    assert wer(SENTENCES[0], hypothesis) <= 0.15

Files carry 0.3 s of silence at each end (like a VAD pre-/post-roll) and are cached by
(text, voice, speed) under ``$SYMBLD_SPEECH_CACHE`` or the system temp dir, so repeated runs
and several test modules synthesise each sentence once.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import jiwer
import numpy as np

RATE = 16000

# The meeting sentences from shared/research/asr-engines.md (section 2), as espeak-ng's default voice says
# them at 160 wpm. Tests assert their words, so every one is heard without error by tiny.en in every variant
# tests/test_fixture_margin.py decodes; seven of the originals were not, and were replaced (2026-12-07) by
# sentences with the same roles: "by Friday" (heard "high/on Friday") -> "before Friday" (still a due
# date), "Does anyone" -> "Do you have any", "to March" (heard "tomorrow") -> "to next month", "review"
# (heard "remove") -> "read", "this quarter" -> "this year", "product demo" (heard "them") -> "product launch",
# "billing" (heard "million") -> "login".
SENTENCES = [
    "Can you send me the quarterly report before Friday?",
    "I will follow up with the design team tomorrow.",
    "Let us schedule a meeting next week to discuss the budget.",
    "What is the status of the marketing campaign?",
    "We need to hire two more engineers before the end of the month.",
    "Please share the slides with everyone after the call.",
    "Do you have any questions about the new pricing model?",
    "I think we should move the launch date to next month.",
    "John will read the contract and get back to us on Monday.",
    "The customer reported a problem with the login page.",
    "Could you update the project plan in the shared folder?",
    "Our sales numbers grew by ten percent this year.",
    "Let me check with the legal team and follow up by email.",
    "We agreed to postpone the product launch until next Thursday.",
    "How long will it take to fix the login issue?",
]


# The voice the telephone tests speak in. Through G.711 at 8 kHz, espeak's default voice saying
# "Can you send me the quarterly report by Friday?" sits at the edge of what tiny.en hears: the
# plain model decodes the whole clip as "Can you hand me ...", and the engine's decode of it moved
# from 0 to 4 errors in 9 words with 0.25 s more or less lead-in or a 16 s instead of a 30 s
# encoder window, so the call tests failed on the model's limit rather than on the call path.
# In the f3 variant the plain model and every window (16, 30 s) and lead-in (0-1 s) tried made at
# most one error (measured 2026-12-02). Other sentences fare differently (f3 is worse on
# SENTENCES[2]), so this voice goes with this sentence only.
PHONE_SENTENCE = "Can you send me the quarterly report by Friday?"
PHONE_VOICE = "en-us+f3"
# What a test may assert was heard of PHONE_SENTENCE through G.711: the telephone band (300-3400 Hz)
# takes the /s/ of "send" (its energy is above 4 kHz), so tiny.en hears "end", and "quarterly" came
# out as "accordingly" or "importantly" in some of the variants tests/test_fixture_margin.py decodes
# (int8/float32, beam 1/5, lead-in +-0.25 s). These two words came through in every one of them.
PHONE_KEY_WORDS = ("report", "friday")
# The same for SENTENCES[i] resampled to 8 kHz and back (the daemon's 8 kHz push path): every variant
# kept these, in this order ("report", "the design team" and "by" did not survive all of them).
EIGHT_KHZ_WORDS = {0: ("quarterly", "friday"), 1: ("follow", "up", "tomorrow")}


def in_order(words: tuple[str, ...] | list[str], heard: str) -> bool:
    """``words`` all occur in ``heard`` (normalised), in this order (other words may come between)."""
    rest = iter(normalise(heard).split())
    return all(any(w == h for h in rest) for w in words)


def phone_audio(dest: Path, encoding: str = "mu-law", text: str = PHONE_SENTENCE, voice: str = PHONE_VOICE) -> Path:
    """``text`` (PHONE_SENTENCE in PHONE_VOICE unless told) as headerless 8 kHz G.711 (``mu-law`` or
    ``a-law``, what sipp streams) at ``dest``."""
    # -D: no dither. sox dithers with a new random seed on every run, so each call made different G.711 (a
    # margin check of the same sentence passed one run and failed the next).
    subprocess.run(["sox", "-D", str(synth(text, voice=voice)), "-r", "8000", "-c", "1", "-e", encoding,
                    "-t", "raw", str(dest)], check=True, capture_output=True, timeout=60)
    return dest


def cache_dir() -> Path:
    d = Path(os.environ.get("SYMBLD_SPEECH_CACHE") or Path(tempfile.gettempdir()) / "symbld-speech")
    d.mkdir(parents=True, exist_ok=True)
    return d


def synth(text: str, voice: str = "en-us", speed: int = 160, pad: float = 0.3) -> Path:
    """Speak ``text`` with espeak-ng, convert with sox to 16 kHz mono s16le WAV; return its path."""
    key = hashlib.sha256(f"nodither|{voice}|{speed}|{pad}|{text}".encode()).hexdigest()[:16]
    out = cache_dir() / f"{key}.wav"
    if out.exists():
        return out
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed (apt-get install espeak-ng sox)")
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        raw = Path(tmp) / "espeak.wav"
        conv = Path(tmp) / "out.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text],
            check=True,
            capture_output=True,
            timeout=60,
        )
        subprocess.run(
            [
                "sox",
                # -D: no dither. sox dithers with a new random seed on every run, so every machine (and every
                # empty cache) would make a slightly different fixture, and the margin check would vouch for
                # audio no other machine hears.
                "-D",
                str(raw),
                "-r",
                str(RATE),
                "-c",
                "1",
                "-b",
                "16",
                "-e",
                "signed-integer",
                str(conv),
                "pad",
                str(pad),
                str(pad),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        os.replace(conv, out)  # atomic: concurrent test processes never see half a file
    return out


def pcm16(path: Path | str) -> bytes:
    """The raw 16 kHz mono s16le frames of a WAV written by :func:`synth`."""
    with wave.open(str(path), "rb") as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (RATE, 1, 2):
            raise ValueError(f"{path}: not 16 kHz mono 16-bit")
        return w.readframes(w.getnframes())


def wav_file(path: Path, pcm: bytes, rate: int = RATE, channels: int = 1) -> Path:
    """Write s16le frames as a WAV file, as an application would upload or open it (the inverse of pcm16)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


def silence(seconds: float) -> bytes:
    return bytes(2 * int(RATE * seconds))


def white_noise(seconds: float, rms: float = 0.05, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(RATE * seconds)) * rms
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_CONTRACTIONS = {
    "let's": "let us",
    "i'll": "i will",
    "we'll": "we will",
    "it's": "it is",
    "what's": "what is",
    "mr": "mister",
    "metres": "meters",
}


def _number(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + _number(n % 100))
    if n < 1_000_000:
        return _number(n // 1000) + " thousand" + ("" if n % 1000 == 0 else " " + _number(n % 1000))
    return str(n)


def normalise(text: str) -> str:
    """Lower case, digits to words ("$40,000" to "forty thousand dollars", "10%" to "ten percent"),
    contractions expanded, punctuation dropped."""
    t = text.lower().replace("%", " percent")
    t = re.sub(r"(?<=\d),(?=\d{3}\b)", "", t)  # 40,000 -> 40000
    t = re.sub(r"\$(\d+)", r"\1 dollars", t)  # $40000 -> 40000 dollars (Whisper writes amounts so)
    t = re.sub(r"\b([ap])\.\s?m\b\.?", r"\1m", t)  # p.m. and pm alike
    t = re.sub(r"\d+", lambda m: " " + _number(int(m.group())) + " ", t)
    t = t.replace("-", " ")
    t = re.sub(r"[^\w\s']", " ", t)
    words = [_CONTRACTIONS.get(w, w) for w in t.split()]
    return " ".join(words)


def wer(reference: str | list[str], hypothesis: str | list[str]) -> float:
    """Word error rate after :func:`normalise`; lists are scored at corpus level."""
    refs = [reference] if isinstance(reference, str) else list(reference)
    hyps = [hypothesis] if isinstance(hypothesis, str) else list(hypothesis)
    refs_n = [normalise(r) for r in refs]
    hyps_n = [normalise(h) for h in hyps]
    if not any(refs_n):
        raise ValueError("empty reference")
    return float(jiwer.wer(refs_n, hyps_n))
