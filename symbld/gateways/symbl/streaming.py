"""Symbl's streaming WebSockets: a speaker socket per participant, and the subscribe sockets that only listen.

Endpoints (spec ``symbl-protocol.md`` §6 numbers in brackets): ``/v1/streaming/{id}``,
``/v1/realtime/insights/{id}`` [4-26]; ``/v1/subscribe/{id}``, ``/session/subscribe/{id}`` [27-28] and
``/events/{id}`` (the ``resultWebSocketUrl`` the telephony endpoint hands out).

A speaker socket's ``start_request`` opens the conversation (or joins it: another speaker, or the same
one reconnecting); its binary frames are decoded to 16 kHz LINEAR16 (``audio_in``) and sent to its leg.
Choices where Symbl never said: a binary frame over ``max_chunk_bytes`` is dropped and answered with an
``error`` frame; bad JSON is answered with an ``error`` frame and the socket stays open.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import WSMsgType, web

from symbld.gateways.symbl import audio_in, wire
from symbld.gateways.symbl.live import LiveConversations
from symbld.gateways.symbl.replies import UNAUTHORIZED, json_error, send
from symbld.gateways.symbl.state import Conversation, Leg, StartFailed, error_message, release

log = structlog.get_logger(__name__)

CONNECTION_ID = re.compile(r"^[A-Za-z0-9_=+/\-]{6,64}$")
CLOSE_TIMEOUT = 2.0  # seconds to wait for a client's answer to our close frame
ENGINE_AUDIO = {"encoding": "LINEAR16", "sampleRateHertz": 16000}  # what every leg is started with

TokenOf = Callable[[web.Request], tuple[str | None, str | None]]  # (valid token, subprotocol to echo)


@dataclass
class _Socket:
    """One speaker socket: its audio format and the conversation it joined."""

    ws: web.WebSocketResponse
    cid: str
    conv: Conversation | None = None
    leg: Leg | None = None
    stop_task: asyncio.Future[None] | None = None  # the stop_request being carried out
    audio: audio_in.ClientAudio = field(default_factory=audio_in.ClientAudio)

    def streaming(self) -> bool:
        """Started, not ended, not stopping: its audio goes to the daemon."""
        return self.conv is not None and not self.conv.ended and self.stop_task is None


class StreamingSockets:
    """The speaker and subscribe sockets of one server's conversations."""

    def __init__(self, conversations: LiveConversations, config: dict[str, Any], token_of: TokenOf) -> None:
        self.conversations = conversations
        self.config = config
        self.token_of = token_of

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/streaming/{cid:.+}", self.streaming)
        app.router.add_get("/v1/realtime/insights/{cid:.+}", self.streaming)
        app.router.add_get("/v1/subscribe/{cid:.+}", self.subscribe)
        app.router.add_get("/session/subscribe/{cid:.+}", self.subscribe)
        app.router.add_get("/events/{cid:.+}", self.subscribe)  # the resultWebSocketUrl we hand out

    # ------------------------------------------------------------ speaker sockets

    async def streaming(self, request: web.Request) -> web.StreamResponse:
        cid = request.match_info["cid"]
        token, proto = self.token_of(request)
        if token is None:
            return json_error(401, UNAUTHORIZED, "Unauthorized")
        if not CONNECTION_ID.match(cid):
            return json_error(400, "Invalid connectionId", "connectionId must match [A-Za-z0-9_=+/-]{6,64}")
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
                self.conversations.detach(sock.conv, ws)
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
                await self._audio(sock, msg.data)
            elif msg.type != WSMsgType.TEXT:
                return  # close, closing, error
            elif msg.data == wire.PING:
                await ws.send_str(wire.PONG)
            elif not await self._text_frame(sock, msg.data):
                return

    async def _text_frame(self, sock: _Socket, text: str) -> bool:
        """One text frame from a speaker socket; False when the socket is done."""
        obj, conforming = wire.parse_client_text(text)
        if obj is None:
            await sock.ws.send_json(wire.error_frame("Invalid JSON", "text frames must be JSON objects"))
            return True
        if not conforming:
            log.info("symbl non-JSON control frame accepted", connection_id=sock.cid, type=obj.get("type"))
        mtype = obj.get("type")
        if mtype == "start_request":
            return await self._start_request(sock, obj)
        if mtype == "stop_request":
            await self._stop_request(sock)
            return True
        if mtype == "modify_request":
            await self._modify(sock, obj)
            return True
        await sock.ws.send_json(wire.error_frame("Unknown message type", f"type {mtype!r} not supported"))
        return True

    async def _start_request(self, sock: _Socket, obj: dict[str, Any]) -> bool:
        if sock.conv is not None and not sock.conv.ended:
            await sock.ws.send_json(wire.error_frame("Already started", "send stop_request first"))
            return True
        speech = wire.object_field(wire.object_field(obj, "config"), "speechRecognition")
        problem = audio_in.check_speech(speech)
        if problem:  # the socket stays open: the client may send a start_request we can serve
            await sock.ws.send_json(wire.error_frame("Invalid start_request", problem))
            return True
        sock.conv = await self._start_streaming(sock, obj)
        return sock.conv is not None

    async def _stop_request(self, sock: _Socket) -> None:
        conv = sock.conv
        if conv is None or conv.ended:
            await sock.ws.send_json(wire.error_frame("Not started", "stop_request before start_request"))
            return
        if sock.stop_task is not None:
            return  # already stopping
        await self._forward(sock, sock.audio.flush())
        if sock.leg is not None and any(ws is not sock.ws for ws in conv.sockets):
            stopping = self.conversations.stop_leg(conv, sock.leg)  # the other speakers go on
        else:
            stopping = self.conversations.stop(conv)
        # The daemon may take seconds to flush finals: the loop goes on reading meanwhile, so
        # the client's __PING__ is answered (else its keep-alive declares the socket dead and
        # reconnects). Completion closes the socket, which ends the loop.
        sock.stop_task = asyncio.ensure_future(self._carry_out_stop(sock, stopping))

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

    async def _start_streaming(self, sock: _Socket, start: dict[str, Any]) -> Conversation | None:
        """The conversation a start_request opens or joins, its system frames sent; None when it could not."""
        config = wire.object_field(start, "config")
        sock.audio.set_format(*audio_in.speech_format(wire.object_field(config, "speechRecognition")))
        conv = self.conversations.by_id.get(sock.cid)
        leg: Leg | None
        if conv is None or conv.ended or conv.stopping:
            conv = await self._open(sock.ws, sock.cid, config, start)
            leg = conv.legs[0] if conv is not None else None
        else:
            speaker = start.get("speaker") if isinstance(start.get("speaker"), dict) else None
            leg = await self._join(conv, sock.ws, config, start, speaker)
        if conv is None or leg is None:
            return None
        await self._begin(sock, conv, leg)
        return conv

    async def _open(self, ws: web.WebSocketResponse, cid: str, config: dict[str, Any],
                    start: dict[str, Any]) -> Conversation | None:
        """A new conversation under ``cid``: its first leg, the insights and reconnect time the client asked for."""
        args = {
            "source": {"type": "push"},
            "engine": self.config["engine"],
            # The daemon finds all types (the Conversation API serves them); the socket gets the
            # ones asked for: Symbl's insightTypes selects, so [] (both SDKs' default) means none.
            "config": {**config, "speechRecognition": dict(ENGINE_AUDIO)},
            "speaker": start.get("speaker") or None,
            "trackers": start.get("trackers") or [],
            "customVocabulary": start.get("customVocabulary") or [],
        }
        try:
            conv = await self.conversations.open(cid, "streaming", {k: v for k, v in args.items() if v is not None})
        except StartFailed as exc:
            await ws.send_json(wire.error_frame("Cannot start the conversation", exc.message))
            await ws.close(code=1011, message=b"start failed")
            return None
        requested = start.get("insightTypes")
        conv.insight_types = {t for t in requested if isinstance(t, str)} if isinstance(requested, list) else set()
        timeout = start.get("noConnectionTimeout")
        if isinstance(timeout, int | float) and 0 <= timeout <= 1800:
            conv.no_connection_timeout = float(timeout)
        return conv

    async def _join(self, conv: Conversation, ws: web.WebSocketResponse, config: dict[str, Any],
                    start: dict[str, Any], speaker: dict[str, Any] | None) -> Leg | None:
        """Another speaker socket on a live conversation: its speaker's leg again, or a new one."""
        for leg in conv.legs:
            if leg.socket is None and leg.live() and leg.same_speaker(speaker):
                return leg  # the same speaker reconnecting
        args = {**conv.start_args, "conversationId": conv.conversation_id,
                "config": {**config, "speechRecognition": dict(ENGINE_AUDIO)},
                "speaker": speaker, "trackers": start.get("trackers") or conv.start_args.get("trackers") or [],
                "customVocabulary": start.get("customVocabulary") or conv.start_args.get("customVocabulary") or []}
        try:
            opened = await self.conversations.open_leg(conv.symbl_id, {k: v for k, v in args.items() if v is not None},
                                                       own_id=False)
        except StartFailed as exc:
            await ws.send_json(wire.error_frame("Cannot join the conversation", exc.message))
            await ws.close(code=1011, message=b"start failed")
            return None
        if conv.stopping or conv.ended:  # the conversation stopped while this leg was starting
            await self.conversations.stop_daemon(opened.leg)
            release(opened.leg)
            await ws.send_json(wire.error_frame("Cannot join the conversation", "it has just been stopped"))
            await ws.close(code=1000)
            return None
        conv.legs.append(opened.leg)
        log.info("symbl speaker joined", connection_id=conv.symbl_id, daemon_connection=opened.leg.daemon_id,
                 speakers=len(conv.legs))
        return opened.leg

    async def _begin(self, sock: _Socket, conv: Conversation, leg: Leg) -> None:
        """The socket feeds ``leg`` from now on; Symbl's system frames, then the conversation's events."""
        ws = sock.ws
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
        self.conversations.start_pump(conv)

    async def _audio(self, sock: _Socket, data: bytes) -> None:
        if not sock.streaming():
            log.debug("symbl audio before start_request ignored", bytes=len(data))
            return
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
        try:
            await self.conversations.on_leg(leg, lambda: leg.control.send_audio(leg.daemon_id, pcm, 16000))
            leg.forwarded += len(pcm)
        except Exception as exc:  # noqa: BLE001 - any refusal goes to the client as an error frame
            log.warning("symbl send_audio failed", connection_id=conv.symbl_id, error=str(exc))
            await sock.ws.send_json(wire.error_frame("Audio not accepted", error_message(exc)))

    # ------------------------------------------------------------ subscribe

    async def subscribe(self, request: web.Request) -> web.StreamResponse:
        cid = request.match_info["cid"]
        token, proto = self.token_of(request)
        if token is None:
            return json_error(401, UNAUTHORIZED, "Unauthorized")
        conv = self.conversations.by_id.get(cid)
        if conv is None or conv.ended:
            return json_error(404, "Connection not found", f"no live connection with id {cid}")
        style = "telephony" if request.path.startswith("/session/") else "streaming"
        ws = web.WebSocketResponse(protocols=(proto,) if proto else (), max_msg_size=1 << 16,
                                   timeout=CLOSE_TIMEOUT)
        await ws.prepare(request)
        conv.subscribers[ws] = style
        self.conversations.start_pump(conv)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and not await self._listener_frame(conv, ws, msg.data):
                    break
        finally:
            conv.subscribers.pop(ws, None)
            if not ws.closed:
                await ws.close()
        return ws

    async def _listener_frame(self, conv: Conversation, ws: web.WebSocketResponse, text: str) -> bool:
        """One text frame from a subscribe socket; False when the listener leaves."""
        if text == wire.PING:
            await ws.send_str(wire.PONG)
            return True
        obj, _ = wire.parse_client_text(text)
        if obj and obj.get("type") == "stop_request":  # SDK's Connection.stop(): leave
            return False
        if obj and "topic" in obj:  # the JS SDK's pushSpeakerEvents on resultWebSocketUrl
            problem = await self.conversations.speaker_event(conv, obj)
            if problem:
                await send(ws, wire.error_frame("Invalid speaker event", problem))
        return True
