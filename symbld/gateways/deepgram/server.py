"""Deepgram's listen v1 on the Symbl server's listener (docs/deepgram-api.md).

- ``POST /v1/listen``: the body is the audio (any container libsndfile reads, or headerless with
  ``encoding=linear16|mulaw&sample_rate=N``), or JSON ``{"url": ...}`` where the URL is ``file://``
  or http(s) on a loopback host (this server never fetches from elsewhere). One daemon connection per
  request (``gateways.recording``); the answer is Deepgram's pre-recorded response.
- WebSocket ``/v1/listen``: live, ``live.py``.

``Authorization: Token <key>`` (or ``Bearer``) must be one of ``[deepgram_api] api_keys``; the
WebSocket also takes Deepgram's browser form ``Sec-WebSocket-Protocol: token, <key>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec
import structlog
from aiohttp import web

from symbld.gateways import api_counters, bodies, fetch, recording
from symbld.gateways.deepgram import shapes
from symbld.gateways.deepgram.live import LiveListen
from symbld.gateways.deepgram.shapes import DeepgramError
from symbld.gateways.symbl import audio_in

log = structlog.get_logger(__name__)

API = "deepgram"
class DeepgramApiTable(msgspec.Struct, kw_only=True):
    """The [deepgram_api] table, declared (the config check decodes it, naming a wrong key and its line)."""

    api_keys: list[str] = []  # Authorization: Token <key>; none = the API refuses every request
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1)] = 100 * 1024 * 1024  # largest upload or fetched URL
    max_concurrent: Annotated[int, msgspec.Meta(ge=1)] = 4  # pre-recorded requests at once; more wait their turn
    timeout: Annotated[float, msgspec.Meta(gt=0)] = 600.0  # seconds one pre-recorded request may take
    idle_timeout: Annotated[float, msgspec.Meta(gt=0)] = 30.0  # seconds a live socket may go without audio or KeepAlive
    stop_timeout: Annotated[float, msgspec.Meta(gt=0)] = 60.0  # seconds to wait for the last finals after CloseStream


DEFAULTS: dict[str, Any] = msgspec.structs.asdict(DeepgramApiTable())


class DeepgramApi:
    def __init__(self, client_factory: Callable[[], Any], config: dict[str, Any], engine: str) -> None:
        self.client_factory = client_factory
        self.config = {**DEFAULTS, **config}
        self.engine = engine
        self._slots: asyncio.Semaphore | None = None

    def add_routes(self, app: web.Application) -> None:
        live = LiveListen(self.client_factory, self.config, self.engine)
        app.router.add_route("*", "/v1/listen", self._listen(live))

    def _listen(self, live: LiveListen) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def run(request: web.Request) -> web.StreamResponse:
            request_id = str(uuid.uuid4())
            try:
                upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
                if request.method == "GET" and upgrade:
                    protocol = self.authorize(request)
                    response = await live.serve(request, protocol)
                elif request.method == "POST":
                    self.authorize(request)
                    response = await self.prerecorded(request)
                else:
                    raise DeepgramError(405, "use POST for pre-recorded audio or a WebSocket for live audio")
            except DeepgramError as e:
                response = e.response(request_id)
            except Exception:  # a bug here must still answer in the API's shape, and the server goes on
                log.exception("deepgram api request failed", path=request.path)
                response = DeepgramError(500, "internal error").response(request_id)
            api_counters.count(API, response.status)
            return response
        return run

    def authorize(self, request: web.Request) -> str | None:
        """Check the key; the subprotocol to echo (browser clients send ``token, <key>``) or None."""
        keys = self.config["api_keys"] or []
        presented = bodies.header_credential(request, "Token") or bodies.header_credential(request, "Bearer")
        protocol = None
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        if presented is None and len(offered) == 2 and offered[0].lower() in ("token", "bearer"):
            presented, protocol = offered[1], offered[0]
        if not keys:
            raise DeepgramError(401, "Invalid credentials: no API keys are configured on this server "
                                "(set [deepgram_api] api_keys).")
        if not bodies.key_allowed(presented, keys):
            raise DeepgramError(401, "Invalid credentials.")
        return protocol

    # ------------------------------------------------------------ pre-recorded

    async def prerecorded(self, request: web.Request) -> web.Response:
        opts = shapes.Options(request.query)
        limit = int(self.config["max_body_bytes"])
        try:
            if request.content_type == "application/json":
                data = await self._from_url(await bodies.read_body(request, 64 * 1024), limit)
            else:
                data = await bodies.read_body(request, limit)
        except bodies.BodyTooLarge as e:
            raise DeepgramError(413, f"the audio is larger than this server's limit of {e.limit} bytes") from None
        pcm = await asyncio.to_thread(_decode, data, request.query)
        if self._slots is None:
            self._slots = asyncio.Semaphore(int(self.config["max_concurrent"]))
        async with self._slots:
            try:
                transcript = await asyncio.to_thread(
                    recording.transcribe, self.client_factory, pcm, engine=self.engine,
                    start_args=opts.start_args(), timeout=float(self.config["timeout"]))
            except recording.TranscriptionFailed as e:
                status = {"bad_request": 400, "limit_exceeded": 429, "busy": 503, "unavailable": 503}.get(e.code, 500)
                raise DeepgramError(status, f"transcription failed: {e.message}") from None
        body = shapes.prerecorded(transcript, opts, hashlib.sha256(data).hexdigest())
        return web.json_response(body)

    async def _from_url(self, raw: bytes, limit: int) -> bytes:
        try:
            body = json.loads(raw)
        except ValueError:
            raise DeepgramError(400, "the JSON body is not valid JSON") from None
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url:
            raise DeepgramError(400, 'a JSON body must be {"url": "..."}')
        try:
            return await fetch.audio_from_url(url, limit)
        except fetch.FetchError as e:
            raise DeepgramError(e.status, e.message) from None


def _decode(data: bytes, query: Any) -> bytes:
    """The request's audio as 16 kHz LINEAR16: headerless when ``encoding`` says so, else a container."""
    encoding = str(query.get("encoding") or "").lower()
    if encoding:
        if encoding not in ("linear16", "mulaw"):
            raise DeepgramError(400, f"encoding {encoding!r} is not supported here; use linear16, mulaw, or send "
                                "a container (wav, flac, ogg, mp3) without encoding")
        rate = _rate(query, 8000 if encoding == "mulaw" else 16000)
        problem = audio_in.check_speech({"encoding": encoding.upper(), "sampleRateHertz": rate})
        if problem:
            raise DeepgramError(400, problem)
        if str(query.get("channels") or "1") != "1":
            raise DeepgramError(400, "only channels=1 is supported for headerless audio")
        audio = audio_in.ClientAudio()
        audio.set_format(encoding.upper(), rate)
        return audio.decode(data) + audio.flush()
    try:
        return recording.decode(data)
    except recording.BadAudio as e:
        raise DeepgramError(400, f"failed to process audio: corrupt or unsupported data ({e})") from None


def _rate(query: Any, default: int) -> int:
    try:
        return int(query.get("sample_rate") or default)
    except ValueError:
        raise DeepgramError(400, "sample_rate must be an integer") from None


