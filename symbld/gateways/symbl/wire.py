"""Symbl frames ↔ symbld events, both directions.

Our events already carry Symbl's payloads (``docs/events.md``); the differences are only in
framing:

- our ``transcript_response`` (``payload.content``, ``punctuated``, ``duration``) is sent on the
  streaming socket as a *wrapped* ``recognition_result`` (``payload.raw.alternatives[0]`` with
  protobuf-style ``{seconds, nanos}`` word times), and on the telephony subscribe socket as a
  top-level ``transcript_response``;
- ``message_response`` / ``insight_response`` / ``topic_response`` / ``tracker_response`` are
  top-level frames on both sockets and pass through unchanged;
- system messages (``conversation_created`` … ``conversation_completed``) are wrapped frames the
  server makes itself.

A ``recognition_result`` made here also carries our ``id`` and ``duration`` inside ``message``
(clients ignore unknown fields), so the round trip our event → frame → our event is lossless.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from typing import Any

from symbld import shapes

RESULT_TYPES = ("message_response", "insight_response", "topic_response", "tracker_response", "entity_response")
PING = "__PING__"
PONG = "__PONG__"
DEFAULT_CONFIDENCE = 0.9  # our engine does not score whole transcripts; Symbl clients expect a number


def object_field(obj: dict[str, Any], key: str) -> dict[str, Any]:
    """``obj[key]`` when it is a JSON object, else an empty one (clients send ``{}``, ``null`` or nothing alike)."""
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


# ---------------------------------------------------------------- server → client frames


def wrapped(subtype: str, **fields: Any) -> dict[str, Any]:
    return {"type": "message", "message": {"type": subtype, **fields}}


def conversation_created(conversation_id: str) -> dict[str, Any]:
    return wrapped("conversation_created", data={"conversationId": conversation_id})


def started_listening() -> dict[str, Any]:
    return wrapped("started_listening")


def recognition_started(conversation_id: str) -> dict[str, Any]:
    return wrapped("recognition_started", data={"conversationId": conversation_id})


def recognition_stopped() -> dict[str, Any]:
    return wrapped("recognition_stopped")


def conversation_completed(conversation_id: str, summary_url: str) -> dict[str, Any]:
    # Both shapes clients read: Web SDK docs (top-level) and Go SDK (data.conversationId).
    return wrapped(
        "conversation_completed",
        conversationId=conversation_id,
        data={"conversationId": conversation_id},
        summaryUrl=summary_url,
    )


def session_modified(speech_recognition: dict[str, Any]) -> dict[str, Any]:
    return wrapped("session_modified", data={"speechRecognition": speech_recognition})


def error_frame(message: str, details: str = "") -> dict[str, Any]:
    return {"type": "error", "message": message, "details": details or message}


def _pb_duration(seconds: float) -> dict[str, str]:
    """protobuf Duration with string fields, as Symbl writes word times."""
    seconds = max(0.0, seconds)
    whole = int(seconds)
    return {"seconds": str(whole), "nanos": str(round((seconds - whole) * 1e9))}


def _raw_words(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Word list for ``payload.raw``: the engine's timed words if present, else spread evenly."""
    words = data.get("words")
    if isinstance(words, list) and words and isinstance(words[0], dict) and "start" in words[0]:
        return [
            {"word": w["word"], "startTime": _pb_duration(w["start"]), "endTime": _pb_duration(w["end"])}
            for w in words
        ]
    tokens = str(data.get("payload", {}).get("content", "")).split()
    dur = data.get("duration") or {}
    start = float(dur.get("timeOffset") or 0.0)
    length = float(dur.get("duration") or 0.0)
    step = length / len(tokens) if tokens else 0.0
    return [
        {"word": t, "startTime": _pb_duration(start + i * step), "endTime": _pb_duration(start + (i + 1) * step)}
        for i, t in enumerate(tokens)
    ]


def recognition_result(data: dict[str, Any]) -> dict[str, Any]:
    """Our ``transcript_response`` data → a wrapped ``recognition_result`` frame."""
    content = str(data.get("payload", {}).get("content", ""))
    punctuated = str(data.get("punctuated", {}).get("transcript", content))
    message: dict[str, Any] = {
        "isFinal": bool(data.get("isFinal")),
        "payload": {
            "raw": {
                "alternatives": [
                    {
                        "words": _raw_words(data),
                        "transcript": content,
                        "confidence": data.get("confidence", DEFAULT_CONFIDENCE),
                    }
                ]
            }
        },
        "punctuated": {"transcript": punctuated},
    }
    if data.get("user"):
        message["user"] = data["user"]
    if data.get("id"):
        message["id"] = data["id"]
    if data.get("duration"):
        message["duration"] = data["duration"]
    return {"type": "message", "message": {"type": "recognition_result", **message}}


def event_to_frames(event_type: str, data: dict[str, Any], style: str = "streaming") -> list[dict[str, Any]]:
    """One of our result events → the frames a Symbl client gets.

    ``style`` is ``"streaming"`` (streaming and ``/v1/subscribe`` sockets) or ``"telephony"``
    (``/session/subscribe``, where live text is a top-level ``transcript_response``). Lifecycle
    events map to nothing here: the server sends its own system messages at the right moments.
    """
    if event_type == "transcript_response":
        if style == "telephony":
            return [{**data, "type": "transcript_response"}]
        return [recognition_result(data)]
    if event_type == "message_response":
        return [{**data, "type": event_type, "messages": [_symbl_metadata(m) for m in data.get("messages") or []]}]
    if event_type in RESULT_TYPES:
        return [{**data, "type": event_type}]
    return []


def _symbl_metadata(message: dict[str, Any]) -> dict[str, Any]:
    """Our events carry timezoneOffset as minutes east of UTC; Symbl's (JavaScript's
    getTimezoneOffset) is minutes west, as the client sent it in its start_request."""
    meta = message.get("metadata")
    if not isinstance(meta, dict) or not meta.get("timezoneOffset"):
        return message
    return {**message, "metadata": {**meta, "timezoneOffset": -meta["timezoneOffset"]}}


# ---------------------------------------------------------------- client → server text frames


def parse_client_text(text: str) -> tuple[dict[str, Any] | None, bool]:
    """A client's text frame → (object, conforming).

    Real JSON objects are conforming. The official Python SDK sends its stop as a Python repr
    (``{'type': 'stop_request'}``); that is accepted as non-conforming. Anything else → (None, False).
    """
    try:
        obj = json.loads(text)
        return (obj, True) if isinstance(obj, dict) else (None, False)
    except ValueError:
        pass
    if len(text) > 4096:  # a repr stop is tiny; never literal_eval big inputs
        return None, False
    try:
        obj = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None, False
    return (obj, False) if isinstance(obj, dict) else (None, False)


# ---------------------------------------------------------------- server frames → our events


def _pb_seconds(value: Any) -> float:
    if isinstance(value, dict):
        return float(value.get("seconds") or 0) + float(value.get("nanos") or 0) / 1e9
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


@dataclass
class Mapped:
    """What one server frame means for us."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    system: str | None = None  # wrapped subtype: conversation_created, recognition_stopped, ...
    conversation_id: str | None = None
    error: dict[str, Any] | None = None  # {"message", "details"} of an error frame


class FrameMapper:
    """Turns frames from a Symbl(-compatible) server into our events; one per stream.

    ``started_at`` is the wall clock of our stream's start (absolute times are computed from it
    when a server sends only relative word times, as Symbl does).
    """

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self._utterance_id: str | None = None

    def map_text(self, text: str) -> Mapped:
        if text == PONG:
            return Mapped(system=PONG)
        try:
            frame = json.loads(text)
        except ValueError:
            return Mapped(error={"message": "server sent a non-JSON frame", "details": text[:200]})
        return self.map(frame) if isinstance(frame, dict) else Mapped()

    def map(self, frame: dict[str, Any]) -> Mapped:
        ftype = frame.get("type")
        if ftype == "message" and isinstance(frame.get("message"), dict):
            return self._map_wrapped(frame["message"])
        if ftype == "error":
            return Mapped(error={"message": str(frame.get("message") or "error"),
                                 "details": frame.get("details") or ""})
        if ftype == "transcript_response":
            data = dict(frame)
            data.setdefault("id", self._utterance(bool(frame.get("isFinal"))))
            return Mapped(events=[("transcript_response", data)])
        if ftype in RESULT_TYPES:
            return Mapped(events=[(ftype, dict(frame))])
        return Mapped()

    def _utterance(self, is_final: bool) -> str:
        if self._utterance_id is None:
            self._utterance_id = shapes.new_id()
        uid = self._utterance_id
        if is_final:
            self._utterance_id = None
        return uid

    def _map_wrapped(self, msg: dict[str, Any]) -> Mapped:
        subtype = msg.get("type")
        data = object_field(msg, "data")
        if subtype == "recognition_result":
            return Mapped(events=[("transcript_response", self._transcript(msg))])
        if subtype == "error":
            return Mapped(error={"message": str(msg.get("message") or data.get("message") or "error"),
                                 "details": msg.get("details") or data.get("details") or ""})
        cid = data.get("conversationId") or msg.get("conversationId")
        return Mapped(system=str(subtype), conversation_id=str(cid) if cid else None)

    def _transcript(self, msg: dict[str, Any]) -> dict[str, Any]:
        is_final = bool(msg.get("isFinal"))
        alternatives = (msg.get("payload") or {}).get("raw", {}).get("alternatives") or [{}]
        alt = alternatives[0]
        raw_text = str(alt.get("transcript") or "")
        punctuated = str((msg.get("punctuated") or {}).get("transcript") or raw_text)
        utterance_id = str(msg.get("id") or self._utterance(is_final))
        if msg.get("id") and is_final:
            self._utterance_id = None
        if isinstance(msg.get("duration"), dict):
            duration = msg["duration"]
        else:
            words = alt.get("words") or []
            start = _pb_seconds(words[0].get("startTime")) if words else 0.0
            end = _pb_seconds(words[-1].get("endTime")) if words else start
            duration = shapes.duration(self.started_at, start, max(0.0, end - start))
        data: dict[str, Any] = {
            "type": "transcript_response",
            "id": utterance_id,
            "isFinal": is_final,
            "payload": {"content": shapes.normalise(punctuated or raw_text), "contentType": "text/plain"},
            "punctuated": {"transcript": punctuated},
            "duration": duration,
        }
        if msg.get("user"):
            data["user"] = msg["user"]
        return data
