"""Deepgram's listen v1 message and response shapes, built from the daemon's Symbl-shaped events.

Word confidences: the daemon's events carry none, so ``confidence`` is ``null`` (never a made-up
figure). Speakers: with ``diarize=true`` every word gets the speaker index the daemon attributed
(0 while it does not tell speakers apart within one connection).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from aiohttp import web

from symbld.gateways.recording import Segment, Transcript, Word

MODEL_INFO = {"name": "symbld-local", "version": "1", "arch": "whisper"}
MODEL_UUID = "00000000-0000-0000-0000-73796d626c64"  # fixed: symbld serves one model family here


class DeepgramError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message

    def response(self, request_id: str = "") -> web.Response:
        return web.json_response(error(self.status, self.message, request_id), status=self.status)


class Options:
    """The query parameters both endpoints read (everything else is accepted and ignored)."""

    def __init__(self, query: Any) -> None:
        self.punctuate = _flag(query, "punctuate") or _flag(query, "smart_format")
        self.diarize = _flag(query, "diarize")
        self.utterances = _flag(query, "utterances")
        self.interim_results = _flag(query, "interim_results")
        self.vad_events = _flag(query, "vad_events")
        self.model = str(query.get("model") or "nova-3")[:64]
        self.language = query.get("language")
        self.keyterms = [k[:100] for k in query.getall("keyterm", [])][:100] if hasattr(query, "getall") else []
        self.utterance_end_ms = query.get("utterance_end_ms")

    def start_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if self.language:
            code = str(self.language)
            args["config"] = {"languageCode": "en-US" if code.lower() == "en" else code}
        if self.keyterms:
            args["customVocabulary"] = self.keyterms
        return args


def _flag(query: Any, name: str) -> bool:
    return str(query.get(name, "false")).lower() == "true"


def bare(word: str) -> str:
    """Deepgram's ``word``: lower case without punctuation (``punctuated_word`` keeps it)."""
    return re.sub(r"[^\w'-]", "", word.lower())


def word(w: Word, opts: Options, speaker: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {"word": bare(w.word), "start": w.start, "end": w.end, "confidence": None}
    if opts.punctuate:
        out["punctuated_word"] = w.word
    if opts.diarize:
        out["speaker"] = speaker
    return out


def text(segment_text: str, opts: Options) -> str:
    return segment_text if opts.punctuate else " ".join(bare(w) for w in segment_text.split())


def prerecorded(t: Transcript, opts: Options, sha256: str) -> dict[str, Any]:
    """The pre-recorded response: one channel, one alternative; ``utterances`` when asked."""
    alternative = {"transcript": text(t.text, opts), "confidence": None,
                   "words": [word(w, opts) for w in t.words]}
    results: dict[str, Any] = {"channels": [{"alternatives": [alternative]}]}
    if opts.utterances:
        results["utterances"] = [utterance(s, i, opts) for i, s in enumerate(t.segments)]
    return {"metadata": metadata(t.connection_id, t.duration, sha256, opts), "results": results}


def utterance(s: Segment, i: int, opts: Options) -> dict[str, Any]:
    return {"start": s.start, "end": s.end, "confidence": None, "channel": 0, "transcript": text(s.text, opts),
            "words": [word(w, opts) for w in s.words], "id": f"{i}", **({"speaker": 0} if opts.diarize else {})}


def metadata(request_id: str, duration: float, sha256: str, opts: Options) -> dict[str, Any]:
    return {"transaction_key": "deprecated", "request_id": request_id, "sha256": sha256,
            "created": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"), "duration": duration,
            "channels": 1, "models": [MODEL_UUID], "model_info": {MODEL_UUID: {**MODEL_INFO, "name": opts.model}}}


def results(request_id: str, transcript: str, words: list[dict[str, Any]], start: float, duration: float, *,
            is_final: bool, speech_final: bool, opts: Options, from_finalize: bool = False) -> dict[str, Any]:
    return {"type": "Results", "channel_index": [0, 1], "duration": round(duration, 3), "start": round(start, 3),
            "is_final": is_final, "speech_final": speech_final, "from_finalize": from_finalize,
            "channel": {"alternatives": [{"transcript": transcript, "confidence": None, "words": words}]},
            "metadata": {"request_id": request_id, "model_info": {**MODEL_INFO, "name": opts.model},
                         "model_uuid": MODEL_UUID}}


def error(status: int, message: str, request_id: str = "") -> dict[str, Any]:
    """Deepgram's REST error body."""
    codes = {400: "Bad Request", 401: "INVALID_AUTH", 402: "ASR_PAYMENT_REQUIRED", 413: "PAYLOAD_TOO_LARGE",
             415: "UNSUPPORTED_MEDIA_TYPE", 429: "TOO_MANY_REQUESTS", 503: "SERVICE_UNAVAILABLE"}
    return {"err_code": codes.get(status, "INTERNAL_SERVER_ERROR"), "err_msg": message, "request_id": request_id}
