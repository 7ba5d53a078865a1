"""The control protocol over NATS request-reply: ``symbld.control.<node>`` and ``symbld.control.all.<cmd>``.

Same envelope, same commands, same errors as the ZeroMQ router: :func:`dispatch` parses with
``control.envelope`` and runs the registry's command. A request with a binary frame (``send_audio``)
carries header ``Symbld-Frame-Split: <bytes of the JSON frame>`` and both frames in the payload.
Peers reached over NATS are remote, like tcp:// peers: the daemon serves control on NATS only when
the connection is authenticated (credentials, token or user; see docs/fleet.md), and state-changing
commands are logged with the peer the client names in ``Symbld-Client``.

A request resent with the same id by the same client (``symblctl.fleet`` retries once after a
timeout) runs once: a retry of a request still running waits for it, a later one gets the kept
reply (``control.replies``, as the ZeroMQ router does).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from symblctl.nats_subjects import CLIENT_HEADER, FRAME_SPLIT, SCATTER_COMMANDS, control_subject, scatter_subject
from symbld.control.envelope import encode_reply, parse_request, salvage_id
from symbld.control.registry import lookup
from symbld.control.replies import ReplyCache, reply_of
from symbld.errors import ControlError

if TYPE_CHECKING:
    from symbld.core.ports import NatsHost

log = structlog.get_logger(__name__)

_MAX_IN_FLIGHT = 64  # like the router's slow-command cap


def split_frames(data: bytes, headers: dict[str, str] | None) -> list[bytes]:
    cut = (headers or {}).get(FRAME_SPLIT)
    if cut is None:
        return [data]
    n = int(cut)
    return [data[:n], data[n:]]


def dispatch(daemon: NatsHost, frames: list[bytes], peer: dict[str, Any], node: str | None = None) -> bytes:
    """One request's frames to one reply, through the registry like the ZeroMQ router. ``node``: the
    scatter-gather form, whose result also names the node that answered."""
    try:
        req = parse_request(frames)
    except ControlError as e:
        return encode_reply(salvage_id(frames[0]) if frames else "", error=e)

    def run() -> dict[str, Any]:
        cmd = lookup(req.cmd)
        if cmd.mutating:
            log.info("command", cmd=req.cmd, request_id=req.id, peer=peer)
        result = cmd.run(daemon.service, req)
        return result if node is None else {**result, "node": node}

    return reply_of(req, run)


class NatsControl:
    """Subscriptions that answer control requests; commands run on worker threads, never on the loop."""

    def __init__(self, daemon: NatsHost, node: str) -> None:
        self.daemon = daemon
        self.node = node
        self.requests = 0
        self._slots = asyncio.Semaphore(_MAX_IN_FLIGHT)
        self._subs: list[Any] = []
        self._tasks: set[asyncio.Task[None]] = set()  # held so a running answer is not garbage-collected
        self.replies = ReplyCache()
        self._running: dict[tuple[str, str], asyncio.Future[bytes]] = {}  # by (client, request id)

    async def start(self, nc: NATS) -> None:
        self._subs.append(await nc.subscribe(control_subject(self.node), cb=self._on_request))
        for cmd in SCATTER_COMMANDS:
            self._subs.append(await nc.subscribe(scatter_subject(cmd), cb=self._on_scatter))

    async def _on_request(self, msg: Msg) -> None:
        self._spawn(self._answer(msg, split_frames(msg.data, msg.headers), None))

    async def _on_scatter(self, msg: Msg) -> None:
        cmd = msg.subject.rsplit(".", 1)[1]
        frames = [msg.data] if msg.data else [f'{{"v":1,"id":"all","cmd":"{cmd}"}}'.encode()]
        self._spawn(self._answer(msg, frames, self.node, cmd))

    def _spawn(self, answer: Any) -> None:
        task = asyncio.get_running_loop().create_task(answer)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, msg: Msg, frames: list[bytes], node: str | None, only: str | None = None) -> None:
        if not msg.reply:
            return  # a publish, not a request: nobody to answer
        self.requests += 1
        peer = {"transport": "nats", "subject": msg.subject,
                "client": (msg.headers or {}).get(CLIENT_HEADER, "")[:200]}
        if only is not None:
            async with self._slots:
                reply = await asyncio.to_thread(_scatter, self.daemon, frames, peer, node or "", only)
        else:
            reply = await self._once(frames, peer)
        try:
            await msg.respond(reply)
        except Exception as e:  # noqa: BLE001 - requester gone, or NATS down: nothing to do but note it
            log.debug("nats_reply_dropped", error=str(e))

    async def _once(self, frames: list[bytes], peer: dict[str, Any]) -> bytes:
        """The request's reply, running it unless the same client's same id ran or is running."""
        rid = salvage_id(frames[0]) if frames else ""
        if not rid:
            async with self._slots:
                return await asyncio.to_thread(dispatch, self.daemon, frames, peer)
        key = (str(peer.get("client", "")), rid)
        if (kept := self.replies.get(key)) is not None:
            return kept
        if (running := self._running.get(key)) is not None:
            return await asyncio.shield(running)
        first = self._running[key] = asyncio.get_running_loop().create_future()  # before any await
        try:
            async with self._slots:
                reply = await asyncio.to_thread(dispatch, self.daemon, frames, peer)  # never raises
            self.replies.remember(key, reply)
            first.set_result(reply)
            return reply
        finally:
            del self._running[key]
            if not first.done():
                first.cancel()  # cancelled mid-run (shutdown): a waiting retry ends with it

    async def close(self) -> None:
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception as e:  # noqa: BLE001 - closing: nothing to do but note it
                log.debug("nats_unsubscribe_failed", error=str(e))


def _scatter(daemon: NatsHost, frames: list[bytes], peer: dict[str, Any], node: str, only: str) -> bytes:
    """symbld.control.all.<cmd> runs only that command, whatever the body names."""
    try:
        req = parse_request(frames)
    except ControlError as e:
        return encode_reply("", error=e)
    if req.cmd != only:
        return encode_reply(req.id, error=ControlError(
            "bad_request", f"{scatter_subject(only)} answers only {only!r}, not {req.cmd!r}"))
    return dispatch(daemon, frames, peer, node)
