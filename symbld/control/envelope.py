"""Control protocol v1: the request/reply envelope and its typed errors.

A request is one frame of UTF-8 JSON, optionally followed by one binary frame (the audio of
``send_audio``)::

    {"v": 1, "id": "<request id>", "cmd": "start", "args": {...}}

A reply is one frame::

    {"v": 1, "id": "<same id>", "ok": true, "result": {...}}
    {"v": 1, "id": "<same id>", "ok": false, "error": {"code": "...", "message": "...", "details": {...}}}

Unknown fields are allowed everywhere (newer clients talk to older daemons). See
``docs/protocol.md`` for the whole protocol.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from symblctl import protocol
from symbld.errors import ControlError

PROTOCOL_VERSION = 1

MAX_REQUEST_BYTES = 1 << 20  # one JSON frame; larger ones are refused with ``too_large``
MAX_AUDIO_BYTES = protocol.SendAudio.max_payload  # one send_audio frame (32 s of 16 kHz audio)
MAX_JSON_DEPTH = 32

@dataclass
class Request:
    id: str
    cmd: str
    args: dict[str, Any]
    payload: bytes | None = None
    v: int = PROTOCOL_VERSION


def _depth(obj: Any, limit: int) -> int:
    """Nesting depth of a JSON value, stopping early past ``limit``."""
    stack = [(obj, 1)]
    deepest = 0
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(node, dict):
            stack.extend((v, d + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, d + 1) for v in node)
    return deepest


def salvage_id(raw: bytes) -> str:
    """Best-effort request id from a frame we could not accept, so the reply can carry it."""
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return ""
    if isinstance(obj, dict) and isinstance(obj.get("id"), str | int):
        return str(obj["id"])[:200]
    return ""


def _json_object(raw: bytes) -> dict[str, Any]:
    """The request frame as a JSON object within the size and depth limits, or a ControlError."""
    if len(raw) > MAX_REQUEST_BYTES:
        raise ControlError("too_large", f"request frame is {len(raw)} bytes; the limit is {MAX_REQUEST_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ControlError("bad_json", f"request is not UTF-8 (byte {e.start})") from None
    try:
        obj = json.loads(text)
    except RecursionError:
        raise ControlError("bad_json", "request JSON is nested too deeply") from None
    except ValueError as e:
        raise ControlError("bad_json", f"request is not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ControlError("bad_json", f"request must be a JSON object, got {type(obj).__name__}")
    if _depth(obj, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise ControlError("bad_request", f"request JSON is nested deeper than {MAX_JSON_DEPTH}")
    return obj


def parse_request(frames: list[bytes]) -> Request:
    """Decode the frames of one request; raise ControlError for anything malformed."""
    if not frames:
        raise ControlError("bad_json", "empty request: expected one JSON frame")
    if len(frames) > 2:
        raise ControlError("bad_request", f"expected 1 JSON frame (+1 binary frame for send_audio), got {len(frames)}")
    obj = _json_object(frames[0])
    rid = obj.get("id", "")
    if not isinstance(rid, str | int) or isinstance(rid, bool):
        raise ControlError("bad_request", "'id' must be a string")
    v = obj.get("v", PROTOCOL_VERSION)
    if not isinstance(v, int) or isinstance(v, bool):
        raise ControlError("bad_request", "'v' must be an integer")
    if v > PROTOCOL_VERSION:
        raise ControlError(
            "unsupported_version", f"protocol v{v} requested; this daemon speaks v{PROTOCOL_VERSION}",
            {"supported": [PROTOCOL_VERSION]},
        )
    cmd = obj.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        raise ControlError("bad_request", "'cmd' must be a non-empty string")
    args = obj.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ControlError("bad_request", f"'args' must be an object, got {type(args).__name__}")
    payload = frames[1] if len(frames) == 2 else None
    if payload is not None and len(payload) > MAX_AUDIO_BYTES:
        raise ControlError("too_large", f"binary frame is {len(payload)} bytes; the limit is {MAX_AUDIO_BYTES}")
    return Request(id=str(rid), cmd=cmd, args=args, payload=payload, v=v)


def encode_reply(request_id: str, result: dict[str, Any] | None = None, error: ControlError | None = None) -> bytes:
    body: dict[str, Any] = {"v": PROTOCOL_VERSION, "id": request_id}
    if error is None:
        body["ok"] = True
        body["result"] = result if result is not None else {}
    else:
        body["ok"] = False
        body["error"] = error.as_dict()
    return json.dumps(body, separators=(",", ":")).encode()
