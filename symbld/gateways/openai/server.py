"""OpenAI's speech-to-text REST API on the Symbl server's listener (docs/openai-api.md).

- ``POST /v1/audio/transcriptions``: multipart ``file`` + ``model`` (+ ``language``, ``prompt``,
  ``response_format``, ``timestamp_granularities[]``, ``stream``), transcribed as one daemon
  connection (``gateways.recording``), answered in the requested format or as server-sent
  ``transcript.text.delta`` / ``transcript.text.done`` events.
- ``POST /v1/audio/translations``: refused with a clear error (the local engine does not translate).
- ``GET /v1/models``: the model names accepted (all served by the daemon's engine).

``Authorization: Bearer <key>`` must be one of ``[openai_api] api_keys``; with none configured the
API refuses every request (saying so). Errors are OpenAI's ``{"error": {message, type, param, code}}``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec
import structlog
from aiohttp import web

from symbld.gateways import api_counters, bodies, recording
from symbld.gateways.openai import formats
from symbld.gateways.openai.realtime import RealtimeTranscription

log = structlog.get_logger(__name__)

API = "openai"
class OpenAiApiTable(msgspec.Struct, kw_only=True):
    """The [openai_api] table, declared (the config check decodes it, naming a wrong key and its line)."""

    api_keys: list[str] = []  # Authorization: Bearer <key>; none = the API refuses every request
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1)] = 25 * 1024 * 1024  # OpenAI's own upload limit
    max_concurrent: Annotated[int, msgspec.Meta(ge=1)] = 4  # recordings transcribed at once; more wait their turn
    timeout: Annotated[float, msgspec.Meta(gt=0)] = 600.0  # seconds one recording may take


DEFAULTS: dict[str, Any] = msgspec.structs.asdict(OpenAiApiTable())
# Names clients send (OpenAI's, and "whisper-1" that most tools default to): all run on the daemon's engine.
MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "local")
LANGUAGE_NAMES = {"en": "english"}


class OpenAIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def response(self) -> web.Response:
        return web.json_response({"error": {"message": self.message, "type": self.kind, "param": self.param,
                                            "code": self.code}}, status=self.status)


class OpenAIApi:
    def __init__(self, client_factory: Callable[[], Any], config: dict[str, Any], engine: str) -> None:
        self.client_factory = client_factory
        self.config = {**DEFAULTS, **config}
        self.engine = engine
        self._slots: asyncio.Semaphore | None = None
        self._realtime = RealtimeTranscription(client_factory, self.config, engine)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/audio/transcriptions", self._counted(self.transcriptions))
        app.router.add_post("/v1/audio/translations", self._counted(self.translations))
        app.router.add_get("/v1/models", self._counted(self.models))
        app.router.add_get("/v1/models/{model}", self._counted(self.model))
        app.router.add_get("/v1/realtime", self._counted(self.realtime))

    def _counted(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                 ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                self._authorize(request)
                response = await handler(request)
            except OpenAIError as e:
                response = e.response()
            except Exception:  # a bug here must still answer in the API's shape, and the server goes on
                log.exception("openai api request failed", path=request.path)
                response = OpenAIError(500, "The server had an error while processing your request.",
                                       kind="server_error").response()
            api_counters.count(API, response.status)
            return response
        return run

    def _authorize(self, request: web.Request) -> None:
        keys = self.config["api_keys"] or []
        presented = bodies.header_credential(request, "Bearer") or _protocol_key(request)
        if not keys:
            raise OpenAIError(401, "No API keys are configured on this server: set [openai_api] api_keys.",
                              code="invalid_api_key")
        if not bodies.key_allowed(presented, keys):
            shown = f"{presented[:3]}...{presented[-4:]}" if presented and len(presented) > 8 else "(none)"
            raise OpenAIError(401, f"Incorrect API key provided: {shown}.", code="invalid_api_key")

    # ------------------------------------------------------------ realtime transcription

    async def realtime(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise OpenAIError(400, "The Realtime API is a WebSocket: connect with Upgrade: websocket.")
        if request.query.get("intent") != "transcription" and request.query.get("model"):
            raise OpenAIError(400, "Only transcription sessions are served here: connect with "
                              "?intent=transcription.", "intent", "unsupported_session_type")
        # A browser offers "realtime" and its key as subprotocols; one must be echoed or it drops the socket.
        offered = _offered(request)
        protocol = "realtime" if "realtime" in offered else next(iter(offered), None)
        return await self._realtime.serve(request, protocol)

    # ------------------------------------------------------------ models

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [self._model(m) for m in MODELS]})

    async def model(self, request: web.Request) -> web.Response:
        name = request.match_info["model"]
        if name not in MODELS:
            raise OpenAIError(404, f"The model '{name}' does not exist", "model", "model_not_found")
        return web.json_response(self._model(name))

    @staticmethod
    def _model(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 0, "owned_by": "symbld"}

    # ------------------------------------------------------------ transcriptions

    async def translations(self, request: web.Request) -> web.Response:
        raise OpenAIError(400, "Translation is not supported by this server: its engine transcribes in the "
                          "language spoken. Use /v1/audio/transcriptions.", None, "unsupported_endpoint")

    async def transcriptions(self, request: web.Request) -> web.StreamResponse:
        form = await self._form(request)
        params = _params(form)
        pcm = await asyncio.to_thread(_decode, params["file"])
        config = {"languageCode": _language_code(params["language"])} if params["language"] else None
        if self._slots is None:
            self._slots = asyncio.Semaphore(int(self.config["max_concurrent"]))
        async with self._slots:
            if params["stream"]:
                return await self._stream(request, pcm, config)
            transcript = await self._transcribe(pcm, config)
        body, ctype = formats.render(transcript, params["response_format"],
                                     LANGUAGE_NAMES.get(params["language"] or "en", params["language"] or "en"),
                                     params["granularities"])
        if isinstance(body, str):
            return web.Response(text=body, content_type=ctype)
        return web.json_response(body)

    async def _form(self, request: web.Request) -> dict[str, list[bytes | str]]:
        if request.content_type != "multipart/form-data":
            raise OpenAIError(415, f"Content-Type must be multipart/form-data, got {request.content_type!r}.",
                              None, "unsupported_content_type")
        try:
            return await bodies.read_form(request, int(self.config["max_body_bytes"]))
        except bodies.BodyTooLarge as e:
            raise OpenAIError(413, f"Maximum content size limit ({e.limit}) exceeded.", "file",
                              "request_too_large") from None
        except bodies.BadBody as e:
            raise OpenAIError(400, str(e), None, "invalid_body") from None

    async def _transcribe(self, pcm: bytes, config: dict[str, Any] | None,
                          on_segment: Callable[[recording.Segment], None] | None = None) -> recording.Transcript:
        try:
            return await asyncio.to_thread(recording.transcribe, self.client_factory, pcm, engine=self.engine,
                                           config=config, on_segment=on_segment,
                                           timeout=float(self.config["timeout"]))
        except recording.TranscriptionFailed as e:
            status = {"bad_request": 400, "limit_exceeded": 429, "busy": 503, "unavailable": 503,
                      "timeout": 504}.get(e.code, 500)
            kind = "invalid_request_error" if status < 500 else "server_error"
            raise OpenAIError(status, f"The transcription failed: {e.message}", None, e.code, kind) from None

    async def _stream(self, request: web.Request, pcm: bytes, config: dict[str, Any] | None) -> web.StreamResponse:
        """Server-sent events: a ``transcript.text.delta`` per finished sentence, then ``.done``."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[recording.Segment] = asyncio.Queue()

        def on_segment(segment: recording.Segment) -> None:  # on the transcription's thread
            loop.call_soon_threadsafe(queue.put_nowait, segment)
        task = asyncio.ensure_future(self._transcribe(pcm, config, on_segment=on_segment))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await resp.prepare(request)
        first = True
        try:
            while not (task.done() and queue.empty()):
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    continue
                segment = getter.result()
                delta = segment.text if first else " " + segment.text
                first = False
                await _sse(resp, {"type": "transcript.text.delta", "delta": delta, "logprobs": None})
            try:
                transcript = task.result()
            except OpenAIError as e:
                await _sse(resp, {"type": "error", "error": {"message": e.message, "type": e.kind, "code": e.code,
                                                             "param": None}})
            else:
                await _sse(resp, {"type": "transcript.text.done", "text": transcript.text, "logprobs": None,
                                  "usage": {"type": "duration", "seconds": transcript.duration}})
        finally:
            if not task.done():
                task.cancel()
        await resp.write_eof()
        return resp


async def _sse(resp: web.StreamResponse, event: dict[str, Any]) -> None:
    await resp.write(f"data: {json.dumps(event)}\n\n".encode())


def _offered(request: web.Request) -> list[str]:
    return [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]


def _protocol_key(request: web.Request) -> str | None:
    """A browser's key, offered as the subprotocol ``openai-insecure-api-key.<key>`` (it cannot set headers)."""
    for proto in _offered(request):
        if proto.startswith("openai-insecure-api-key."):
            return proto.split(".", 1)[1]
    return None


def _decode(data: bytes) -> bytes:
    try:
        return recording.decode(data)
    except recording.BadAudio as e:
        raise OpenAIError(400, f"Invalid file format: {e}. Supported: whatever libsndfile reads "
                          "(wav, flac, ogg, mp3, ...).", "file", "invalid_file_format") from None


def _text(form: dict[str, list[bytes | str]], name: str) -> str | None:
    values = form.get(name) or []
    if not values:
        return None
    value = values[0]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _params(form: dict[str, list[bytes | str]]) -> dict[str, Any]:
    """The request's fields checked; an OpenAIError naming the first bad one."""
    files = form.get("file") or []
    if not files or not isinstance(files[0], bytes):
        raise OpenAIError(400, "Missing required parameter: 'file'.", "file", "missing_required_parameter")
    model = _text(form, "model")
    if not model:
        raise OpenAIError(400, "Missing required parameter: 'model'.", "model", "missing_required_parameter")
    if model not in MODELS:
        raise OpenAIError(400, f"The model '{model}' does not exist; this server serves {', '.join(MODELS)}.",
                          "model", "model_not_found")
    fmt = _text(form, "response_format") or "json"
    if fmt not in formats.FORMATS:
        raise OpenAIError(400, f"Invalid response_format {fmt!r}: one of {', '.join(formats.FORMATS)}.",
                          "response_format", "invalid_value")
    granularities = [g if isinstance(g, str) else g.decode("utf-8", "replace")
                     for g in (form.get("timestamp_granularities[]") or form.get("timestamp_granularities") or [])]
    for g in granularities:
        if g not in formats.GRANULARITIES:
            raise OpenAIError(400, f"Invalid timestamp_granularities value {g!r}: word or segment.",
                              "timestamp_granularities", "invalid_value")
    if granularities and fmt != "verbose_json":
        raise OpenAIError(400, "timestamp_granularities needs response_format verbose_json.",
                          "timestamp_granularities", "invalid_value")
    stream = (_text(form, "stream") or "false").lower() == "true"
    if stream and fmt not in ("json", "text"):
        raise OpenAIError(400, "stream=true is served with response_format json or text.", "stream", "invalid_value")
    language = _text(form, "language")
    if language is not None and not (1 < len(language) <= 16 and language.replace("-", "").isalnum()):
        raise OpenAIError(400, f"Invalid language {language[:20]!r}: an ISO-639-1 code such as 'en'.",
                          "language", "invalid_value")
    return {"file": files[0], "model": model, "response_format": fmt, "granularities": granularities,
            "stream": stream, "language": language, "prompt": _text(form, "prompt")}


def _language_code(language: str) -> str:
    """OpenAI's ISO-639-1 code as the daemon's languageCode (Symbl's ``en-US`` style for English)."""
    return "en-US" if language.lower() == "en" else language
