"""A transcript in OpenAI's ``response_format``s: json, text, srt, vtt, verbose_json."""

from __future__ import annotations

from typing import Any

from symbld.gateways.recording import Transcript

FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("word", "segment")


def _clock(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def srt(t: Transcript) -> str:
    return "".join(f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text}\n\n"
                   for i, s in enumerate(t.segments, 1))


def vtt(t: Transcript) -> str:
    return "WEBVTT\n\n" + "".join(f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text}\n\n" for s in t.segments)


def verbose_json(t: Transcript, language: str, granularities: list[str], task: str = "transcribe") -> dict[str, Any]:
    """Whisper's verbose shape. Fields the engine has no figure for (token ids, log-probabilities,
    compression ratio, no-speech probability) are left out rather than invented."""
    out: dict[str, Any] = {"task": task, "language": language, "duration": t.duration, "text": t.text,
                           "usage": {"type": "duration", "seconds": t.duration}}
    if "segment" in granularities or not granularities:
        out["segments"] = [{"id": i, "seek": 0, "start": s.start, "end": s.end, "text": s.text, "tokens": [],
                            "temperature": 0.0} for i, s in enumerate(t.segments)]
    if "word" in granularities:
        out["words"] = [{"word": w.word, "start": w.start, "end": w.end} for w in t.words]
    return out


def render(t: Transcript, response_format: str, language: str, granularities: list[str],
           task: str = "transcribe") -> tuple[Any, str]:
    """(body, content type) for a finished transcript."""
    if response_format == "text":
        return t.text + "\n", "text/plain"
    if response_format == "srt":
        return srt(t), "application/x-subrip"
    if response_format == "vtt":
        return vtt(t), "text/vtt"
    if response_format == "verbose_json":
        return verbose_json(t, language, granularities, task), "application/json"
    return {"text": t.text, "usage": {"type": "duration", "seconds": t.duration}}, "application/json"
