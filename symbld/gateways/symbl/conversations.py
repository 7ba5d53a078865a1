"""Symbl's Conversation API (``/v1/conversations/{conversationId}/...``) from the daemon's journal.

The server stays a client of the daemon: ``find_conversation`` names the connections that carry
a conversationId, ``history`` gives their events (live ones answer what they have so far), and
``delete_connection`` removes them from disk. The response shapes follow the models of Symbl's
own SDKs (PyPI ``symbl-rest`` 1.0.14, npm ``@symblai/symbl-js``), made by ``conversation_bodies.py``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from symblctl.client import DaemonError
from symbld.core import speakers
from symbld.gateways.symbl.conversation_bodies import (
    TASK_TYPES,
    NotFound,
    analytics,
    conversation,
    entities,
    insights,
    members,
    messages,
    topics,
    trackers,
    transcript,
)
from symbld.insights.sentiment import ensure_on_api_messages
from symbld.insights.summary import summary_of_events

log = structlog.get_logger(__name__)

NOT_FOUND = {"message": "The conversationId is either invalid or does not exist."}
Shape = Callable[[list[dict[str, Any]], str, web.Request, dict[str, dict[str, Any]]], Any]


class ConversationApi:
    """Routes under ``/v1/conversations``; ``authorized(request)`` is the server's REST auth."""

    def __init__(self, client_factory: Callable[[], Any], authorized: Callable[[web.Request], bool]) -> None:
        self.client_factory = client_factory
        self.authorized = authorized
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="symbl-rest")

    def add_routes(self, app: web.Application) -> None:
        base = "/v1/conversations/{conversationId}"
        app.router.add_get(base, self.handler(lambda ev, cid, r, names: conversation(ev, cid, names)))
        app.router.add_delete(base, self.delete)
        app.router.add_get(base + "/messages", self.handler(self._messages))
        app.router.add_get(base + "/questions", self.handler(
            lambda ev, cid, r, names: {"questions": insights(ev, ("question",), names)}))
        app.router.add_get(base + "/action-items", self.handler(
            lambda ev, cid, r, names: {"actionItems": insights(ev, ("action_item",), names)}))
        app.router.add_get(base + "/follow-ups", self.handler(
            lambda ev, cid, r, names: {"followUps": insights(ev, ("follow_up",), names)}))
        app.router.add_get(base + "/insights", self.handler(lambda ev, cid, r, names: {"insights": [
            {k: i[k] for k in ("id", "text", "type", "score", "messageIds")} | {"entities": i.get("entities", [])}
            for i in insights(ev, ("question", *TASK_TYPES))]}))
        app.router.add_get(base + "/topics", self.handler(lambda ev, cid, r, names: {"topics": topics(ev)}))
        app.router.add_get(base + "/trackers", self.handler(lambda ev, cid, r, names: trackers(ev)))
        app.router.add_get(base + "/entities", self.handler(lambda ev, cid, r, names: {"entities": entities(ev)}))
        app.router.add_get(base + "/members", self.handler(
            lambda ev, cid, r, names: {"members": members(ev, names)}))
        app.router.add_get(base + "/analytics", self.handler(lambda ev, cid, r, names: analytics(ev)))
        # Symbl's summary: sentences with the ids of the messages they come from (symbld.insights.summary).
        app.router.add_get(base + "/summary", self.handler(lambda ev, cid, r, names: {
            "summary": summary_of_events(ev)}))
        app.router.add_put(base + "/members/{memberId}", self.put_member)
        app.router.add_post(base + "/transcript", self.formatted_transcript)

    @staticmethod
    def _messages(events: list[dict[str, Any]], cid: str, request: web.Request,
                  names: dict[str, dict[str, Any]]) -> dict[str, Any]:
        out = messages(events, cid, request.query.get("verbose", "").lower() == "true", names)
        if request.query.get("sentiment", "").lower() == "true":
            ensure_on_api_messages(out)
        return {"messages": out}

    async def _events(self, conversation_id: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        """The conversation's events (every connection's, speaker events applied, merged in time
        order) and the member names PUT for it."""
        def load() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
            with self.client_factory() as client:
                found = client.request("find_conversation", conversationId=conversation_id)["connections"]
                if not found:
                    raise NotFound(conversation_id)
                events = speakers.conversation_events(client.all_history(cid) for cid in found)
                try:
                    names = client.request("conversation_members", conversationId=conversation_id)["members"]
                except DaemonError as exc:
                    if exc.code != "invalid_state":
                        raise
                    names = {}  # a daemon without a journal keeps no names: none were given
            return events, names
        return await asyncio.get_running_loop().run_in_executor(self.executor, load)

    async def _conversation(self, conversation_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]] | web.Response:
        """``_events``, or the response that says why there are none (Symbl's 404, a daemon error)."""
        try:
            return await self._events(conversation_id)
        except NotFound:
            return web.json_response(NOT_FOUND, status=404)
        except DaemonError as exc:
            return _daemon_failed(exc)

    def handler(self, shape: Shape) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            if not self.authorized(request):
                return _unauthorized()
            cid = request.match_info["conversationId"]
            loaded = await self._conversation(cid)
            if isinstance(loaded, web.Response):
                return loaded
            events, names = loaded
            return web.json_response(shape(events, cid, request, names))
        return handle

    async def put_member(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return _unauthorized()
        cid, member_id = request.match_info["conversationId"], request.match_info["memberId"]
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"message": "body must be JSON"}, status=400)
        loaded = await self._conversation(cid)
        if isinstance(loaded, web.Response):
            return loaded
        events, _ = loaded
        if not isinstance(body, dict) or not any(m["id"] == member_id for m in members(events)):
            return web.json_response({"message": f"member {member_id} not found in the conversation"}, status=404)
        member = {"id": member_id, **{k: body[k] for k in ("name", "email") if isinstance(body.get(k), str)}}

        def keep() -> None:  # next to the journal, so the name survives restarts
            with self.client_factory() as client:
                client.request("conversation_members", conversationId=cid, member=member)
        try:
            await asyncio.get_running_loop().run_in_executor(self.executor, keep)
        except DaemonError as exc:
            return _daemon_failed(exc)
        return web.json_response({"message": "Member with id: " + member_id + " for conversationId: " + cid
                                  + " updated successfully! The update should be reflected in all messages"
                                  " and insights along with this conversation"})

    async def formatted_transcript(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return _unauthorized()
        cid = request.match_info["conversationId"]
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            return web.json_response({"message": "body must be JSON"}, status=400)
        body = body if isinstance(body, dict) else {}
        content_type = body.get("contentType") or "text/markdown"
        if content_type not in ("text/markdown", "text/srt"):
            return web.json_response({"message": "contentType must be text/markdown or text/srt"}, status=400)
        loaded = await self._conversation(cid)
        if isinstance(loaded, web.Response):
            return loaded
        events, names = loaded
        text = transcript(events, content_type, body.get("showSpeakerSeparation", True) is not False, names)
        return web.json_response({"transcript": {"payload": text, "contentType": content_type}})

    async def delete(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return _unauthorized()
        cid = request.match_info["conversationId"]

        def remove() -> list[str]:
            with self.client_factory() as client:
                found: list[str] = client.request("find_conversation", conversationId=cid)["connections"]
                for connection in found:
                    client.request("delete_connection", connectionId=connection)
                if found:
                    client.request("conversation_members", conversationId=cid, forget=True)
                return found
        try:
            found = await asyncio.get_running_loop().run_in_executor(self.executor, remove)
        except Exception as exc:  # noqa: BLE001 - a live connection: stop it first
            return web.json_response({"message": str(getattr(exc, "message", exc))}, status=409)
        if not found:
            return web.json_response(NOT_FOUND, status=404)
        log.info("symbl conversation deleted", conversation_id=cid, connections=len(found))
        return web.json_response({"message": f"successfully deleted the conversation: {cid}"})


def _unauthorized() -> web.Response:
    return web.json_response({"message": "Token validation failed for provided token."}, status=401)


def _daemon_failed(exc: DaemonError) -> web.Response:
    """The daemon could not answer (not running, busy) or refused (no journal to keep names in)."""
    status = {"unavailable": 503, "busy": 503, "invalid_state": 409}.get(exc.code, 500)
    log.warning("symbl conversation api: daemon error", code=exc.code, error=exc.message)
    return web.json_response({"message": exc.message, "details": exc.code}, status=status)
