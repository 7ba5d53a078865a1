"""The summary page server: the daemon's own small aiohttp app on loopback (``[page]``, on by default).

- ``GET /meeting/<conversationId>?s=<signature>``: the page, rendered on the server (no JavaScript
  needed); a missing or wrong signature is 403, an id the daemon does not know is 404.
- ``GET /meeting/<conversationId>/events?s=<signature>``: server-sent events while the conversation
  is live: ``page`` (the re-rendered ``<main>``) after every change, ``end`` when it completed.
- ``GET /static/page.css``, ``/static/page.js``: the page's own files (package data, no build step).

A conversation whose speakers each had their own connection (Symbl's one socket per speaker) is
one page: every connection's events, speaker events applied, merged in time order
(``core.speakers.conversation_events``, as the Conversation API reads them); it is complete when
every connection has completed.

It runs on its own thread and event loop (``page-server``) and reads the daemon's state only through
the bus history (memory, else the journal) and the connection service. The bus tells it that a
watched conversation has news through ``EventBus.listeners`` (called on the bus thread: it only
schedules a wake-up on this loop, never blocks).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import threading
from importlib import resources
from typing import TYPE_CHECKING, Annotated

import msgspec
import structlog
from aiohttp import web

from symbld.core import speakers
from symbld.web import links, render, view

if TYPE_CHECKING:
    from symbld.core.ports import PageHost

log = structlog.get_logger(__name__)

class PageTable(msgspec.Struct, kw_only=True):
    """The ``[page]`` table, declared (the config check decodes it: a port out of range names its key and line)."""

    host: Annotated[str, msgspec.Meta(min_length=1)] = "127.0.0.1"  # loopback: the link is the credential
    # 0 = no summary page; a port in use falls back to a free one (logged, links follow)
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 5081
_KEEPALIVE_S = 15.0  # an SSE comment this often, so a vanished browser is noticed
_COALESCE_S = 0.25  # at most ~4 renders a second per watcher while interims stream in
_STATIC = {"page.css": "text/css", "page.js": "text/javascript"}
_SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                     "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'",
                     "Cache-Control": "no-store"}


class PageServer:
    def __init__(self, daemon: PageHost, page_links: links.PageLinks | None = None) -> None:
        self.daemon = daemon
        self.links = page_links
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._wakers: dict[str, set[asyncio.Event]] = {}  # conversationId -> its watchers
        self._watched: frozenset[str] = frozenset()  # read by the bus thread; replaced, never mutated
        self._closing = False

    # -- the app ------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/meeting/{conv}", self.page)
        app.router.add_get("/meeting/{conv}/events", self.events)
        app.router.add_get("/static/{name}", self.static)
        from symbld.web import metrics  # prometheus-client, loaded with the page server only

        metrics.add_routes(app, self.daemon)  # Prometheus /metrics (web/metrics.py)
        return app

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _STATIC:
            raise web.HTTPNotFound()
        text = resources.files("symbld.web").joinpath(f"static/{name}").read_text(encoding="utf-8")
        return web.Response(text=text, content_type=_STATIC[name], headers={"Cache-Control": "no-cache"})

    async def _connection(self, request: web.Request) -> tuple[str, str]:
        """(connectionId, conversationId) of a request with a valid signature; 403 or 404 otherwise."""
        conv = request.match_info["conv"]
        assert self.links is not None
        if not self.links.valid(conv, request.query.get("s")):
            raise web.HTTPForbidden(text="this link is not signed for that conversation\n")
        cid = await asyncio.to_thread(self._known_connection, conv)
        if cid is None:
            raise web.HTTPNotFound(text=f"no conversation {conv}\n")
        return cid, conv

    def _known_connection(self, value: str) -> str | None:
        service = self.daemon.service
        cid = service.resolve_connection_id(value)
        return cid if service.known(cid) else None

    def _conversation(self, cid: str, conv: str) -> tuple[str, list[str]]:
        """The conversationId of a known connection and all its connections (``cid`` first)."""
        first = self.daemon.bus.history(cid, 0, 1)
        conversation = str(first[0].get("conversationId") or conv) if first else conv
        others = self.daemon.service.conversation_connections(conversation)
        return conversation, [cid, *(c for c in others if c != cid)]

    def _page(self, conversation: str, legs: list[str]) -> view.Page:
        live = self.daemon.service.conversation_connections(conversation, journal=False)
        legs += [c for c in live if c not in legs]  # a speaker who joined while the page was open
        events = speakers.conversation_events(self.daemon.bus.all_events(c) for c in legs)
        return view.build(legs[0], conversation, events, connections=len(legs))

    async def page(self, request: web.Request) -> web.Response:
        cid, conv = await self._connection(request)
        conversation, legs = await asyncio.to_thread(self._conversation, cid, conv)
        page = await asyncio.to_thread(self._page, conversation, legs)
        events_url = f"/meeting/{conv}/events?s={request.query['s']}"
        return web.Response(text=render.document(page, events_url), content_type="text/html",
                            headers=_SECURITY_HEADERS)

    async def events(self, request: web.Request) -> web.StreamResponse:
        cid, conv = await self._connection(request)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        waker = asyncio.Event()
        conversation, legs = await asyncio.to_thread(self._conversation, cid, conv)
        self._watch(conversation, waker)
        last_seq = -1
        try:
            while not self._closing:
                waker.clear()  # before reading: news that lands while we render wakes the next round
                page = await asyncio.to_thread(self._page, conversation, legs)
                if page.seq != last_seq:
                    await resp.write(_sse("page", render.main_html(page), page.seq))
                    last_seq = page.seq
                if page.ended:
                    await resp.write(_sse("end", "complete", page.seq))
                    break
                try:
                    await asyncio.wait_for(waker.wait(), _KEEPALIVE_S)
                except TimeoutError:
                    await resp.write(b": keep-alive\n\n")
                    continue
                await asyncio.sleep(_COALESCE_S)  # a rate limit: let a burst of interims land as one update
        except ConnectionResetError:
            pass  # the browser went away
        finally:
            self._unwatch(conversation, waker)
        return resp

    # -- live news from the bus ---------------------------------------------------------------
    def _watch(self, conversation: str, waker: asyncio.Event) -> None:
        self._wakers.setdefault(conversation, set()).add(waker)
        self._watched = frozenset(self._wakers)

    def _unwatch(self, conversation: str, waker: asyncio.Event) -> None:
        group = self._wakers.get(conversation)
        if group is not None:
            group.discard(waker)
            if not group:
                del self._wakers[conversation]
        self._watched = frozenset(self._wakers)

    def on_bus_event(self, topic: bytes, _body: bytes) -> None:
        """EventBus listener (bus thread): wake the watchers of that connection's conversation."""
        if not self._watched or not topic.startswith(b"connection."):
            return
        try:  # an exception here would stop the bus thread: never let one out
            cid = topic[len(b"connection."):topic.rfind(b".")].decode(errors="replace")
            session = self.daemon.sessions.find(cid)  # news comes from live connections: all in memory
            if session is not None and session.conversation_id in self._watched:
                self.loop.call_soon_threadsafe(self._wake, session.conversation_id)
        except RuntimeError:
            pass  # the loop closed at shutdown
        except Exception:
            log.exception("page_wake_failed")

    def _wake(self, conversation: str) -> None:
        for waker in self._wakers.get(conversation, ()):
            waker.set()

    # -- running -------------------------------------------------------------------------------
    def start(self, host: str, port: int, secret: bytes) -> None:
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._runner = web.AppRunner(self.app(), handle_signals=False, shutdown_timeout=2, access_log=None)

        async def bind() -> int:
            assert self._runner is not None
            await self._runner.setup()
            try:
                site = web.TCPSite(self._runner, host, port)
                await site.start()
            except OSError as e:
                if e.errno != errno.EADDRINUSE or port == 0:
                    raise
                log.warning("page_port_in_use", port=port, fallback="a free port; summary links name it")
                site = web.TCPSite(self._runner, host, 0)
                await site.start()
            return int(self._runner.addresses[0][1])  # the bound port (a refused first site has no server)

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                ready.set_result(self.loop.run_until_complete(bind()))
            except Exception as e:  # noqa: BLE001 - handed to the starting thread, which raises it
                ready.set_exception(e)
                return
            self.loop.run_forever()
            self.loop.close()

        self._thread = threading.Thread(target=run, name="page-server", daemon=True)
        self._thread.start()
        self.port = ready.result(timeout=15)
        shown = f"[{host}]" if ":" in host else host
        self.links = links.PageLinks(secret, f"http://{shown}:{self.port}")

    def close(self, timeout: float = 5.0) -> None:
        links.install(None)
        if self._thread is None or not self._thread.is_alive():
            return
        self._closing = True

        async def stop() -> None:
            for cid in list(self._wakers):
                self._wake(cid)
            if self._runner is not None:
                await self._runner.cleanup()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)


def _sse(event: str, data: str, seq: int) -> bytes:
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"event: {event}\nid: {seq}\n{lines}\n".encode()


def start_page(daemon: PageHost) -> PageServer | None:
    """Serve the summary page per ``[page]``; None when its port is 0. A host that cannot be bound
    is a start-up error (the caller turns OSError into one)."""
    from symbld.config import section

    cfg = msgspec.convert(section(daemon.config, "page"), PageTable, strict=True)  # checked at load already
    if not cfg.port:
        return None
    server = PageServer(daemon)
    server.start(cfg.host, cfg.port, links.load_secret(daemon.runtime_dir))
    links.install(server.links)
    daemon.bus.listeners.append(server.on_bus_event)
    log.info("serving_summary_page", address=f"{cfg.host}:{server.port}")
    return server
