"""The control server: a ROUTER socket that answers plain REQ (and DEALER) clients.

Owned by the daemon's main thread. Fast commands are answered inline; slow ones run on a
worker thread and their replies come back through a queue, with a pipe to wake the poll, so
the socket itself is only ever touched by this thread. Every request gets a reply, including
frames that are not JSON at all. Replies are cached by request id for a short while so a
client that retries after a lost reply (Lazy Pirate) gets the same answer instead of running
a command twice.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
import zmq

from symbld.control.curve import peer_of
from symbld.control.envelope import Request, encode_reply, parse_request, salvage_id
from symbld.control.registry import lookup
from symbld.control.replies import ReplyCache, reply_of
from symbld.errors import ControlError

if TYPE_CHECKING:
    from symbld.control.service import Service

log = structlog.get_logger(__name__)

MAX_SLOW_IN_FLIGHT = 64


class ControlServer:
    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str, service: Service) -> None:
        self.service = service
        self.endpoint = endpoint
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 0)  # a vanished client's reply is dropped, not an error
        # A client that reopens its socket after a timeout keeps its routing id; the new pipe takes over.
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.sock.setsockopt(zmq.MAXMSGSIZE, 4 << 20)  # hard cap; the protocol's own limits are lower
        self.sock.setsockopt(zmq.RCVHWM, 1000)
        self.sock.bind(endpoint)
        self._replies: queue.SimpleQueue[tuple[list[bytes], bytes]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.replies = ReplyCache()
        self._in_flight = 0
        self._running: set[tuple[bytes, str]] = set()  # slow requests still running, by (peer, request id)
        self._lock = threading.Lock()
        self._closed = False
        self.requests = 0

    def wake(self) -> None:
        # Under the lock: a cmd-* thread that finishes while shutdown closes the pipe must neither write to
        # a closed descriptor nor, worse, to whatever file reused its number.
        with self._lock:
            if self._closed:
                return
            with contextlib.suppress(BlockingIOError):  # a full pipe already holds a wake-up
                os.write(self._wake_w, b"x")

    def poll_once(self, timeout_ms: int, poller: zmq.Poller) -> None:
        events = dict(poller.poll(timeout_ms))
        if self._wake_r in events:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        while True:
            try:
                envelope, reply = self._replies.get_nowait()
            except queue.Empty:
                break
            self._send(envelope, reply)
        if self.sock in events:
            for _ in range(100):  # bounded burst so replies and signals are not starved
                try:
                    raw = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                # The last frame keeps the sender's fd / CURVE key, for peer_of.
                self._handle([f.bytes for f in raw], raw[-1])

    def poller(self) -> zmq.Poller:
        p = zmq.Poller()
        p.register(self.sock, zmq.POLLIN)
        p.register(self._wake_r, zmq.POLLIN)
        return p

    def _send(self, envelope: list[bytes], reply: bytes) -> None:
        try:
            self.sock.send_multipart([*envelope, reply], zmq.NOBLOCK)
        except zmq.ZMQError as e:  # client gone or its queue full: nothing to do but note it
            log.debug("reply_dropped", error=str(e))

    def _handle(self, frames: list[bytes], peer_frame: zmq.Frame) -> None:
        self.requests += 1
        # ROUTER prepends the peer identity; REQ peers add an empty delimiter, DEALER peers may not.
        ident, rest = frames[0], frames[1:]
        envelope = [ident]
        if rest and rest[0] == b"":
            envelope.append(b"")
            rest = rest[1:]
        try:
            req = parse_request(rest)
        except ControlError as e:
            rid = salvage_id(rest[0]) if rest else ""
            log.info("bad_request", code=e.code, error=e.message)
            self._send(envelope, encode_reply(rid, error=e))
            return
        key = (ident, req.id)
        if req.id and (cached := self.replies.get(key)) is not None:
            self._send(envelope, cached)
            return
        try:
            cmd = lookup(req.cmd)
        except ControlError as e:
            self._send(envelope, encode_reply(req.id, error=e))
            return
        if cmd.mutating:
            log.info("command", cmd=req.cmd, request_id=req.id, peer=peer_of(peer_frame))
        if not cmd.slow:
            self._finish(envelope, key, req, lambda: cmd.run(self.service, req))
            return
        with self._lock:
            if key in self._running:
                return  # a retry of a request still running: its reply will reach the same routing id
            if self._in_flight >= MAX_SLOW_IN_FLIGHT:
                self._send(envelope, encode_reply(req.id, error=ControlError(
                    "busy", f"{MAX_SLOW_IN_FLIGHT} slow commands already running; retry shortly")))
                return
            self._in_flight += 1
            self._running.add(key)

        def work() -> None:
            try:
                self._finish(envelope, key, req, lambda: cmd.run(self.service, req), via_queue=True)
            finally:
                with self._lock:
                    self._in_flight -= 1
                    self._running.discard(key)

        threading.Thread(target=work, name=f"cmd-{req.cmd}", daemon=True).start()

    def _finish(self, envelope: list[bytes], key: tuple[bytes, str], req: Request,
                run: Callable[[], dict[str, Any]], via_queue: bool = False) -> None:
        reply = reply_of(req, run)
        if via_queue:
            self._replies.put((envelope, reply))
            self.wake()
        else:
            self._send(envelope, reply)
        if req.id:
            self.replies.remember(key, reply)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.sock.close(linger=0)

