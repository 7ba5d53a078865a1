"""A Symbl connection id's conversation and the daemon connections (legs) behind it: start, events, stop, end.

Each speaker socket (or a call) is one *leg*: a daemon connection started with the conversation's
``conversationId``, driven by its own ``symblctl.Client`` on a one-thread executor (REQ sockets are
not thread-safe), its events read by ``gateways.event_pump.pump_events`` and relayed, in order, to
every socket and subscriber of the conversation by ``LiveConversations.dispatch``. The streaming sockets
(``streaming.py``) and the telephony endpoints (``telephony.py``) share this; nothing here speaks HTTP.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import re
import threading
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from symblctl.client import Client, DaemonError
from symbld import shapes
from symbld.core import speakers
from symbld.gateways.event_pump import pump_events
from symbld.gateways.symbl import summary_links, wire
from symbld.gateways.symbl.replies import send
from symbld.gateways.symbl.state import (
    Conversation,
    Leg,
    Opened,
    StartFailed,
    daemon_status,
    error_message,
    release,
)

log = structlog.get_logger(__name__)

DAEMON_ID = re.compile(r"^[A-Za-z0-9-]{6,64}$")  # what the daemon's start accepts as connectionId
RESULT_EVENTS = {"transcript_response", *wire.RESULT_TYPES}
ENDED_EVENTS = ("connection_stopped", "conversation_completed")
PUMP_DONE = {"type": "symbl_pump_done"}  # queued after a leg's last event: its relay ends (never a daemon type)
ENDED_CALLS_KEPT = 1000  # ended calls still answering `stop` (Symbl's docs tell clients to call it)


class LiveConversations:
    """The live conversations of one server (and its recently ended calls); runs on the server's loop."""

    def __init__(self, client_factory: Callable[[], Client], config: dict[str, Any]) -> None:
        self.client_factory = client_factory
        self.config = config
        self.by_id: dict[str, Conversation] = {}  # the live ones, by Symbl connection id
        # Ended calls stay answerable: Symbl's docs tell clients to call stop even after the far
        # end hung up, to get the conversationId. Bounded, oldest forgotten first.
        self.ended_calls: collections.OrderedDict[str, Conversation] = collections.OrderedDict()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._relays: set[asyncio.Task[None]] = set()  # each leg's events onto its conversation's sockets

    def running_loop(self) -> asyncio.AbstractEventLoop:
        assert self.loop is not None, "the server's loop is set before it serves"
        return self.loop

    async def on_leg(self, leg: Leg, call: Callable[[], Any]) -> Any:
        """``call`` (a blocking daemon request on ``leg.control``) on the leg's own thread."""
        return await self.running_loop().run_in_executor(leg.executor, call)

    # ------------------------------------------------------------ start

    async def open(self, symbl_id: str, kind: str, args: dict[str, Any]) -> Conversation:
        """Start a conversation's first daemon connection; raises StartFailed with an HTTP status."""
        opened = await self.open_leg(symbl_id, args, own_id=True)
        conv = Conversation(
            symbl_id=symbl_id,
            conversation_id=opened.conversation_id,
            kind=kind,
            legs=[opened.leg],
            start_args=args,
            no_connection_timeout=float(self.config["no_connection_timeout"]),
        )
        self.by_id[symbl_id] = conv
        log.info("symbl conversation started", connection_id=symbl_id, daemon_connection=opened.leg.daemon_id,
                 kind=kind)
        return conv

    async def open_leg(self, symbl_id: str, args: dict[str, Any], own_id: bool) -> Opened:
        """Start one daemon connection; raises StartFailed with an HTTP status on failure."""
        loop = self.running_loop()
        executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"symbl-{symbl_id[:8]}")
        try:
            control = await loop.run_in_executor(executor, self.client_factory)
            result = await loop.run_in_executor(executor, _start, control, args, symbl_id if own_id else None)
        except Exception as exc:
            executor.shutdown(wait=False)
            if not isinstance(exc, DaemonError):
                log.exception("symbl start failed", connection_id=symbl_id)
            raise StartFailed(daemon_status(exc), error_message(exc)) from exc
        daemon_id = str(result["connectionId"])
        speaker = args.get("speaker") if isinstance(args.get("speaker"), dict) else None
        leg = Leg(daemon_id=daemon_id, control=control, executor=executor, speaker=speaker,
                  attribution=speakers.Attribution(daemon_id, shapes.user_of(speaker, daemon_id)))
        return Opened(leg, str(result.get("conversationId") or ""))

    # ------------------------------------------------------------ events from the daemon

    def start_pump(self, conv: Conversation) -> None:
        """Each leg's events (from the start) relayed to the conversation's sockets, once per leg."""
        loop = self.running_loop()
        for leg in conv.legs:
            if leg.pump is not None:
                continue
            queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            leg.pump = threading.Thread(target=self._pump, args=(leg, loop, queue), daemon=True,
                                        name=f"symbl-pump-{leg.daemon_id[:8]}")
            leg.pump.start()
            relay = loop.create_task(self._relay(conv, leg, queue))
            self._relays.add(relay)  # a task needs a reference until done
            relay.add_done_callback(self._relays.discard)

    def _pump(self, leg: Leg, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """Thread: the leg's daemon events onto ``queue``, then ``PUMP_DONE`` when the stream is done."""
        pump_events(self.client_factory, leg.daemon_id, loop, queue, leg.pump_stop, api="symbl")
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody left to relay to
            loop.call_soon_threadsafe(queue.put_nowait, PUMP_DONE)

    async def _relay(self, conv: Conversation, leg: Leg, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """The leg's events, in order, until it ended (``ENDED_EVENTS``) or its stream is done."""
        while (event := await queue.get()) is not PUMP_DONE:
            try:
                await self.dispatch(conv, leg, event)
            except Exception:
                log.exception("symbl dispatch failed", connection_id=conv.symbl_id, type=event.get("type"))
            if event.get("type") in ENDED_EVENTS:
                return

    async def dispatch(self, conv: Conversation, leg: Leg, event: dict[str, Any]) -> None:
        etype = str(event.get("type", ""))
        data = event.get("data") or {}
        if etype == speakers.EVENT:
            leg.attribution.on_event(data)
        elif etype in RESULT_EVENTS:
            data = self._for_clients(conv, leg, etype, data)
            if data is not None:
                await self._send_result(conv, etype, data)
        elif etype == "connection_failed":
            conv.failure = data.get("error") or {"message": "connection failed"}
            frame = wire.error_frame("Conversation failed", str(conv.failure.get("message")))
            for ws in conv.listeners():
                await send(ws, frame)
            await self._leg_ended(conv, leg, code=1011)
        elif etype in ENDED_EVENTS:
            await self._leg_ended(conv, leg)  # stopped elsewhere (symblctl, hung up): the clients complete

    @staticmethod
    def _for_clients(conv: Conversation, leg: Leg, etype: str, data: dict[str, Any]) -> dict[str, Any] | None:
        """A result with the leg's speaker, insights cut to the ones asked for; None when none are left."""
        data = leg.attribution.apply(etype, data)
        if etype == "insight_response" and conv.insight_types is not None:
            wanted = conv.insight_types
            data = {**data, "insights": [i for i in data.get("insights") or [] if i.get("type") in wanted]}
            if not data["insights"]:
                return None
        return data

    @staticmethod
    async def _send_result(conv: Conversation, etype: str, data: dict[str, Any]) -> None:
        for ws in list(conv.sockets):
            for frame in wire.event_to_frames(etype, data, "streaming"):
                await send(ws, frame)
        for ws, style in list(conv.subscribers.items()):
            for frame in wire.event_to_frames(etype, data, style):
                await send(ws, frame)

    async def _leg_ended(self, conv: Conversation, leg: Leg, code: int = 1000) -> None:
        leg.stopped.set()
        if all(x.stopped.is_set() for x in conv.legs):
            conv.daemon_stopped.set()
        if not conv.stopping and conv.daemon_stopped.is_set():
            await self.end(conv, code=code)

    async def speaker_event(self, conv: Conversation, body: Any) -> str | None:
        """A client's speaker event, journaled on every live leg of the conversation; else why not."""
        problem = speakers.check_event(body)
        if problem:
            return problem
        for leg in conv.legs:
            if not leg.live():
                continue
            args: dict[str, Any] = {"connectionId": leg.daemon_id, "type": body["type"]}
            if body.get("user"):
                args["user"] = {k: v for k, v in body["user"].items() if k in ("userId", "name", "id")}
            if isinstance(body.get("timestamp"), str):
                args["timestamp"] = body["timestamp"][:64]
            if conv.kind == "streaming":  # we know exactly how much audio this leg has had
                args["timeOffset"] = leg.forwarded / 32000
            try:
                await self.on_leg(leg, functools.partial(leg.control.request, "speaker_event", **args))
            except Exception as exc:  # noqa: BLE001 - any refusal is returned to the caller as text
                return error_message(exc)
        return None

    # ------------------------------------------------------------ stop and end

    async def stop(self, conv: Conversation) -> None:
        """Flush finals through the daemon, then complete every socket of the conversation."""
        timeout = float(self.config["stop_timeout"])
        if conv.stopping:
            await asyncio.wait_for(conv.daemon_stopped.wait(), timeout)
            return
        conv.stopping = True
        await asyncio.gather(*(self.stop_daemon(leg) for leg in conv.legs if not leg.stopping))
        log.debug("symbl daemon stop returned", connection_id=conv.symbl_id)
        if all(leg.pump is not None for leg in conv.legs):
            # The pumps deliver everything up to connection_stopped, in order.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conv.daemon_stopped.wait(), timeout)
        await self.end(conv)

    async def stop_daemon(self, leg: Leg) -> None:
        leg.stopping = True
        with contextlib.suppress(Exception):  # already stopped / daemon gone: still complete the clients
            await asyncio.wait_for(self.on_leg(leg, lambda: leg.control.stop(leg.daemon_id)),
                                   float(self.config["stop_timeout"]))

    async def stop_leg(self, conv: Conversation, leg: Leg) -> None:
        """One speaker's stop_request while others go on: its finals flushed, its socket completed."""
        await self.stop_daemon(leg)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(leg.stopped.wait(), float(self.config["stop_timeout"]))
        ws = leg.socket
        if ws is not None:
            conv.sockets.discard(ws)
            leg.socket = None
            await send(ws, wire.conversation_completed(conv.conversation_id,
                                                       self.config["summary_base"] + conv.conversation_id))
            await send(ws, wire.recognition_stopped())
            with contextlib.suppress(Exception):
                await ws.close(code=1000)

    async def end(self, conv: Conversation, code: int = 1000) -> None:
        if conv.ended:
            return
        conv.ended = True
        if conv.orphan_timer:
            conv.orphan_timer.cancel()
        if code == 1000:
            await self._complete(conv)
        # Concurrently: each close waits for the client's answer (up to the socket's close timeout).
        await asyncio.gather(*(ws.close(code=code) for ws in conv.listeners()), return_exceptions=True)
        for leg in conv.legs:
            leg.pump_stop.set()
        self._forget(conv)
        for leg in conv.legs:
            release(leg)
        log.info("symbl conversation ended", connection_id=conv.symbl_id, code=code)

    async def _complete(self, conv: Conversation) -> None:
        """Symbl's last frames to every listener: ``conversation_completed`` (with the summary's URL), then stopped."""
        summary = await summary_links.summary_url(self.client_factory, conv.legs[0].daemon_id,
                                                self.config["summary_base"] + conv.conversation_id)
        for ws in conv.listeners():
            await send(ws, wire.conversation_completed(conv.conversation_id, summary))
            await send(ws, wire.recognition_stopped())

    def _forget(self, conv: Conversation) -> None:
        """An ended conversation is no longer live; an ended call stays answerable to ``stop``."""
        if self.by_id.get(conv.symbl_id) is conv:
            del self.by_id[conv.symbl_id]
        if conv.kind == "telephony":
            self.ended_calls[conv.symbl_id] = conv
            while len(self.ended_calls) > ENDED_CALLS_KEPT:
                self.ended_calls.popitem(last=False)

    def detach(self, conv: Conversation, ws: web.WebSocketResponse) -> None:
        """A speaker socket went away; without any left the conversation waits for a reconnect."""
        conv.sockets.discard(ws)
        for leg in conv.legs:
            if leg.socket is ws:
                leg.socket = None
        if conv.sockets or conv.stopping or conv.ended or conv.kind != "streaming":
            return
        log.info("symbl stream dropped; waiting for reconnect", connection_id=conv.symbl_id,
                 seconds=conv.no_connection_timeout)
        conv.orphan_timer = self.running_loop().call_later(
            conv.no_connection_timeout, lambda: asyncio.ensure_future(self.stop(conv))
        )

    async def shutdown(self) -> None:
        """Server going away: clients get close 1001 (they may reconnect to the next server).

        Daemon connections are stopped only with ``stop_on_close`` (the standalone runner): inside
        the daemon, its own shutdown stops them, and asking it here could only wait on it.
        """
        for conv in list(self.by_id.values()):
            if self.config.get("stop_on_close"):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.stop(conv), 10)
                continue
            for leg in conv.legs:
                leg.pump_stop.set()
            await asyncio.gather(*(ws.close(code=1001, message=b"server shutting down")
                                   for ws in conv.listeners()), return_exceptions=True)
            for leg in conv.legs:
                leg.executor.shutdown(wait=False)
        for relay in list(self._relays):  # their sockets are closed; the loop is about to stop
            relay.cancel()


def _start(control: Client, args: dict[str, Any], own_id: str | None) -> dict[str, Any]:
    """The daemon's ``start`` (on the leg's thread), under ``own_id`` when it is free and valid there.

    Same id on the daemon, so ``symblctl`` shows the connection under the id the Symbl client
    chose; else the daemon picks one.
    """
    if own_id is not None and DAEMON_ID.match(own_id):
        try:
            return dict(control.start(**args, connectionId=own_id))
        except Exception as exc:
            # In use by a live connection, or used before (its journal is kept, e.g. a client
            # reconnecting after a server restart): the daemon picks a fresh id instead.
            reused = (getattr(exc, "details", None) or {}).get("reason") == "journal_exists"
            if not reused and "already in use" not in str(getattr(exc, "message", "")):
                raise
    return dict(control.start(**args))
