"""The client library: talk to symbld over its control (REQ) and events (SUB) sockets.

- ``Client.request`` sends one request and waits with a timeout; on timeout it closes and
  reopens its REQ socket and retries with the same request id ("Lazy Pirate"). The daemon
  remembers replies by request id, so a retried ``start`` never starts twice.
- ``EventStream`` merges history and live events by sequence number: nothing missed, nothing
  twice, even for a consumer that subscribes late or falls behind (the Clone pattern).

A Client (and an EventStream) belongs to one thread; make one per thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmq

from symblctl.commands import SLOW_TIMEOUTS, DeclaredCommands
from symblctl.endpoints import default_endpoints as config_default_endpoints
from symblctl.keys import SecurityError, apply_client_curve
from symblctl.liveness import RESTART_HINT, START_HINT, answers_ping, socket_file_problem

if TYPE_CHECKING:
    from symblctl import protocol

PROTOCOL_VERSION = 1
# Commands that may wait on an engine flush, a device or a call get a longer wait (declared with each command).


class DaemonError(Exception):
    """The daemon answered with an error."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{message} [{code}]")
        self.code = code
        self.message = message
        self.details = details or {}


class DaemonUnavailable(DaemonError):
    """No daemon answered at the endpoint."""

    def __init__(self, endpoint: str, why: str = "", *, wedged: bool = False) -> None:
        head = f"symbld at {endpoint} is not answering" if wedged else f"symbld is not running at {endpoint}"
        super().__init__("unavailable", head + (f" ({why})" if why else ""))
        self.endpoint = endpoint
        self.wedged = wedged  # the socket is there but nothing answers


def default_endpoints() -> tuple[str, str]:
    """Where the daemon listens by default: $SYMBLD_CONTROL/$SYMBLD_EVENTS, else its runtime dir's."""
    rd = os.environ.get("SYMBLD_RUNTIME_DIR")
    control, events = config_default_endpoints(Path(rd) if rd else None)
    return os.environ.get("SYMBLD_CONTROL") or control, os.environ.get("SYMBLD_EVENTS") or events


def absolute_source_path(args: dict[str, Any]) -> dict[str, Any]:
    """``start`` args with a file source's ``path`` resolved against this process's directory."""
    source = args.get("source")
    if isinstance(source, dict) and source.get("type") == "file" and isinstance(source.get("path"), str):
        path = os.path.expanduser(source["path"])
        if not os.path.isabs(path):
            path = os.path.abspath(path)
        args = {**args, "source": {**source, "path": path}}
    return args


class Client(DeclaredCommands):
    """The control protocol's client: one method per declared command (``symblctl.commands``, generated
    from ``symblctl.protocol``), ``start``/``send_audio`` written out, ``events()`` for the PUB side."""

    def __init__(self, control: str | None = None, events: str | None = None, timeout: float = 5.0,
                 retries: int = 2, context: zmq.Context[Any] | None = None) -> None:
        dc, de = default_endpoints()
        self.control = control or dc
        self.events_endpoint = events or de
        self.timeout = timeout
        self.retries = retries
        # The process's one context (pyzmq's Context.instance()), never one of the client's own: a Client caught
        # in a garbage cycle (a traceback holding it) had its own context finalized after the GC had cleared
        # the context's weak set of sockets, so Context.__del__ closed nothing and term() waited forever for
        # the REQ socket (a test stalled until pytest-timeout, 300 s). Closing a client closes its sockets.
        self.ctx = context or zmq.Context.instance()
        # A stable routing id lets the daemon route a late reply to our reopened socket.
        self._identity = os.urandom(16)
        self._sock: zmq.Socket[bytes] | None = None

    # -- the request/reply core --------------------------------------------------------------
    def _socket(self) -> zmq.Socket[bytes]:
        if self._sock is None:
            s = self.ctx.socket(zmq.REQ)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.ROUTING_ID, self._identity)
            try:
                apply_client_curve(s, self.control)  # tcp:// only: CURVE keys from symblctl keygen
            except SecurityError as e:
                s.close(linger=0)
                raise DaemonUnavailable(self.control, str(e)) from None
            s.connect(self.control)
            self._sock = s
        return self._sock

    def _reset(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    def _check_socket_file(self) -> None:
        """Fail at once, not after a timeout, when an ipc daemon is plainly not there (or left a stale file)."""
        problem = socket_file_problem(self.control)
        if problem is not None:
            self._reset()
            raise DaemonUnavailable(self.control, f"{problem}; {START_HINT}")

    def _wait_reply(self, sock: zmq.Socket[bytes], rid: str, seconds: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sock.poll(max(1, int(left * 1000)), zmq.POLLIN):
                return None
            reply: dict[str, Any] = json.loads(sock.recv())
            if reply.get("id") == rid:
                return reply
            # else: a stale reply to an earlier, abandoned attempt

    def request(self, cmd: str, payload: bytes | None = None, timeout: float | None = None,
                **args: Any) -> dict[str, Any]:
        """Send one command; return its result or raise DaemonError / DaemonUnavailable.

        A daemon that is not there (no socket file, a stale one) fails at once; one that does not
        answer fails within ``self.timeout``: a fast command is retried (same request id) inside
        that time; while a slow one (stop, start) runs, the daemon is pinged on another socket
        every ``self.timeout`` and the wait goes on only while it answers.
        """
        if self._sock is None:
            self._check_socket_file()
        rid = os.urandom(8).hex()
        body = json.dumps({"v": PROTOCOL_VERSION, "id": rid, "cmd": cmd,
                           "args": {k: v for k, v in args.items() if v is not None}}).encode()
        frames = [body] if payload is None else [body, payload]
        if timeout is None and cmd in SLOW_TIMEOUTS:
            return self._slow_request(frames, rid, max(self.timeout, SLOW_TIMEOUTS[cmd]))
        wait = timeout if timeout is not None else self.timeout
        window = wait / (self.retries + 1)
        for _attempt in range(self.retries + 1):
            sock = self._socket()
            sock.send_multipart(frames)
            reply = self._wait_reply(sock, rid, window)
            if reply is not None:
                return self._result(reply)
            self._reset()  # Lazy Pirate: a REQ socket that lost its reply is unusable
            self._check_socket_file()
        raise DaemonUnavailable(self.control, f"no reply within {wait:g} s; {RESTART_HINT}", wedged=True)

    def _slow_request(self, frames: list[bytes], rid: str, wait: float) -> dict[str, Any]:
        sock = self._socket()
        sock.send_multipart(frames)
        end = time.monotonic() + wait
        window = self.timeout / 2  # then a ping of timeout/2: a dead daemon is known within timeout
        while True:
            reply = self._wait_reply(sock, rid, min(window, max(0.0, end - time.monotonic())))
            if reply is not None:
                return self._result(reply)
            if time.monotonic() >= end:
                self._reset()
                raise DaemonUnavailable(self.control, f"no reply within {wait:g} s; {RESTART_HINT}", wedged=True)
            self._check_socket_file()
            if not answers_ping(self.ctx, self.control, self.timeout / 2):
                self._reset()
                raise DaemonUnavailable(self.control, f"no reply to a ping within {self.timeout:g} s; "
                                        f"{RESTART_HINT}", wedged=True)
            window = self.timeout  # alive and busy with our command: keep waiting

    @staticmethod
    def _result(reply: dict[str, Any]) -> dict[str, Any]:
        if reply.get("ok"):
            result: dict[str, Any] = reply.get("result", {})
            return result
        err = reply.get("error") or {}
        raise DaemonError(err.get("code", "internal"), err.get("message", "unknown error"), err.get("details"))

    # -- commands: one method per declared command (symblctl/commands.py), these few written out -----
    def call(self, command: protocol.Command, payload: bytes | None = None,
             timeout: float | None = None) -> dict[str, Any]:
        """Send one declared command (a ``symblctl.protocol`` request) and return its result."""
        import msgspec  # with the declarations: a command without fields is sent without either

        return self.request(command.name, payload=payload, timeout=timeout, **msgspec.to_builtins(command))

    def start(self, **args: Any) -> dict[str, Any]:
        """Start a connection. A relative ``source.path`` is made absolute here: the daemon runs
        elsewhere (``/`` under systemd) and would not find it."""
        return self.request("start", **absolute_source_path(args))

    def send_audio(self, connection_id: str, pcm: bytes, sample_rate: int | None = None,
                   end: bool = False) -> dict[str, Any]:
        return self.request("send_audio", payload=pcm, connectionId=connection_id, sampleRate=sample_rate,
                            end=end or None)

    def end_audio(self, connection_id: str) -> dict[str, Any]:
        return self.request("send_audio", connectionId=connection_id, end=True)

    def all_history(self, connection_id: str, after_seq: int = 0, gap: bool = False) -> list[dict[str, Any]]:
        """Every event after ``after_seq``, following ``more`` page by page."""
        out: list[dict[str, Any]] = []
        while True:
            page = self.history(connection_id, after_seq, 5000, gap)
            out.extend(page["events"])
            if not page["more"] or not page["events"]:
                return out
            after_seq = page["events"][-1]["seq"]

    def events(self, connection_id: str | None = None, types: list[str] | None = None,
               after_seq: int = 0) -> EventStream:
        return EventStream(self.control, self.events_endpoint, connection_id, types, after_seq, ctx=self.ctx)

    def close(self) -> None:
        self._reset()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventStream:
    """Events of one connection (or all), in seq order per connection, with gaps refilled.

    ``get(timeout)`` returns the next event or None; iterating yields events until the
    connection completes (``conversation_completed``) or ``close()``.
    """

    def __init__(self, control: str, events: str, connection_id: str | None = None,
                 types: list[str] | None = None, after_seq: int = 0, ctx: zmq.Context[Any] | None = None,
                 sync_timeout: float = 2.0) -> None:
        self.connection_id = connection_id
        self.types = set(types) if types else None
        self._client = Client(control, events, context=ctx)
        self._last: dict[str, int] = {}
        self._ready: deque[dict[str, Any]] = deque()
        self._live_at_start: set[str] = set()
        self.refills = 0
        self.gaps = 0  # refills caused by events the events socket dropped for us
        self.completed = False
        self._sub = self._client.ctx.socket(zmq.SUB)
        self._sub.setsockopt(zmq.LINGER, 0)
        self._sub.setsockopt(zmq.RCVHWM, 100_000)
        try:
            apply_client_curve(self._sub, events)
        except SecurityError as e:
            self.close()
            raise DaemonUnavailable(events, str(e)) from None
        self._sub.connect(events)
        token = os.urandom(8).hex()
        prefix = f"connection.{connection_id}." if connection_id else "connection."
        self._sub.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        self._sub.setsockopt(zmq.SUBSCRIBE, f"sync.{token}".encode())
        early: list[dict[str, Any]] = []
        self._sync(token, sync_timeout, early)
        if connection_id is not None:
            self._last[connection_id] = after_seq
            self._refill(connection_id)
        for event in early:
            self._accept(event)

    def _sync(self, token: str, timeout: float, early: list[dict[str, Any]]) -> None:
        """Ask the daemon for a marker on our topic until it arrives: then our subscription is live."""
        deadline = time.monotonic() + timeout
        while True:
            reply = self._client.request("subscribe", connectionId=self.connection_id, token=token)
            self._live_at_start.update(c["connectionId"] for c in reply.get("connections", []))
            round_end = min(deadline, time.monotonic() + 0.2)
            while time.monotonic() < round_end:
                if not self._sub.poll(max(1, int((round_end - time.monotonic()) * 1000))):
                    break
                topic, body = self._sub.recv_multipart()
                if topic.startswith(b"sync."):
                    return
                early.append(json.loads(body))
            if time.monotonic() >= deadline:
                return  # carry on: the gap check and history refill still keep the stream whole

    def _refill(self, cid: str, gap: bool = False) -> None:
        after = self._last.get(cid, 0)
        for event in self._client.all_history(cid, after, gap):
            self._deliver(event)
        self.refills += 1
        self.gaps += gap

    def _accept(self, event: dict[str, Any]) -> None:
        cid = event.get("connectionId")
        if not cid:
            return
        seq = event.get("seq", 0)
        last = self._last.get(cid)
        if last is None:
            # First sight in all-connections mode: one that was live when we subscribed is taken from
            # here; one born after that is delivered from its start (a refill if its first events were lost).
            last = seq - 1 if cid in self._live_at_start else 0
            self._last[cid] = last
        if seq <= last:
            return  # already delivered (history and live overlap)
        if seq > last + 1:
            with contextlib.suppress(DaemonError):
                self._refill(cid, gap=True)
            if seq <= self._last.get(cid, 0):
                return
        self._deliver(event)

    def _deliver(self, event: dict[str, Any]) -> None:
        cid = event["connectionId"]
        if event["seq"] <= self._last.get(cid, 0):
            return
        self._last[cid] = event["seq"]
        if event.get("type") == "conversation_completed" and cid == self.connection_id:
            self.completed = True
        if self.types is None or event.get("type") in self.types:
            self._ready.append(event)
        elif event.get("type") == "conversation_completed":
            self._ready.append(event)  # always delivered so a consumer knows the connection ended

    def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready:
            if self.completed:
                return None
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._sub.poll(None if left is None else int(left * 1000)):
                return None
            topic, body = self._sub.recv_multipart()
            if topic.startswith(b"sync."):
                continue
            self._accept(json.loads(body))
        return self._ready.popleft()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            event = self.get(timeout=None)
            if event is None:
                return
            yield event

    def close(self) -> None:
        self._sub.close(linger=0)
        self._client.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
