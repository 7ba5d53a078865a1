"""A whole recording transcribed through the daemon's declared commands (the batch APIs' one engine path).

The OpenAI, Deepgram and Symbl Async gateways all answer "here is a file, give me its words": each
decodes the upload here (libsndfile: WAV, FLAC, OGG, MP3, ...; resampled to 16 kHz mono), starts a
daemon connection with a ``push`` source, feeds it with ``send_audio`` (retrying ``busy`` while the
engine is behind, as any pushing client must), ends the audio and reads the connection's events
until ``conversation_completed``. So every recording is an ordinary connection: visible in
``symblctl status``/``conversations``, journaled, readable through the Conversation API.

Blocking (a ``symblctl.Client`` per call): the aiohttp gateways run :func:`transcribe` on a thread.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import soundfile as sf
import soxr

from symblctl.client import DaemonError
from symbld.audio.convert import f32_to_pcm16

RATE = 16000
CHUNK_BYTES = RATE * 2  # one second per send_audio frame (the control socket takes frames up to 1 MiB)
BUSY_BACKOFF = (0.05, 0.5)  # seconds: first and longest wait before resending a frame refused as busy


class BadAudio(ValueError):
    """The upload is not audio libsndfile can read (the message says why)."""


class TranscriptionFailed(RuntimeError):
    """The daemon refused or failed the connection; ``code`` is its error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Word:
    word: str
    start: float  # seconds from the start of the recording
    end: float


@dataclass
class Segment:
    """One finished sentence (a ``message_response`` message)."""

    text: str
    start: float
    end: float
    words: list[Word] = field(default_factory=list)
    speaker: dict[str, Any] | None = None


@dataclass
class Transcript:
    connection_id: str
    conversation_id: str
    duration: float  # seconds of audio sent
    segments: list[Segment] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text)

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments for w in s.words]


def decode(data: bytes) -> bytes:
    """Any audio file libsndfile reads → 16 kHz mono LINEAR16; raises BadAudio."""
    if not data:
        raise BadAudio("the audio file is empty")
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise BadAudio(f"not a readable audio file ({e})") from None
    if not 4000 <= rate <= 384_000:
        raise BadAudio(f"the file's header claims {rate} Hz")
    mono = samples.mean(axis=1)
    if rate != RATE:
        mono = soxr.resample(mono, rate, RATE, quality="HQ")
    return f32_to_pcm16(mono)


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def segments_of(message: dict[str, Any]) -> Segment:
    """A ``message_response`` message as a segment with times from the start of the recording."""
    dur = message.get("duration") or {}
    start = float(dur.get("timeOffset") or 0.0)
    end = start + float(dur.get("duration") or 0.0)
    words: list[Word] = []
    raw = (message.get("metadata") or {}).get("words")
    try:
        listed = json.loads(raw) if isinstance(raw, str) else []
        origin = _seconds(dur["startTime"]) if dur.get("startTime") else None
    except (ValueError, KeyError):
        listed, origin = [], None
    if origin is not None:  # word times are placed from the message's startTime
        for w in listed:
            try:
                words.append(Word(str(w["word"]), round(start + _seconds(w["startTime"]) - origin, 3),
                                  round(start + _seconds(w["endTime"]) - origin, 3)))
            except (KeyError, ValueError, TypeError):
                continue
    speaker = message.get("from") or None
    return Segment(str((message.get("payload") or {}).get("content") or ""), round(start, 3), round(end, 3),
                   words, speaker)


def transcribe(client_factory: Callable[[], Any], pcm: bytes, *, engine: str | None = None,
               config: dict[str, Any] | None = None, start_args: dict[str, Any] | None = None,
               on_segment: Callable[[Segment], None] | None = None,
               on_started: Callable[[dict[str, Any]], None] | None = None, timeout: float = 600.0) -> Transcript:
    """Run ``pcm`` (16 kHz LINEAR16) through a new daemon connection; its finished sentences in order.

    ``on_started`` gets the started connection (before any audio), ``on_segment`` each sentence as
    the engine finishes it (streamed responses). Raises TranscriptionFailed with the daemon's code.
    """
    client = client_factory()
    try:
        args: dict[str, Any] = {"source": {"type": "push", "sampleRate": RATE}, **(start_args or {})}
        if engine:
            args["engine"] = engine
        if config:
            args["config"] = config
        try:
            conn = client.start(**args)
        except DaemonError as e:
            raise TranscriptionFailed(e.code, e.message) from None
        cid = str(conn["connectionId"])
        if on_started is not None:
            on_started(conn)
        stream = client.events(cid, types=["message_response", "connection_failed"], after_seq=0)
        try:
            return _collect(client, stream, conn, pcm, on_segment, timeout)
        except BaseException:
            # Failed or timed out midway: the connection must not stay live waiting for audio.
            with contextlib.suppress(Exception):
                client.stop(cid)
            raise
        finally:
            stream.close()
    finally:
        client.close()


def _collect(client: Any, stream: Any, conn: dict[str, Any], pcm: bytes,
             on_segment: Callable[[Segment], None] | None, timeout: float) -> Transcript:
    """Feed the audio, then the connection's sentences until it completes."""
    cid = str(conn["connectionId"])
    _feed(client, cid, pcm)
    out = Transcript(cid, str(conn.get("conversationId") or ""), round(len(pcm) / (2 * RATE), 3))
    deadline = time.monotonic() + timeout
    while True:
        event = stream.get(timeout=max(0.0, deadline - time.monotonic()))
        if event is None:
            if stream.completed:
                return out
            raise TranscriptionFailed("timeout", f"no result within {timeout:.0f} s")
        if event["type"] == "connection_failed":
            err = (event.get("data") or {}).get("error") or {}
            raise TranscriptionFailed(str(err.get("code") or "internal"), str(err.get("message") or "failed"))
        if event["type"] == "conversation_completed":
            return out
        for message in (event.get("data") or {}).get("messages") or []:
            segment = segments_of(message)
            out.segments.append(segment)
            if on_segment is not None:
                on_segment(segment)


def _feed(client: Any, cid: str, pcm: bytes) -> None:
    """All of ``pcm`` in one-second frames, then the end of the audio; ``busy`` is waited out."""
    for i in range(0, len(pcm), CHUNK_BYTES):
        wait = BUSY_BACKOFF[0]
        while True:
            try:
                client.send_audio(cid, pcm[i:i + CHUNK_BYTES], RATE)
                break
            except DaemonError as e:
                if e.code != "busy":
                    raise TranscriptionFailed(e.code, e.message) from None
                time.sleep(wait)  # the engine is behind: the push queue drains at decode speed
                wait = min(wait * 2, BUSY_BACKOFF[1])
    try:
        client.end_audio(cid)
    except DaemonError as e:
        raise TranscriptionFailed(e.code, e.message) from None
