"""Engine ``symbl``: Symbl's real-time protocol as a client, for any Symbl-compatible endpoint.

Config (``[engines.symbl]``; names and defaults in ``DEFAULTS``): ``base_url``; credentials as
``app_id``/``app_secret``, env ``SYMBL_APP_ID``/``SYMBL_APP_SECRET``, ``credentials_file`` (0600)
or ``$CREDENTIALS_DIRECTORY/symbl-app-secret``; reconnect/backoff bounds; ``buffer_seconds``;
``keepalive_interval``.

Besides the streaming engine this module has the two other client roles of the protocol:
:class:`SymblSubscriber` (listen-only ``/v1/subscribe/{id}`` or ``/session/subscribe/{id}``) and
:class:`TelephonyClient` (``POST /v1/endpoint:connect``).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import msgspec
import structlog
import websocket

from symbld.engines.base import Emit, Engine, EngineError, StreamConfig
from symbld.gateways.symbl import wire
from symbld.gateways.symbl.auth import CredentialsError, TokenClient, load_credentials
from symbld.gateways.symbl.cloud_socket import Retry, connect_websocket, start_request, websocket_url
from symbld.gateways.symbl.stream import SymblStream
from symbld.gateways.symbl.tables import SymblEngineTable

__all__ = ["DEFAULTS", "SymblEngine", "SymblStream", "SymblSubscriber", "TelephonyClient", "start_request"]

log = structlog.get_logger(__name__)

DEFAULTS: dict[str, Any] = msgspec.structs.asdict(SymblEngineTable())  # declared in tables.py


class SymblEngine:
    """Streams each connection to ``base_url``'s ``/v1/streaming/{connectionId}``.

    A fatal error after ``open`` (credentials revoked, endpoint gone past ``reconnect_max_seconds``)
    sets ``stream.error`` and calls ``config.extra["on_fatal"](EngineError)`` when given.
    """

    name = "symbl"
    provides_insights = True  # the remote end sends insight/topic/tracker responses

    def __init__(self, config: dict[str, Any] | None = None, fallback: Engine | None = None) -> None:
        self.options = {**DEFAULTS, **(config or {})}
        self.fallback = fallback  # the offline engine for failover = "local" (the daemon may set it later)
        self._config = config or {}
        self._tokens: TokenClient | None = None
        self._lock = threading.Lock()

    def tokens(self) -> TokenClient:
        """The shared token client (credentials are loaded on first use, not at daemon start)."""
        with self._lock:
            if self._tokens is None:
                try:
                    creds = load_credentials(self._config)
                except CredentialsError as exc:
                    raise EngineError(str(exc), code="engine_error") from exc
                self._tokens = TokenClient(self.options["base_url"], creds,
                                           timeout=float(self.options["connect_timeout"]),
                                           renew_before=float(self.options["token_renew_before"]))
            return self._tokens

    def open(self, config: StreamConfig, emit: Emit) -> SymblStream:
        stream = SymblStream(config, emit, self.tokens(), self.options, self.fallback)
        stream.open()
        return stream

    def subscribe(self, connection_id: str, on_event: Callable[[str, dict[str, Any]], None], *,
                  telephony: bool = False, on_end: Callable[[str], None] | None = None) -> SymblSubscriber:
        """Listen to a remote connection by id (the daemon's ``subscribe`` command)."""
        sub = SymblSubscriber(self.options["base_url"], self.tokens(), connection_id, on_event,
                              telephony=telephony, on_end=on_end,
                              connect_timeout=float(self.options["connect_timeout"]))
        sub.start()
        return sub

    def telephony(self) -> TelephonyClient:
        return TelephonyClient(self.options["base_url"], self.tokens(), timeout=float(self.options["connect_timeout"]))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "base_url": self.options["base_url"], "remote": True,
                "buffer_seconds": self.options["buffer_seconds"]}

    def close(self) -> None:
        pass  # streams own their sockets; nothing shared to release


class SymblSubscriber:
    """Listen-only socket to ``/v1/subscribe/{id}`` (or ``/session/subscribe/{id}``).

    ``on_event(type, data)`` gets our event types (``transcript_response``, ``message_response``,
    …) on the subscriber's thread; ``on_end(reason)`` once when the remote conversation completes
    or the socket closes.
    """

    def __init__(self, base_url: str, tokens: TokenClient, connection_id: str,
                 on_event: Callable[[str, dict[str, Any]], None], *, telephony: bool = False,
                 on_end: Callable[[str], None] | None = None, connect_timeout: float = 10.0) -> None:
        path = "/session/subscribe/" if telephony else "/v1/subscribe/"
        self.url = websocket_url(base_url, path + connection_id)
        self.connection_id = connection_id
        self._tokens = tokens
        self._on_event = on_event
        self._on_end = on_end
        self._timeout = connect_timeout
        self._mapper = wire.FrameMapper(time.time())
        self._ws: websocket.WebSocket | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def start(self) -> None:
        try:
            self._ws = connect_websocket(self.url, self._tokens, self._timeout)
        except Retry as exc:
            raise EngineError(f"cannot subscribe to {self.connection_id}: {exc}") from exc
        self._thread = threading.Thread(target=self._run, name=f"symbl-sub-{self.connection_id[:8]}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        reason = "closed"
        ws = self._ws
        assert ws is not None
        while not self._closed:
            try:
                opcode, data = ws.recv_data()
            except (OSError, websocket.WebSocketException):
                break
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            if opcode != websocket.ABNF.OPCODE_TEXT:
                continue
            mapped = self._mapper.map_text(data.decode("utf-8", "replace"))
            for etype, payload in mapped.events:
                self._on_event(etype, payload)
            if mapped.system == "conversation_completed":
                reason = "completed"
        if self._on_end is not None and not self._closed:
            self._on_end(reason)

    def close(self) -> None:
        self._closed = True
        if self._ws is not None:
            try:
                self._ws.close(timeout=1)
            except Exception:
                log.debug("symbl subscriber close failed", exc_info=True)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)


class TelephonyClient:
    """``POST /v1/endpoint:connect``: start a SIP/PSTN call, stop it (returns the conversationId)."""

    def __init__(self, base_url: str, tokens: TokenClient, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._tokens = tokens
        self._timeout = timeout

    def start_sip(self, uri: str, audio_config: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        endpoint = {"type": "sip", "uri": uri, "audioConfig": audio_config or {"sampleRate": 16000, "sampleSize": "16"}}
        return self._post({"operation": "start", "endpoint": endpoint, **extra})

    def start_pstn(self, phone_number: str, dtmf: str | None = None, **extra: Any) -> dict[str, Any]:
        endpoint = {"type": "pstn", "phoneNumber": phone_number, "dtmf": dtmf}
        return self._post({"operation": "start", "endpoint": endpoint, **extra})

    def stop(self, connection_id: str) -> dict[str, Any]:
        return self._post({"operation": "stop", "connectionId": connection_id})

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(
            self.base_url + "/v1/endpoint:connect", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "x-api-key": self._tokens.get()},
        )
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as resp:
                reply: dict[str, Any] = json.loads(resp.read() or b"{}")
                return reply
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                obj = json.loads(raw)
                message = f"{obj.get('message')}: {obj.get('details')}" if obj.get("details") else obj.get("message")
            except ValueError:
                message = raw[:200].decode("utf-8", "replace")
            raise EngineError(f"telephony {body['operation']} failed: {message}",
                              {"status": exc.code}, code="engine_error") from exc
        except OSError as exc:
            raise EngineError(f"telephony endpoint unreachable: {exc}") from exc
