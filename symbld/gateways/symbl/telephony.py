"""Symbl's Telephony API and speaker events over HTTP: ``POST /v1/endpoint:connect`` [29-31], ``/v1/event/{id}`` [32].

A call is a conversation with one leg: a daemon connection whose source is Symbl's ``endpoint`` (our
sip/pstn source). Its clients listen on ``resultWebSocketUrl`` (``streaming.py``'s subscribe). A daemon
that cannot do telephony answers 501.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from symbld.gateways.symbl import summary_links
from symbld.gateways.symbl.live import LiveConversations
from symbld.gateways.symbl.replies import UNAUTHORIZED, json_error
from symbld.gateways.symbl.state import StartFailed

INSIGHT_TYPES = ("question", "action_item", "follow_up")  # what a call's insightTypes may select


def _endpoint_problem(endpoint: Any) -> str | None:
    """Why Symbl's ``endpoint`` cannot be called, or None."""
    if not isinstance(endpoint, dict) or endpoint.get("type") not in ("sip", "pstn"):
        return "endpoint.type must be 'sip' or 'pstn'"
    if endpoint["type"] == "sip" and not endpoint.get("uri"):
        return "endpoint.uri is required for sip"
    if endpoint["type"] == "pstn" and not endpoint.get("phoneNumber"):
        return "endpoint.phoneNumber is required for pstn"
    return None


def _language(body: dict[str, Any]) -> Any:
    """The call's language: the first of ``languages`` (a code or ``{"code": ...}``), else en-US."""
    languages = body.get("languages") or []
    language = languages[0] if languages else "en-US"
    return language.get("code", "en-US") if isinstance(language, dict) else language


def start_args(body: dict[str, Any], engine: str) -> dict[str, Any]:
    """The daemon ``start`` of a call an ``endpoint:connect`` start asks for (its endpoint already checked)."""
    actions = body.get("actions")
    session = (body.get("data") or {}).get("session") or {}
    config: dict[str, Any] = {"languageCode": _language(body)}
    if session.get("name"):
        config["meetingTitle"] = session["name"]
    if body.get("timezone"):
        config["timezone"] = body["timezone"]
    args: dict[str, Any] = {
        "source": {k: v for k, v in body["endpoint"].items() if v is not None},  # Symbl's endpoint = our source
        "engine": engine,
        "config": config,
        "actions": actions if isinstance(actions, list) else [],  # the Python SDK sends {}
    }
    if isinstance(body.get("insightTypes"), list):
        args["insightTypes"] = [t for t in body["insightTypes"] if t in INSIGHT_TYPES]
    return args


def _urls(request: web.Request, cid: str) -> dict[str, str]:
    host = request.host
    ws_scheme = "wss" if request.scheme == "https" else "ws"
    return {"eventUrl": f"{request.scheme}://{host}/v1/event/{cid}",
            "resultWebSocketUrl": f"{ws_scheme}://{host}/events/{cid}"}


class TelephonyEndpoints:
    """The HTTP side of calls and speaker events; ``authorized`` checks a request's token."""

    def __init__(self, conversations: LiveConversations, config: dict[str, Any],
                 authorized: Callable[[web.Request], bool]) -> None:
        self.conversations = conversations
        self.config = config
        self.authorized = authorized

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/endpoint:connect", self.endpoint_connect)
        app.router.add_post("/v1/event/{cid:.+}", self.speaker_event)

    async def endpoint_connect(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return json_error(401, UNAUTHORIZED, "Unauthorized")
        try:
            body = await request.json()
        except ValueError:
            return json_error(400, "Invalid request body", "body must be JSON")
        if not isinstance(body, dict):
            return json_error(400, "Invalid request body", "body must be a JSON object")
        op = body.get("operation")
        if op == "start":
            return await self._start(request, body)
        if op == "stop":
            return await self._stop(request, body)
        return json_error(400, "Invalid operation", "operation must be 'start' or 'stop'")

    async def _start(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        problem = _endpoint_problem(body.get("endpoint"))
        if problem:
            return json_error(400, "Invalid endpoint", problem)
        cid = str(uuid.uuid4())
        try:
            conv = await self.conversations.open(cid, "telephony", start_args(body, self.config["engine"]))
        except StartFailed as exc:
            if exc.status == 501:
                return json_error(501, "Telephony is not available on this server", exc.message)
            return json_error(exc.status, "Cannot start the call", exc.message)
        self.conversations.start_pump(conv)
        return web.json_response({**_urls(request, cid), "connectionId": cid,
                                  "conversationId": conv.conversation_id}, status=201)

    async def _stop(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        cid = body.get("connectionId")
        if not isinstance(cid, str):
            return json_error(400, "Invalid request", "connectionId is required for stop")
        conv = self.conversations.by_id.get(cid) or self.conversations.ended_calls.get(cid)
        if conv is None or conv.kind != "telephony":
            return json_error(404, "Connection not found", f"no call with connectionId {cid}")
        if not conv.ended:
            await self.conversations.stop(conv)
        summary = await summary_links.summary_info(self.conversations.client_factory, conv.legs[0].daemon_id)
        return web.json_response({**_urls(request, conv.symbl_id), "connectionId": conv.symbl_id,
                                  "conversationId": conv.conversation_id, "summaryInfo": summary})

    async def speaker_event(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return json_error(401, UNAUTHORIZED, "Unauthorized")
        conv = self.conversations.by_id.get(request.match_info["cid"])
        if conv is None or conv.ended:
            return json_error(404, "Connection not found", "no live connection with that id")
        try:
            body = await request.json()
        except ValueError:
            return json_error(400, "Invalid request body", "body must be JSON")
        problem = await self.conversations.speaker_event(conv, body)
        if problem:
            return json_error(400, "Invalid speaker event", problem)
        return web.Response(status=204)
