"""Symbl's Async API for recordings: ``POST /v1/process/audio``, ``/v1/process/audio/url``, ``GET /v1/job/{jobId}``.

Each request is one daemon connection (``gateways.recording``: a push source fed the decoded file),
so the conversation is then read through the Conversation API like a stream's, and listed by
``symblctl conversations``. The answer comes as soon as the connection has started
(``{conversationId, jobId}``); the job is ``in_progress`` until its ``conversation_completed``.
Jobs are remembered in memory (the last ``MAX_JOBS``): a job id from before a restart is 404, while
its conversation stays readable from the journal.

Auth is the Symbl server's (``x-api-key`` or ``Authorization: Bearer`` with a token from
``/oauth2/token:generate``); errors are its ``{"message", "details"}`` shape.
"""

from __future__ import annotations

import asyncio
import collections
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from symbld.gateways import api_counters, bodies, fetch, recording

log = structlog.get_logger(__name__)

API = "symbl_async"
MAX_BODY = 512 * 1024 * 1024  # Symbl's own limit for a recording sent to the Async API
MAX_JOBS = 1000
TIMEOUT = 3600.0  # seconds one recording may take
REFUSED_TYPES = ("application/json", "multipart/form-data", "application/x-www-form-urlencoded")


class AsyncApiError(Exception):
    def __init__(self, status: int, message: str, details: str) -> None:
        super().__init__(message)
        self.status, self.message, self.details = status, message, details

    def response(self) -> web.Response:
        return web.json_response({"message": self.message, "details": self.details}, status=self.status)


@dataclass
class Job:
    job_id: str
    conversation_id: str = ""
    connection_id: str = ""
    status: str = "scheduled"  # scheduled → in_progress → completed | failed
    error: str | None = None


class AsyncApi:
    def __init__(self, client_factory: Callable[[], Any], authorized: Callable[[web.Request], bool],
                 engine: str) -> None:
        self.client_factory = client_factory
        self.authorized = authorized
        self.engine = engine
        self.jobs: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._tasks: set[asyncio.Future[Any]] = set()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/process/audio", self._counted(self.process_audio))
        app.router.add_post("/v1/process/audio/url", self._counted(self.process_audio_url))
        app.router.add_get("/v1/job/{jobId}", self._counted(self.job))

    def _counted(self, handler: Callable[[web.Request], Awaitable[web.Response]]
                 ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def run(request: web.Request) -> web.Response:
            try:
                if not self.authorized(request):
                    raise AsyncApiError(401, "Token validation failed for provided token.", "Unauthorized")
                response = await handler(request)
            except AsyncApiError as e:
                response = e.response()
            except Exception:  # a bug here must still answer in the API's shape, and the server goes on
                log.exception("symbl async api request failed", path=request.path)
                response = AsyncApiError(500, "Internal error", "the request failed on the server").response()
            api_counters.count(API, response.status)
            return response
        return run

    async def job(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["jobId"])
        if job is None:
            raise AsyncApiError(404, "Job not found", "no job with that id on this server (jobs are kept in memory)")
        return web.json_response({"id": job.job_id, "status": job.status})

    async def process_audio(self, request: web.Request) -> web.Response:
        if request.content_type in REFUSED_TYPES or request.content_type.startswith("text/"):
            raise AsyncApiError(415, "Unsupported Content-Type",
                                f"the body must be the audio file itself (audio/wav, audio/mpeg, ...), "
                                f"not {request.content_type}")
        try:
            data = await bodies.read_body(request, MAX_BODY)
        except bodies.BodyTooLarge as e:
            raise AsyncApiError(413, "Request entity too large", f"the file is larger than {e.limit} bytes") from None
        return await self._submit(data, dict(request.query), {})

    async def process_audio_url(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            raise AsyncApiError(415, "Unsupported Content-Type", "the body must be JSON: {\"url\": ...}")
        try:
            body = json.loads(await bodies.read_body(request, 64 * 1024))
        except bodies.BodyTooLarge:
            raise AsyncApiError(413, "Request entity too large", "the JSON body is over 64 KiB") from None
        except ValueError:
            raise AsyncApiError(400, "Invalid request body", "body must be JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("url"), str) or not body["url"]:
            raise AsyncApiError(400, "Invalid request body", "url is required")
        try:
            data = await fetch.audio_from_url(body["url"], MAX_BODY)
        except fetch.FetchError as e:
            raise AsyncApiError(e.status, "Cannot read the url", e.message) from None
        return await self._submit(data, dict(request.query), body)

    async def _submit(self, data: bytes, query: dict[str, str], body: dict[str, Any]) -> web.Response:
        params = {**query, **{k: v for k, v in body.items() if k != "url"}}
        if params.get("webhookUrl"):
            raise AsyncApiError(400, "Invalid parameter", "webhookUrl is not supported by this server: "
                                "poll GET /v1/job/{jobId}")
        start_args = _start_args(params)
        try:
            pcm = await asyncio.to_thread(recording.decode, data)
        except recording.BadAudio as e:
            raise AsyncApiError(400, "Invalid audio file", str(e)) from None
        job = Job(str(uuid.uuid4()))
        loop = asyncio.get_running_loop()
        started: asyncio.Future[dict[str, Any]] = loop.create_future()

        def on_started(conn: dict[str, Any]) -> None:
            def settle() -> None:
                if not started.done():
                    started.set_result(conn)
            loop.call_soon_threadsafe(settle)

        task = asyncio.ensure_future(asyncio.to_thread(recording.transcribe, self.client_factory, pcm,
                                                       engine=self.engine, start_args=start_args,
                                                       on_started=on_started, timeout=TIMEOUT))
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._finished(job, t))
        await asyncio.wait((started, task), return_when=asyncio.FIRST_COMPLETED)
        if not started.done():  # the daemon refused the start
            exc = task.exception()
            code = getattr(exc, "code", "internal")
            status = {"bad_request": 400, "limit_exceeded": 429, "busy": 503, "unavailable": 503}.get(code, 500)
            raise AsyncApiError(status, "Cannot process the audio", str(getattr(exc, "message", exc)))
        conn = started.result()
        job.connection_id, job.conversation_id = str(conn["connectionId"]), str(conn.get("conversationId") or "")
        if job.status == "scheduled":
            job.status = "in_progress"
        self.jobs[job.job_id] = job
        while len(self.jobs) > MAX_JOBS:
            self.jobs.popitem(last=False)
        log.info("symbl async job started", job_id=job.job_id, connection_id=job.connection_id)
        return web.json_response({"conversationId": job.conversation_id, "jobId": job.job_id}, status=201)

    def _finished(self, job: Job, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        exc = task.exception() if not task.cancelled() else None
        job.status = "failed" if task.cancelled() or exc is not None else "completed"
        if exc is not None:
            job.error = str(exc)
            log.warning("symbl async job failed", job_id=job.job_id, error=str(exc))


def _start_args(params: dict[str, Any]) -> dict[str, Any]:
    """The SDK's query (or URL body) parameters as the daemon's start arguments."""
    config: dict[str, Any] = {}
    if params.get("name"):
        config["meetingTitle"] = str(params["name"])[:200]
    if params.get("languageCode"):
        config["languageCode"] = str(params["languageCode"])[:16]
    args: dict[str, Any] = {"config": config} if config else {}
    vocabulary = params.get("customVocabulary")
    if isinstance(vocabulary, str):  # the query form: a JSON list or a comma-separated string
        try:
            vocabulary = json.loads(vocabulary)
        except ValueError:
            vocabulary = [v.strip() for v in vocabulary.split(",") if v.strip()]
    if isinstance(vocabulary, list) and vocabulary:
        args["customVocabulary"] = [str(v)[:100] for v in vocabulary][:100]
    return args
