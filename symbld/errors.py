"""Typed errors: the closed set of codes every failed command reply carries (docs/protocol.md).

The core raises them; the control layer turns them into error replies.
"""

from __future__ import annotations

from typing import Any

# The closed set of error codes, each documented in docs/protocol.md.
ERROR_CODES: dict[str, str] = {
    "bad_json": "the request frame is not UTF-8 JSON, or not a JSON object",
    "bad_request": "a field is missing, of the wrong type or out of range",
    "unsupported_version": "the request's protocol version is newer than this daemon speaks",
    "unknown_command": "no command of that name",
    "unknown_connection": "no connection with that id",
    "invalid_state": "the connection is not in a state that allows this (e.g. already stopped)",
    "too_large": "a frame or the request is over its size limit",
    "limit_exceeded": "a configured limit (connections, subscribers, calls) was reached",
    "device_unavailable": "the audio device, audio server or PortAudio library is missing",
    "engine_error": "the engine failed or refused the stream (model missing, remote refused, bad credentials)",
    "busy": "the daemon cannot take this now (audio queue full, shutting down); retry later",
    "internal": "a bug in symbld; the daemon keeps running and logged the traceback",
}


class ControlError(Exception):
    """An error that becomes a typed error reply."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"undocumented error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}

    @classmethod
    def from_error(cls, error: Any, fallback: str) -> ControlError:
        """A source's or engine's error as a reply: its code when documented here, else ``fallback``."""
        code = getattr(error, "code", "")
        return cls(code if code in ERROR_CODES else fallback, getattr(error, "message", str(error)),
                   getattr(error, "details", None))

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}
