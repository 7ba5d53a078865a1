"""Opening a WebSocket to a Symbl(-compatible) streaming endpoint: its URL, the token, the ``start_request``.

What ``stream.SymblStream`` (and ``engine.py``'s check of the endpoint) connect with; a failure is either
fatal (``EngineError``: bad credentials, a refused request) or worth retrying (``Retry``).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import websocket

from symbld.engines.base import EngineError, StreamConfig
from symbld.gateways.symbl.auth import AuthError, TokenClient


class Closable(Protocol):
    """The part of ``websocket.WebSocket`` the sender closes with (websocket-client leaves it unannotated)."""

    def shutdown(self) -> None: ...


class Retry(Exception):
    """A connection failure worth retrying (network error, 5xx, unclean close)."""


def start_request(cfg: StreamConfig) -> dict[str, Any]:
    """Our StreamConfig → Symbl's ``start_request`` (real JSON, Symbl's field names)."""
    config: dict[str, Any] = {
        "confidenceThreshold": cfg.confidence_threshold,
        "languageCode": cfg.language_code,
        "speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": 16000},
    }
    if cfg.meeting_title:
        config["meetingTitle"] = cfg.meeting_title
    if cfg.timezone_offset_minutes is not None:
        config["timezoneOffset"] = -cfg.timezone_offset_minutes  # ours is minutes east; Symbl's, west
    if cfg.tracker_interim_results:
        config["trackers"] = {"interimResults": True}
    req: dict[str, Any] = {"type": "start_request", "insightTypes": list(cfg.insight_types), "config": config}
    if cfg.speaker:
        req["speaker"] = cfg.speaker
    if cfg.trackers:
        req["trackers"] = cfg.trackers
    if cfg.custom_vocabulary:
        req["customVocabulary"] = cfg.custom_vocabulary
    return req


def websocket_url(base_url: str, path: str) -> str:
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://"):]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://"):]
    return base + path


def connect_websocket(url: str, tokens: TokenClient, timeout: float) -> websocket.WebSocket:
    """Open a WebSocket with ``x-api-key``; a refused token is renewed once before giving up.

    Raises EngineError (fatal: bad credentials, bad request) or Retry (worth trying again).
    """
    for attempt in (1, 2):
        try:
            token = tokens.get()
        except AuthError as exc:
            if exc.fatal:
                raise EngineError(exc.message, {"status": exc.status}, code="engine_error") from exc
            raise Retry(exc.message) from exc
        try:
            ws = websocket.create_connection(url, header=[f"x-api-key: {token}"], timeout=timeout,
                                             enable_multithread=True)
            ws.settimeout(None)
            return ws
        except websocket.WebSocketBadStatusException as exc:
            status = exc.status_code
            body = exc.resp_body.decode("utf-8", "replace") if isinstance(exc.resp_body, bytes) else ""
            message = _message_of(body) or f"HTTP {status}"
            if status in (401, 403) and attempt == 1:
                tokens.invalidate()  # e.g. the server restarted with a new signing key
                continue
            if status in (400, 401, 403, 404):
                raise EngineError(f"Symbl endpoint refused the stream: {message}", {"status": status}) from exc
            raise Retry(f"HTTP {status}: {message}") from exc
        except (OSError, websocket.WebSocketException) as exc:
            raise Retry(str(exc) or type(exc).__name__) from exc
    raise EngineError("Symbl endpoint refused the token")


def _message_of(body: str) -> str:
    try:
        obj = json.loads(body)
        return str(obj.get("message") or "")
    except ValueError:
        return body[:200]
