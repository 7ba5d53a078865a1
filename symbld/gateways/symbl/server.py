"""A Symbl-compatible real-time server backed by symbld (``symbld --serve-symbl``).

The server is a *client of the daemon*: every streaming socket or telephony call becomes a daemon
connection (``start`` with a push or sip source), audio is forwarded with ``send_audio``, and the
connection's events are read from the daemon's event stream and re-framed for Symbl clients by
``wire``. So connections served here show up on symbld's control/PUB sockets like any other.

Endpoints (spec ``symbl-protocol.md`` §6 numbers in brackets):

- ``POST /oauth2/token:generate`` [1-3]
- WebSocket ``/v1/streaming/{id}``, ``/v1/realtime/insights/{id}`` [4-26]
- WebSocket ``/v1/subscribe/{id}``, ``/session/subscribe/{id}`` [27-28]
- ``POST /v1/endpoint:connect`` [29-31], ``POST /v1/event/{id}`` [32]

Choices where Symbl never said: a bad token is refused at the upgrade with HTTP 401; an unknown
connection id on subscribe is refused with HTTP 404; a binary frame over ``max_chunk_bytes`` is
dropped and answered with an ``error`` frame; bad JSON is answered with an ``error`` frame and the
socket stays open.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import contextlib
import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from aiohttp import WSMsgType, web

from symblctl.client import DaemonError, DaemonUnavailable
from symbld.core import shapes, speakers
from symbld.gateways import apis
from symbld.gateways.symbl import audio_in, wire
from symbld.gateways.symbl.auth import (
    Credentials,
    CredentialsError,
    TokenIssuer,
    generate_app_credentials,
    load_credentials,
)
from symbld.gateways.symbl.conversations import ConversationApi
from symbld.web import symbl_hooks

log = structlog.get_logger(__name__)

CONNECTION_ID = re.compile(r"^[A-Za-z0-9_=+/\-]{6,64}$")
DAEMON_ID = re.compile(r"^[A-Za-z0-9-]{6,64}$")  # what the daemon's start accepts as connectionId
RESULT_EVENTS = {"transcript_response", *wire.RESULT_TYPES}
ENDED_EVENTS = ("connection_stopped", "conversation_completed")
CLOSE_TIMEOUT = 2.0  # seconds to wait for a client's answer to our close frame

DEFAULTS: dict[str, Any] = {
    "token_ttl": 86400,  # seconds, Symbl's default
    "first_frame_delay": 0.3,  # §6.14: the Python SDK subscribes only after start_connection returns
    "no_connection_timeout": 60,  # seconds a dropped connection stays joinable (start_request may override)
    "idle_timeout": 1800,  # seconds without any client frame before the server closes the socket
    "max_chunk_bytes": 8192,  # Symbl's documented audio chunk limit
    "stop_timeout": 60,  # seconds to wait for the daemon to flush finals on stop
    "engine": "local",  # the daemon engine that serves these connections
    "summary_base": "http://127.0.0.1/meeting/#/",
}


class StartFailed(Exception):
    """The daemon would not start a connection; carries the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _daemon_status(exc: Exception) -> int:
    """HTTP status for a daemon error; 501 when the daemon cannot do telephony."""
    if isinstance(exc, DaemonUnavailable):
        return 503
    code = str(getattr(exc, "code", ""))
    text = str(getattr(exc, "message", exc)).lower()
    if code in ("device_unavailable", "unknown_command") or "sip" in text or "telephony" in text:
        return 501
    return {"bad_request": 400, "limit_exceeded": 429, "busy": 503, "unknown_connection": 404}.get(code, 500)


# ---------------------------------------------------------------- conversations


@dataclass
class Leg:
    """One daemon connection of a conversation: one speaker socket's (or a call's).

    Each speaker socket gets its own daemon connection, started with the conversation's
    ``conversationId``: its words carry its own speaker, and the Conversation API finds every leg.
    """

    daemon_id: str
    control: Any  # symblctl Client used only from ``executor``
    executor: concurrent.futures.ThreadPoolExecutor
    attribution: speakers.Attribution
    speaker: dict[str, Any] | None = None  # the start_request's speaker
    socket: web.WebSocketResponse | None = None  # the speaker socket feeding it (None: dropped)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: bool = False
    pump_stop: threading.Event = field(default_factory=threading.Event)
    pump: threading.Thread | None = None
    forwarded: int = 0  # bytes of 16 kHz audio sent: the position speaker events are pinned to

    def same_speaker(self, speaker: dict[str, Any] | None) -> bool:
        def key(s: dict[str, Any] | None) -> tuple[Any, Any]:
            return ((s or {}).get("userId"), (s or {}).get("name"))
        return key(self.speaker) == key(speaker)


@dataclass
class Conversation:
    """One Symbl connection id: its sockets, listeners and the daemon connections behind it."""

    symbl_id: str
    conversation_id: str
    kind: str  # "streaming" | "telephony"
    legs: list[Leg]
    start_args: dict[str, Any] = field(default_factory=dict)  # the first daemon start's, for more legs
    sockets: set[web.WebSocketResponse] = field(default_factory=set)
    subscribers: dict[web.WebSocketResponse, str] = field(default_factory=dict)  # ws → style
    daemon_stopped: asyncio.Event = field(default_factory=asyncio.Event)  # every leg stopped
    orphan_timer: asyncio.TimerHandle | None = None
    stopping: bool = False
    ended: bool = False
    failure: dict[str, Any] | None = None
    no_connection_timeout: float = 60.0
    insight_types: set[str] | None = None  # insight types the clients get; None = all


class SymblServer:
    """The aiohttp application and its state; runs on one event loop."""

    def __init__(self, client_factory: Callable[[], Any], config: dict[str, Any]) -> None:
        self.config = {**DEFAULTS, **config}
        self.credentials = _server_credentials(config)
        secret = config.get("token_secret")
        self.issuer = TokenIssuer(
            self.credentials,
            ttl=float(self.config["token_ttl"]),
            secret=secret.encode() if isinstance(secret, str) else secret,
        )
        self.client_factory = client_factory
        self.conversations: dict[str, Conversation] = {}
        # Ended calls stay answerable: Symbl's docs tell clients to call stop even after the far
        # end hung up, to get the conversationId. Bounded, oldest forgotten first.
        self.ended_calls: collections.OrderedDict[str, Conversation] = collections.OrderedDict()
        self.loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------ app

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_post("/oauth2/token:generate", self.token)
        app.router.add_get("/v1/streaming/{cid:.+}", self.streaming)
        app.router.add_get("/v1/realtime/insights/{cid:.+}", self.streaming)
        app.router.add_get("/v1/subscribe/{cid:.+}", self.subscribe)
        app.router.add_get("/session/subscribe/{cid:.+}", self.subscribe)
        app.router.add_post("/v1/endpoint:connect", self.endpoint_connect)
        app.router.add_post("/v1/event/{cid:.+}", self.speaker_event)
        app.router.add_get("/events/{cid:.+}", self.subscribe)  # the resultWebSocketUrl we hand out
        ConversationApi(self.client_factory, self._rest_authorized).add_routes(app)
        apis.add_routes(app, self.client_factory, self.config, self._rest_authorized)  # OpenAI, ... (gateways/apis.py)
        app.on_shutdown.append(self._shutdown)
        return app

    # ------------------------------------------------------------ auth

    async def token(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _json_error(400, "Invalid request body", "body must be JSON")
        if not isinstance(body, dict) or body.get("type") != "application":
            return _json_error(400, "Invalid grant type", "type must be 'application'")
        if not self.issuer.check(body.get("appId"), body.get("appSecret")):
            log.info("symbl token refused", app_id=str(body.get("appId"))[:64])
            return _json_error(401, "Combination of appId and appSecret is not valid.", "Unauthorized")
        token, expires_in = self.issuer.issue()
        return web.json_response({"accessToken": token, "expiresIn": expires_in})

    def _rest_authorized(self, request: web.Request) -> bool:
        token = request.headers.get("x-api-key")
        auth = request.headers.get("Authorization", "")
        if not token and auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        return self.issuer.validate(token)

    def _token_of(self, request: web.Request) -> tuple[str | None, str | None]:
        """(valid token or None, subprotocol to echo or None).

        A client that offers subprotocols (the JS SDK offers the token as one *and* sends it as
        ``X-API-KEY``) fails the handshake unless one is echoed: the one that carried a valid
        token, else the first offered.
        """
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        for proto in offered:
            if self.issuer.validate(proto):
                return proto, proto
        candidates: list[str] = []
        if request.headers.get("x-api-key"):
            candidates.append(request.headers["x-api-key"])
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            candidates.append(auth[7:].strip())
        if request.query.get("access_token"):
            candidates.append(request.query["access_token"])
        for token in candidates:
            if self.issuer.validate(token):
                return token, (offered[0] if offered else None)
        return None, None

    # ------------------------------------------------------------ streaming

    async def streaming(self, request: web.Request) -> web.StreamResponse:
        cid = request.match_info["cid"]
        token, proto = self._token_of(request)
        if token is None:
            return _json_error(401, "Token validation failed for provided token.", "Unauthorized")
        if not CONNECTION_ID.match(cid):
            return _json_error(400, "Invalid connectionId", "connectionId must match [A-Za-z0-9_=+/-]{6,64}")
        ws = web.WebSocketResponse(protocols=(proto,) if proto else (), max_msg_size=1 << 20,
                                   timeout=CLOSE_TIMEOUT)
        await ws.prepare(request)
        log.info("symbl stream opened", connection_id=cid, path=request.path)
        sock = _Socket(ws, cid)
        try:
            await self._stream_loop(sock)
        except ConnectionResetError:
            pass
        finally:
            if sock.conv is not None:
                self._detach(sock.conv, ws)
            if not ws.closed:
                await ws.close()
            log.info("symbl stream closed", connection_id=cid, code=ws.close_code)
        return ws

    async def _stream_loop(self, sock: _Socket) -> None:
        """Frames of one speaker socket until it closes, stops or idles out."""
        ws = sock.ws
        while True:
            try:
                msg = await ws.receive(timeout=float(self.config["idle_timeout"]))
            except TimeoutError:
                await ws.send_json(wire.error_frame("Idle timeout", "no frames for too long"))
                return
            if msg.type == WSMsgType.BINARY:
                if sock.conv is not None and not sock.conv.ended and sock.stop_task is None:
                    await self._audio(sock, msg.data)
                else:
                    log.debug("symbl audio before start_request ignored", bytes=len(msg.data))
                continue
            if msg.type != WSMsgType.TEXT:
                return  # close, closing, error
            if msg.data == wire.PING:
                await ws.send_str(wire.PONG)
                continue
            obj, conforming = wire.parse_client_text(msg.data)
            if obj is None:
                await ws.send_json(wire.error_frame("Invalid JSON", "text frames must be JSON objects"))
                continue
            if not conforming:
                log.info("symbl non-JSON control frame accepted", connection_id=sock.cid, type=obj.get("type"))
            if not await self._control_frame(sock, obj):
                return

    async def _control_frame(self, sock: _Socket, obj: dict[str, Any]) -> bool:
        """One JSON frame from a speaker socket; False when the socket is done."""
        ws, conv, mtype = sock.ws, sock.conv, obj.get("type")
        if mtype == "start_request":
            if conv is not None and not conv.ended:
                await ws.send_json(wire.error_frame("Already started", "send stop_request first"))
                return True
            config = obj.get("config") if isinstance(obj.get("config"), dict) else {}
            speech = config.get("speechRecognition") if isinstance(config.get("speechRecognition"), dict) else {}
            problem = audio_in.check_speech(speech)
            if problem:  # the socket stays open: the client may send a start_request we can serve
                await ws.send_json(wire.error_frame("Invalid start_request", problem))
                return True
            sock.conv = await self._start_streaming(ws, sock.cid, obj, sock)
            return sock.conv is not None
        if mtype == "stop_request":
            if conv is None or conv.ended:
                await ws.send_json(wire.error_frame("Not started", "stop_request before start_request"))
                return True
            if sock.stop_task is not None:
                return True  # already stopping
            await self._forward(sock, sock.audio.flush())
            if sock.leg is not None and any(ws is not sock.ws for ws in conv.sockets):
                stopping = self._stop_leg(conv, sock.leg)  # the other speakers go on
            else:
                stopping = self._stop(conv)
            # The daemon may take seconds to flush finals: the loop goes on reading meanwhile, so
            # the client's __PING__ is answered (else its keep-alive declares the socket dead and
            # reconnects). Completion closes the socket, which ends the loop.
            sock.stop_task = asyncio.ensure_future(self._carry_out_stop(sock, stopping))
            return True
        if mtype == "modify_request":
            await self._modify(sock, obj)
            return True
        await ws.send_json(wire.error_frame("Unknown message type", f"type {mtype!r} not supported"))
        return True

    @staticmethod
    async def _carry_out_stop(sock: _Socket, stopping: Coroutine[Any, Any, None]) -> None:
        try:
            await stopping
        except Exception:
            log.exception("symbl stop failed", connection_id=sock.cid)
        finally:
            if not sock.ws.closed:  # normally the completion closed it already
                await sock.ws.close()

    async def _modify(self, sock: _Socket, obj: dict[str, Any]) -> None:
        """A new audio format for the audio that follows (what came before is kept)."""
        sr = obj.get("speechRecognition") or {}
        current = (sock.audio.encoding, sock.audio.sample_rate)
        problem = audio_in.check_speech(sr, current) if isinstance(sr, dict) else "speechRecognition must be an object"
        if problem:
            await sock.ws.send_json(wire.error_frame("Invalid modify_request", problem))
            return
        encoding, rate = audio_in.speech_format(sr, current)
        tail = sock.audio.set_format(encoding, rate)
        if sock.conv is not None and not sock.conv.ended:
            await self._forward(sock, tail)
        await sock.ws.send_json(wire.session_modified({"encoding": encoding, "sampleRateHertz": rate}))

    async def _start_streaming(
        self, ws: web.WebSocketResponse, cid: str, start: dict[str, Any], sock: _Socket
    ) -> Conversation | None:
        config = start.get("config") if isinstance(start.get("config"), dict) else {}
        speech = config.get("speechRecognition") if isinstance(config.get("speechRecognition"), dict) else {}
        sock.audio.set_format(*audio_in.speech_format(speech))
        conv = self.conversations.get(cid)
        speaker = start.get("speaker") if isinstance(start.get("speaker"), dict) else None
        if conv is None or conv.ended or conv.stopping:
            args = {
                "source": {"type": "push"},
                "engine": self.config["engine"],
                # The daemon finds all types (the Conversation API serves them); the socket gets the
                # ones asked for: Symbl's insightTypes selects, so [] (both SDKs' default) means none.

                "config": {**config, "speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": 16000}},
                "speaker": start.get("speaker") or None,
                "trackers": start.get("trackers") or [],
                "customVocabulary": start.get("customVocabulary") or [],
            }
            args = {k: v for k, v in args.items() if v is not None}
            try:
                conv = await self._open(cid, "streaming", args)
            except StartFailed as exc:
                await ws.send_json(wire.error_frame("Cannot start the conversation", exc.message))
                await ws.close(code=1011, message=b"start failed")
                return None
            requested = start.get("insightTypes")
            conv.insight_types = {t for t in requested if isinstance(t, str)} if isinstance(requested, list) else set()
            timeout = start.get("noConnectionTimeout")
            if isinstance(timeout, int | float) and 0 <= timeout <= 1800:
                conv.no_connection_timeout = float(timeout)
            leg = conv.legs[0]
        else:
            leg = await self._join(conv, ws, config, start, speaker)
            if leg is None:
                return None
        leg.socket = ws
        sock.leg = leg
        if conv.orphan_timer:
            conv.orphan_timer.cancel()
            conv.orphan_timer = None
        conv.sockets.add(ws)
        await ws.send_json(wire.conversation_created(conv.conversation_id))
        await ws.send_json(wire.started_listening())
        await asyncio.sleep(float(self.config["first_frame_delay"]))
        await ws.send_json(wire.recognition_started(conv.conversation_id))
        self._start_pump(conv)
        return conv

    async def _open(self, symbl_id: str, kind: str, args: dict[str, Any]) -> Conversation:
        """Start a conversation's first daemon connection; raises StartFailed with an HTTP status."""
        leg = await self._open_leg(symbl_id, args, own_id=True)
        conv = Conversation(
            symbl_id=symbl_id,
            conversation_id=leg.conversation_id,
            kind=kind,
            legs=[leg.leg],
            start_args=args,
            no_connection_timeout=float(self.config["no_connection_timeout"]),
        )
        self.conversations[symbl_id] = conv
        log.info("symbl conversation started", connection_id=symbl_id, daemon_connection=leg.leg.daemon_id,
                 kind=kind)
        return conv

    async def _join(self, conv: Conversation, ws: web.WebSocketResponse, config: dict[str, Any],
                    start: dict[str, Any], speaker: dict[str, Any] | None) -> Leg | None:
        """Another speaker socket on a live conversation: its speaker's leg again, or a new one."""
        for leg in conv.legs:
            if leg.socket is None and not leg.stopping and not leg.stopped.is_set() and leg.same_speaker(speaker):
                return leg  # the same speaker reconnecting
        args = {**conv.start_args, "conversationId": conv.conversation_id,
                "config": {**config, "speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": 16000}},
                "speaker": speaker, "trackers": start.get("trackers") or conv.start_args.get("trackers") or [],
                "customVocabulary": start.get("customVocabulary") or conv.start_args.get("customVocabulary") or []}
        try:
            opened = await self._open_leg(conv.symbl_id, {k: v for k, v in args.items() if v is not None},
                                          own_id=False)
        except StartFailed as exc:
            await ws.send_json(wire.error_frame("Cannot join the conversation", exc.message))
            await ws.close(code=1011, message=b"start failed")
            return None
        if conv.stopping or conv.ended:  # the conversation stopped while this leg was starting
            await self._stop_daemon(opened.leg)
            _release(opened.leg)
            await ws.send_json(wire.error_frame("Cannot join the conversation", "it has just been stopped"))
            await ws.close(code=1000)
            return None
        conv.legs.append(opened.leg)
        log.info("symbl speaker joined", connection_id=conv.symbl_id, daemon_connection=opened.leg.daemon_id,
                 speakers=len(conv.legs))
        return opened.leg

    async def _open_leg(self, symbl_id: str, args: dict[str, Any], own_id: bool) -> _Opened:
        """Start one daemon connection; raises StartFailed with an HTTP status on failure."""
        assert self.loop is not None
        executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"symbl-{symbl_id[:8]}")
        def start() -> dict[str, Any]:
            # Same id on the daemon when it is free and valid there, so `symblctl` shows the
            # connection under the id the Symbl client chose; else the daemon picks one.
            if own_id and DAEMON_ID.match(symbl_id):
                try:
                    return control.start(**args, connectionId=symbl_id)
                except Exception as exc:
                    # In use by a live connection, or used before (its journal is kept, e.g. a client
                    # reconnecting after a server restart): the daemon picks a fresh id instead.
                    reused = (getattr(exc, "details", None) or {}).get("reason") == "journal_exists"
                    if not reused and "already in use" not in str(getattr(exc, "message", "")):
                        raise
            return control.start(**args)

        try:
            control = await self.loop.run_in_executor(executor, self.client_factory)
            result = await self.loop.run_in_executor(executor, start)
        except Exception as exc:
            executor.shutdown(wait=False)
            if not isinstance(exc, DaemonError):
                log.exception("symbl start failed", connection_id=symbl_id)
            raise StartFailed(_daemon_status(exc), str(getattr(exc, "message", exc))) from exc
        daemon_id = str(result["connectionId"])
        speaker = args.get("speaker") if isinstance(args.get("speaker"), dict) else None
        leg = Leg(daemon_id=daemon_id, control=control, executor=executor, speaker=speaker,
                  attribution=speakers.Attribution(daemon_id, shapes.user_of(speaker, daemon_id)))
        return _Opened(leg, str(result.get("conversationId") or ""))

    async def _audio(self, sock: _Socket, data: bytes) -> None:
        if len(data) > int(self.config["max_chunk_bytes"]):
            await sock.ws.send_json(wire.error_frame(
                "Audio chunk too large",
                f"maximum size of a single audio chunk is {self.config['max_chunk_bytes']} bytes; got {len(data)}",
            ))
            return
        await self._forward(sock, sock.audio.decode(data))

    async def _forward(self, sock: _Socket, pcm: bytes) -> None:
        """16 kHz LINEAR16 to the daemon connection behind the socket."""
        conv, leg = sock.conv, sock.leg
        if not pcm or conv is None or leg is None or conv.ended or leg.stopping:
            return
        assert self.loop is not None
        try:
            await self.loop.run_in_executor(leg.executor, lambda: leg.control.send_audio(leg.daemon_id, pcm, 16000))
            leg.forwarded += len(pcm)
        except Exception as exc:  # noqa: BLE001 - any refusal goes to the client as an error frame
            log.warning("symbl send_audio failed", connection_id=conv.symbl_id, error=str(exc))
            await sock.ws.send_json(wire.error_frame("Audio not accepted", str(getattr(exc, "message", exc))))

    # ------------------------------------------------------------ events from the daemon

    def _start_pump(self, conv: Conversation) -> None:
        for leg in conv.legs:
            if leg.pump is not None:
                continue
            leg.pump = threading.Thread(target=self._pump, args=(conv, leg), daemon=True,
                                        name=f"symbl-pump-{leg.daemon_id[:8]}")
            leg.pump.start()

    def _pump(self, conv: Conversation, leg: Leg) -> None:
        """Thread: the daemon's events for one leg → the conversation's sockets, in order."""
        assert self.loop is not None
        try:
            client = self.client_factory()
            stream = client.events(leg.daemon_id, after_seq=0)
        except Exception as exc:  # noqa: BLE001 - daemon unreachable: the leg ends, logged
            log.warning("symbl event stream failed", connection_id=conv.symbl_id, error=str(exc))
            return
        try:
            while not leg.pump_stop.is_set():
                event = stream.get(0.5)
                if event is None:
                    if getattr(stream, "completed", False):  # drained up to conversation_completed
                        break
                    continue
                if self.loop.is_closed():  # the server shut down: nobody left to deliver to
                    break
                fut = asyncio.run_coroutine_threadsafe(self._dispatch(conv, leg, event), self.loop)
                try:
                    fut.result(timeout=30)
                except (concurrent.futures.TimeoutError, RuntimeError):
                    log.warning("symbl dispatch slow or loop gone", connection_id=conv.symbl_id)
                if event.get("type") in ENDED_EVENTS:
                    break
        finally:
            with contextlib.suppress(Exception):
                stream.close()
            with contextlib.suppress(Exception):
                client.close()

    async def _dispatch(self, conv: Conversation, leg: Leg, event: dict[str, Any]) -> None:
        etype = event.get("type", "")
        data = event.get("data") or {}
        if etype == speakers.EVENT:
            leg.attribution.on_event(data)
            return
        if etype in RESULT_EVENTS:
            data = leg.attribution.apply(etype, data)
        if etype == "insight_response" and conv.insight_types is not None:
            data = {**data, "insights": [i for i in data.get("insights") or [] if i.get("type") in conv.insight_types]}
            if not data["insights"]:
                return
        if etype in RESULT_EVENTS:
            for ws in list(conv.sockets):
                for frame in wire.event_to_frames(etype, data, "streaming"):
                    await _send(ws, frame)
            for ws, style in list(conv.subscribers.items()):
                for frame in wire.event_to_frames(etype, data, style):
                    await _send(ws, frame)
        elif etype == "connection_failed":
            conv.failure = data.get("error") or {"message": "connection failed"}
            frame = wire.error_frame("Conversation failed", str(conv.failure.get("message")))
            for ws in [*conv.sockets, *conv.subscribers]:
                await _send(ws, frame)
            self._leg_ended(conv, leg)
            if not conv.stopping and conv.daemon_stopped.is_set():
                await self._end(conv, code=1011)
        elif etype in ENDED_EVENTS:
            self._leg_ended(conv, leg)
            if not conv.stopping and conv.daemon_stopped.is_set():  # stopped elsewhere (symblctl, hung up)
                await self._end(conv)

    @staticmethod
    def _leg_ended(conv: Conversation, leg: Leg) -> None:
        leg.stopped.set()
        if all(x.stopped.is_set() for x in conv.legs):
            conv.daemon_stopped.set()

    # ------------------------------------------------------------ stop and end

    async def _stop(self, conv: Conversation) -> None:
        """Flush finals through the daemon, then complete every socket of the conversation."""
        if conv.stopping:
            await asyncio.wait_for(conv.daemon_stopped.wait(), float(self.config["stop_timeout"]))
            return
        conv.stopping = True
        await asyncio.gather(*(self._stop_daemon(leg) for leg in conv.legs if not leg.stopping))
        log.debug("symbl daemon stop returned", connection_id=conv.symbl_id)
        if all(leg.pump is not None for leg in conv.legs):
            # The pumps deliver everything up to connection_stopped, in order.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conv.daemon_stopped.wait(), float(self.config["stop_timeout"]))
        await self._end(conv)

    async def _stop_daemon(self, leg: Leg) -> None:
        leg.stopping = True
        assert self.loop is not None
        with contextlib.suppress(Exception):  # already stopped / daemon gone: still complete the clients
            await asyncio.wait_for(
                self.loop.run_in_executor(leg.executor, lambda: leg.control.stop(leg.daemon_id)),
                float(self.config["stop_timeout"]),
            )

    async def _stop_leg(self, conv: Conversation, leg: Leg) -> None:
        """One speaker's stop_request while others go on: its finals flushed, its socket completed."""
        await self._stop_daemon(leg)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(leg.stopped.wait(), float(self.config["stop_timeout"]))
        ws = leg.socket
        if ws is not None:
            conv.sockets.discard(ws)
            leg.socket = None
            await _send(ws, wire.conversation_completed(conv.conversation_id,
                                                        self.config["summary_base"] + conv.conversation_id))
            await _send(ws, wire.recognition_stopped())
            with contextlib.suppress(Exception):
                await ws.close(code=1000)

    async def _end(self, conv: Conversation, code: int = 1000) -> None:
        if conv.ended:
            return
        conv.ended = True
        if conv.orphan_timer:
            conv.orphan_timer.cancel()
        if code == 1000:
            summary = await symbl_hooks.summary_url(self.client_factory, conv.legs[0].daemon_id,
                                                    self.config["summary_base"] + conv.conversation_id)
            for ws in [*conv.sockets, *conv.subscribers]:
                await _send(ws, wire.conversation_completed(conv.conversation_id, summary))
                await _send(ws, wire.recognition_stopped())
        # Concurrently: each close waits for the client's answer (up to CLOSE_TIMEOUT).
        await asyncio.gather(*(ws.close(code=code) for ws in [*conv.sockets, *conv.subscribers]),
                             return_exceptions=True)
        for leg in conv.legs:
            leg.pump_stop.set()
        if self.conversations.get(conv.symbl_id) is conv:
            del self.conversations[conv.symbl_id]
        if conv.kind == "telephony":
            self.ended_calls[conv.symbl_id] = conv
            while len(self.ended_calls) > 1000:
                self.ended_calls.popitem(last=False)
        for leg in conv.legs:
            _release(leg)
        log.info("symbl conversation ended", connection_id=conv.symbl_id, code=code)

    def _detach(self, conv: Conversation, ws: web.WebSocketResponse) -> None:
        """A speaker socket went away; without any left the conversation waits for a reconnect."""
        conv.sockets.discard(ws)
        for leg in conv.legs:
            if leg.socket is ws:
                leg.socket = None
        if conv.sockets or conv.stopping or conv.ended or conv.kind != "streaming":
            return
        assert self.loop is not None
        log.info("symbl stream dropped; waiting for reconnect", connection_id=conv.symbl_id,
                 seconds=conv.no_connection_timeout)
        conv.orphan_timer = self.loop.call_later(
            conv.no_connection_timeout, lambda: asyncio.ensure_future(self._stop(conv))
        )

    async def _shutdown(self, app: web.Application) -> None:
        """Server going away: clients get close 1001 (they may reconnect to the next server).

        Daemon connections are stopped only with ``stop_on_close`` (the standalone runner): inside
        the daemon, its own shutdown stops them, and asking it here could only wait on it.
        """
        for conv in list(self.conversations.values()):
            if self.config.get("stop_on_close"):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._stop(conv), 10)
                continue
            for leg in conv.legs:
                leg.pump_stop.set()
            await asyncio.gather(*(ws.close(code=1001, message=b"server shutting down")
                                   for ws in [*conv.sockets, *conv.subscribers]), return_exceptions=True)
            for leg in conv.legs:
                leg.executor.shutdown(wait=False)

    # ------------------------------------------------------------ subscribe

    async def subscribe(self, request: web.Request) -> web.StreamResponse:
        cid = request.match_info["cid"]
        token, proto = self._token_of(request)
        if token is None:
            return _json_error(401, "Token validation failed for provided token.", "Unauthorized")
        conv = self.conversations.get(cid)
        if conv is None or conv.ended:
            return _json_error(404, "Connection not found", f"no live connection with id {cid}")
        style = "telephony" if request.path.startswith("/session/") else "streaming"
        ws = web.WebSocketResponse(protocols=(proto,) if proto else (), max_msg_size=1 << 16,
                                   timeout=CLOSE_TIMEOUT)
        await ws.prepare(request)
        conv.subscribers[ws] = style
        self._start_pump(conv)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    if msg.data == wire.PING:
                        await ws.send_str(wire.PONG)
                        continue
                    obj, _ = wire.parse_client_text(msg.data)
                    if obj and obj.get("type") == "stop_request":  # SDK's Connection.stop(): leave
                        break
                    if obj and "topic" in obj:  # the JS SDK's pushSpeakerEvents on resultWebSocketUrl
                        problem = await self._speaker_event(conv, obj)
                        if problem:
                            await _send(ws, wire.error_frame("Invalid speaker event", problem))
        finally:
            conv.subscribers.pop(ws, None)
            if not ws.closed:
                await ws.close()
        return ws

    # ------------------------------------------------------------ telephony

    async def endpoint_connect(self, request: web.Request) -> web.Response:
        token = request.headers.get("x-api-key")
        auth = request.headers.get("Authorization", "")
        if not token and auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        if not self.issuer.validate(token):
            return _json_error(401, "Token validation failed for provided token.", "Unauthorized")
        try:
            body = await request.json()
        except ValueError:
            return _json_error(400, "Invalid request body", "body must be JSON")
        if not isinstance(body, dict):
            return _json_error(400, "Invalid request body", "body must be a JSON object")
        op = body.get("operation")
        if op == "start":
            return await self._telephony_start(request, body)
        if op == "stop":
            return await self._telephony_stop(request, body)
        return _json_error(400, "Invalid operation", "operation must be 'start' or 'stop'")

    def _urls(self, request: web.Request, cid: str) -> dict[str, str]:
        host = request.host
        ws_scheme = "wss" if request.scheme == "https" else "ws"
        return {"eventUrl": f"{request.scheme}://{host}/v1/event/{cid}",
                "resultWebSocketUrl": f"{ws_scheme}://{host}/events/{cid}"}

    async def _telephony_start(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        endpoint = body.get("endpoint")
        if not isinstance(endpoint, dict) or endpoint.get("type") not in ("sip", "pstn"):
            return _json_error(400, "Invalid endpoint", "endpoint.type must be 'sip' or 'pstn'")
        if endpoint["type"] == "sip" and not endpoint.get("uri"):
            return _json_error(400, "Invalid endpoint", "endpoint.uri is required for sip")
        if endpoint["type"] == "pstn" and not endpoint.get("phoneNumber"):
            return _json_error(400, "Invalid endpoint", "endpoint.phoneNumber is required for pstn")
        actions = body.get("actions")
        actions = actions if isinstance(actions, list) else []  # the Python SDK sends {}
        languages = body.get("languages") or []
        language = languages[0] if languages else "en-US"
        if isinstance(language, dict):
            language = language.get("code", "en-US")
        session = (body.get("data") or {}).get("session") or {}
        source = {k: v for k, v in endpoint.items() if v is not None}  # Symbl's endpoint = our sip/pstn source
        config: dict[str, Any] = {"languageCode": language}
        if session.get("name"):
            config["meetingTitle"] = session["name"]
        if body.get("timezone"):
            config["timezone"] = body["timezone"]
        args: dict[str, Any] = {"source": source, "engine": self.config["engine"], "config": config,
                                "actions": actions}
        known = ("question", "action_item", "follow_up")
        if isinstance(body.get("insightTypes"), list):
            args["insightTypes"] = [t for t in body["insightTypes"] if t in known]
        cid = str(uuid.uuid4())
        try:
            conv = await self._open(cid, "telephony", args)
        except StartFailed as exc:
            if exc.status == 501:
                return _json_error(501, "Telephony is not available on this server", exc.message)
            return _json_error(exc.status, "Cannot start the call", exc.message)
        self._start_pump(conv)
        return web.json_response({**self._urls(request, cid), "connectionId": cid,
                                  "conversationId": conv.conversation_id}, status=201)

    async def _telephony_stop(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        cid = body.get("connectionId")
        if not isinstance(cid, str):
            return _json_error(400, "Invalid request", "connectionId is required for stop")
        conv = self.conversations.get(cid) or self.ended_calls.get(cid)
        if conv is None or conv.kind != "telephony":
            return _json_error(404, "Connection not found", f"no call with connectionId {cid}")
        if not conv.ended:
            await self._stop(conv)
        return web.json_response({**self._urls(request, conv.symbl_id), "connectionId": conv.symbl_id,
                                  "conversationId": conv.conversation_id,
                                  "summaryInfo": await symbl_hooks.summary_info(self.client_factory,
                                                                                conv.legs[0].daemon_id)})

    async def speaker_event(self, request: web.Request) -> web.Response:
        if not self._rest_authorized(request):
            return _json_error(401, "Token validation failed for provided token.", "Unauthorized")
        conv = self.conversations.get(request.match_info["cid"])
        if conv is None or conv.ended:
            return _json_error(404, "Connection not found", "no live connection with that id")
        try:
            body = await request.json()
        except ValueError:
            return _json_error(400, "Invalid request body", "body must be JSON")
        problem = await self._speaker_event(conv, body)
        if problem:
            return _json_error(400, "Invalid speaker event", problem)
        return web.Response(status=204)

    async def _speaker_event(self, conv: Conversation, body: Any) -> str | None:
        """A client's speaker event, journaled on every live leg of the conversation; else why not."""
        problem = speakers.check_event(body)
        if problem:
            return problem
        assert self.loop is not None
        for leg in conv.legs:
            if leg.stopping or leg.stopped.is_set():
                continue
            args: dict[str, Any] = {"connectionId": leg.daemon_id, "type": body["type"]}
            if body.get("user"):
                args["user"] = {k: v for k, v in body["user"].items() if k in ("userId", "name", "id")}
            if isinstance(body.get("timestamp"), str):
                args["timestamp"] = body["timestamp"][:64]
            if conv.kind == "streaming":  # we know exactly how much audio this leg has had
                args["timeOffset"] = leg.forwarded / 32000
            try:
                await self.loop.run_in_executor(
                    leg.executor, lambda a=args, c=leg.control: c.request("speaker_event", **a))
            except Exception as exc:  # noqa: BLE001 - any refusal is returned to the caller as text
                return str(getattr(exc, "message", exc))
        return None


def _server_credentials(config: dict[str, Any]) -> Credentials:
    """Configured app credentials (config, env, credentials file); else fresh random ones.

    Random ones are written to ``credentials_out`` (JSON, mode 0600) when that path is set, so
    local apps can read them; the secret is never logged.
    """
    if isinstance(config.get("credentials"), Credentials):
        return config["credentials"]
    try:
        # Not the environment: SYMBL_APP_ID/SECRET belong to the client engine's remote account.
        return load_credentials(config, env={})
    except CredentialsError:
        creds = generate_app_credentials()
    out = config.get("credentials_out")
    if out:
        path = Path(out)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"appId": creds.app_id, "appSecret": creds.app_secret}, f)
        os.chmod(path, 0o600)
        log.info("symbl app credentials generated", app_id=creds.app_id, file=str(path))
    else:
        log.info("symbl app credentials generated (not saved)", app_id=creds.app_id)
    return creds


@dataclass
class _Socket:
    """One speaker socket: its audio format and the conversation it joined."""

    ws: web.WebSocketResponse
    cid: str
    conv: Conversation | None = None
    leg: Leg | None = None
    stop_task: asyncio.Future[None] | None = None  # the stop_request being carried out
    audio: audio_in.ClientAudio = field(default_factory=audio_in.ClientAudio)


def _release(leg: Leg) -> None:
    """A leg's daemon client closed and its thread let go (once its queued calls are done)."""
    leg.pump_stop.set()
    with contextlib.suppress(RuntimeError):  # already shut down with the server
        leg.executor.submit(leg.control.close)
    leg.executor.shutdown(wait=False)


@dataclass
class _Opened:
    leg: Leg
    conversation_id: str


def _json_error(status: int, message: str, details: str) -> web.Response:
    return web.json_response({"message": message, "details": details}, status=status)


async def _send(ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
    if ws.closed:
        return
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await ws.send_json(frame)


# ---------------------------------------------------------------- running it


class ServerHandle:
    """A running server on its own thread and event loop."""

    def __init__(self, server: SymblServer, port: int, loop: asyncio.AbstractEventLoop,
                 thread: threading.Thread, runner: web.AppRunner) -> None:
        self.server = server
        self.port = port
        self._loop = loop
        self._thread = thread
        self._runner = runner

    @property
    def app_id(self) -> str:
        return self.server.credentials.app_id

    @property
    def app_secret(self) -> str:
        return self.server.credentials.app_secret

    def close(self, timeout: float = 15.0) -> None:
        if not self._thread.is_alive():
            return
        fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        with contextlib.suppress(Exception):
            fut.result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)


def serve_symbl(addr: str, port: int, client_factory: Callable[[], Any], config: dict[str, Any]) -> ServerHandle:
    """Start the server on ``addr:port`` (0 = any free port) on its own thread; returns once listening.

    ``config`` keys: ``app_id``/``app_secret`` (random Symbl-format ones when absent: read them from
    the handle), ``token_secret``, and the ``DEFAULTS`` above.
    """
    server = SymblServer(client_factory, config)
    loop = asyncio.new_event_loop()
    server.loop = loop
    runner = web.AppRunner(server.app(), handle_signals=False, shutdown_timeout=5)
    ready: concurrent.futures.Future[int] = concurrent.futures.Future()

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, addr, port)
        await site.start()
        sockets = site._server.sockets if site._server else []  # aiohttp keeps the bound socket here
        ready.set_result(sockets[0].getsockname()[1] if sockets else port)

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except Exception as exc:  # noqa: BLE001 - handed to the starting thread, which raises it
            ready.set_exception(exc)
            return
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name="symbl-server", daemon=True)
    thread.start()
    bound = ready.result(timeout=15)
    log.info("symbl-compatible server listening", addr=addr, port=bound)
    return ServerHandle(server, bound, loop, thread, runner)


def main(argv: list[str] | None = None) -> None:
    """Standalone: ``python -m symbld.gateways.symbl.server --listen 127.0.0.1:8765 [--control ... --events ...]``.

    App credentials from ``SYMBL_APP_ID``/``SYMBL_APP_SECRET`` (or random ones, printed to stdout).
    """
    import signal

    from symblctl.client import Client

    parser = argparse.ArgumentParser(prog="python -m symbld.gateways.symbl.server")
    parser.add_argument("--listen", default="127.0.0.1:8765")
    parser.add_argument("--control")
    parser.add_argument("--events")
    parser.add_argument("--first-frame-delay", type=float, default=DEFAULTS["first_frame_delay"])
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    config: dict[str, Any] = {"first_frame_delay": args.first_frame_delay, "stop_on_close": True}
    if os.environ.get("SYMBL_APP_ID") and os.environ.get("SYMBL_APP_SECRET"):
        config["app_id"], config["app_secret"] = os.environ["SYMBL_APP_ID"], os.environ["SYMBL_APP_SECRET"]
    if os.environ.get("SYMBLD_TOKEN_SECRET"):
        config["token_secret"] = os.environ["SYMBLD_TOKEN_SECRET"]
    handle = serve_symbl(host or "127.0.0.1", int(port), lambda: Client(args.control, args.events), config)
    print(f"listening {handle.port}", flush=True)
    if not os.environ.get("SYMBL_APP_SECRET"):
        print(f"appId {handle.app_id}\nappSecret {handle.app_secret}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    handle.close()


if __name__ == "__main__":
    main()
