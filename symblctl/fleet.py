"""The client side of a fleet: many symbld daemons on one NATS JetStream (``pip install 'symbld[nats]'``).

``Fleet(url, token=...)`` finds every node (scatter-gather ``symbld.control.all.ping``/``status``),
sends any control command to one node over request-reply (same envelope and errors as the ZeroMQ
``Client``), reads a conversation from the stream (it outlives its daemon) and follows events with
catch-up from the stream: ``events(connection_id=...)`` replays the connection from its first event
then goes live; ``events(durable="name")`` resumes where that consumer last acknowledged. Events are
de-duplicated by (connectionId, seq) on top of JetStream's message-id window. Each event gets a
``node`` key (from its subject). One Fleet per thread, like ``Client``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from collections import deque
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from symblctl.client import DaemonError, DaemonUnavailable
from symblctl.commands import SLOW_TIMEOUTS
from symblctl.nats_settings import DEFAULT_STREAM, NatsSettings, NatsSetupError, connect
from symblctl.nats_subjects import (
    CLIENT_HEADER,
    DAEMON_TOKEN,
    FRAME_SPLIT,
    control_subject,
    events_filter,
    node_of,
    scatter_subject,
)

PROTOCOL_VERSION = 1
T = TypeVar("T")
_MAX_HOLES = 10_000  # seqs per connection a stream may still be missing behind a later one


class Fleet:
    def __init__(self, url: str, token: str | None = None, credentials: str | None = None,
                 user: str | None = None, password: str | None = None, tls_ca: str | None = None,
                 stream: str = DEFAULT_STREAM, timeout: float = 10.0, retries: int = 1) -> None:
        self.settings = NatsSettings(servers=tuple(u.strip() for u in url.split(",")), node="client",
                                     token=token, credentials=credentials, user=user, password=password,
                                     tls_ca=tls_ca, stream=stream, connect_timeout=timeout)
        self.timeout = timeout
        # A request that got no reply in time is sent again this often, with the same id: the node
        # answers a retry from the reply it kept (or waits for the run in progress), never running
        # the command twice, so a reply lost on the way back costs one timeout, not a failed call.
        self.retries = retries
        self.name = f"symblctl-{uuid.uuid4().hex[:8]}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fleet", daemon=True)
        self._thread.start()
        try:
            self._nc = self._run(connect(self.settings, self.name), timeout + 5)
        except NatsSetupError as e:
            self._stop_loop()
            raise DaemonUnavailable(url, str(e)) from None
        self.js = self._nc.jetstream(timeout=timeout)

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # -- control -----------------------------------------------------------------------------
    def request(self, node: str, cmd: str, payload: bytes | None = None, timeout: float | None = None,
                **args: Any) -> dict[str, Any]:
        """One command to one node; its result, or DaemonError (the daemon's) / DaemonUnavailable."""
        rid = uuid.uuid4().hex[:16]
        body = json.dumps({"v": PROTOCOL_VERSION, "id": rid, "cmd": cmd,
                           "args": {k: v for k, v in args.items() if v is not None}}).encode()
        headers = {CLIENT_HEADER: self.name}
        if payload is not None:
            headers[FRAME_SPLIT] = str(len(body))
            body += payload
        wait = timeout if timeout is not None else max(self.timeout, SLOW_TIMEOUTS.get(cmd, 0.0))
        tries = self.retries + 1
        for attempt in range(1, tries + 1):
            try:
                msg = self._run(self._nc.request(control_subject(node), body, timeout=wait, headers=headers))
                break
            except nats.errors.NoRespondersError:
                raise DaemonUnavailable(control_subject(node), f"no symbld node {node!r} is connected") from None
            except nats.errors.TimeoutError:
                if attempt == tries:
                    raise DaemonUnavailable(control_subject(node), f"no reply within {wait:g} s, "
                                            f"{tries} tries") from None
        return _result(json.loads(msg.data))

    def gather(self, cmd: str = "ping", wait: float = 1.5) -> list[dict[str, Any]]:
        """Every node's answer to ``ping`` or ``status`` (each result names its ``node``), sorted by node."""
        return sorted(self._run(self._gather(cmd, wait), wait + self.timeout), key=lambda r: r["node"])

    async def _gather(self, cmd: str, wait: float) -> list[dict[str, Any]]:
        inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(inbox)
        body = json.dumps({"v": PROTOCOL_VERSION, "id": uuid.uuid4().hex[:16], "cmd": cmd}).encode()
        await self._nc.publish(scatter_subject(cmd), body, reply=inbox, headers={CLIENT_HEADER: self.name})
        out = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while (left := deadline - loop.time()) > 0:
            try:
                msg = await sub.next_msg(timeout=left)
            except nats.errors.TimeoutError:
                break
            if not msg.data:
                continue  # NATS's "no responders" status: no node is listening (yet)
            reply = json.loads(msg.data)
            out.append(_result(reply) if reply.get("ok") else {"node": "?", "error": reply.get("error")})
        await sub.unsubscribe()
        return out

    def nodes(self, wait: float = 1.5) -> list[str]:
        return [r["node"] for r in self.gather("ping", wait)]

    def owner(self, connection_id: str, wait: float = 1.5) -> str:
        """The node a connection belongs to: a live node that lists it, else the stream's subjects."""
        for status in self.gather("status", wait):
            if any(c.get("connectionId") == connection_id for c in status.get("connections", [])):
                return str(status["node"])
        events = self.history(connection_id, limit=1)
        if events:
            return str(events[0]["node"])
        raise DaemonError("unknown_connection", f"no node has connection {connection_id!r}",
                          {"connectionId": connection_id})

    def start(self, node: str, **args: Any) -> dict[str, Any]:
        return {**self.request(node, "start", **args), "node": node}

    def stop(self, connection_id: str, node: str | None = None) -> dict[str, Any]:
        node = node or self.owner(connection_id)
        return {**self.request(node, "stop", connectionId=connection_id), "node": node}

    # -- the stream -----------------------------------------------------------------------------
    def history(self, connection_id: str, after_seq: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """A connection's events from the stream (whichever node held it, alive or not), in seq order."""
        with self.events(connection_id=connection_id, after_seq=after_seq) as stream:
            out: list[dict[str, Any]] = []
            while limit is None or len(out) < limit:
                event = stream.get(timeout=0, until_caught_up=True)
                if event is None:
                    return sorted(out, key=lambda e: e["seq"])
                out.append(event)
            return sorted(out, key=lambda e: e["seq"])

    def events(self, node: str | None = None, connection_id: str | None = None, durable: str | None = None,
               types: list[str] | None = None, after_seq: int = 0, new_only: bool | None = None) -> FleetStream:
        """Follow events. One connection: from its first event (or after ``after_seq``). All: from now, unless
        ``durable`` names a consumer, which resumes where it last acknowledged (first use: from the start)."""
        if new_only is None:
            new_only = connection_id is None and durable is None
        return FleetStream(self, events_filter(node, connection_id), durable, types, after_seq, new_only)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already closed or NATS gone: nothing left to release
            self._run(self._nc.close(), 10)
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FleetStream:
    """Events from the stream in order, each connection's de-duplicated by seq; acknowledged as they are handed out,
    so a durable consumer that goes away resumes after the last event it was given."""

    def __init__(self, fleet: Fleet, subject: str, durable: str | None, types: list[str] | None,
                 after_seq: int, new_only: bool) -> None:
        self.fleet = fleet
        self.subject = subject
        self.types = set(types) if types else None
        self._last: dict[str, int] = {}
        self._holes: dict[str, set[int]] = {}
        self._after = after_seq
        self._ready: deque[tuple[dict[str, Any], Any]] = deque()
        self.completed = False
        self.duplicates = 0
        config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT,
                                deliver_policy=DeliverPolicy.NEW if new_only else DeliverPolicy.ALL,
                                inactive_threshold=None if durable else 60.0)
        try:
            self._sub = fleet._run(fleet.js.pull_subscribe(subject, durable=durable, stream=fleet.settings.stream,
                                                           config=config))
        except nats.js.errors.NotFoundError:
            name = fleet.settings.stream
            raise DaemonUnavailable(f"the NATS stream {name}", f"NATS has no stream {name!r}: no symbld node "
                                    "has started with this [nats] server yet") from None
        self._single = subject.split(".")[3] != "*"
        # What the stream already holds for us: "caught up" is having been handed that much, not a quiet moment.
        self.caught_up = fleet._run(self._sub.consumer_info()).num_pending == 0

    def get(self, timeout: float | None = None, until_caught_up: bool = False) -> dict[str, Any] | None:
        """The next event, or None after ``timeout`` (``until_caught_up``: None once the stream has no more)."""
        while not self._ready:
            if self.completed and self._single:
                return None
            if until_caught_up and self.caught_up:
                return None
            wait = self.fleet.timeout if until_caught_up or timeout is None else max(timeout, 0.05)
            try:
                msgs = self.fleet._run(self._sub.fetch(256, timeout=wait), wait + self.fleet.timeout)
            except nats.errors.TimeoutError:
                if timeout is not None or until_caught_up:
                    return None
                continue
            for msg in msgs:
                self._take(msg)
            if msgs and msgs[-1].metadata.num_pending == 0:
                self.caught_up = True
        event, msg = self._ready.popleft()
        self._ack(msg)  # handed out: a durable consumer resumes after it
        return event

    def _ack(self, msg: Any) -> None:
        asyncio.run_coroutine_threadsafe(msg.ack(), self.fleet._loop)  # in order, without waiting

    def _take(self, msg: Any) -> None:
        if msg.subject.split(".")[3] == DAEMON_TOKEN:
            self._ack(msg)
            return
        event = json.loads(msg.data)
        cid, seq = event.get("connectionId", ""), int(event.get("seq", 0))
        last = self._last.get(cid, self._after if self._single else 0)
        holes = self._holes.setdefault(cid, set())
        if seq <= last and seq not in holes:
            self.duplicates += 1
            self._ack(msg)
            return
        if seq > last + 1 and seq - last <= _MAX_HOLES:
            # A later event stored before an earlier one (a publisher's connection died between them):
            # keep room for the earlier one, which the publisher re-sends, instead of dropping it as old.
            holes.update(range(last + 1, seq))
        holes.discard(seq)
        self._last[cid] = max(seq, last)
        event["node"] = node_of(msg.subject)
        if event.get("type") == "conversation_completed":
            self.completed = True
            self._ready.append((event, msg))
        elif self.types is None or event.get("type") in self.types:
            self._ready.append((event, msg))
        else:
            self._ack(msg)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while (event := self.get(timeout=None)) is not None:
            yield event

    def close(self) -> None:
        async def release() -> None:
            for _event, msg in self._ready:  # fetched but never handed out: redeliver them now, not after ack_wait
                await msg.nak()
            await self._sub.unsubscribe()

        with contextlib.suppress(Exception):  # already closed or NATS gone: nothing left to release
            self.fleet._run(release(), 10)

    def __enter__(self) -> FleetStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _result(reply: dict[str, Any]) -> dict[str, Any]:
    if reply.get("ok"):
        result: dict[str, Any] = reply.get("result", {})
        return result
    err = reply.get("error") or {}
    raise DaemonError(err.get("code", "internal"), err.get("message", "unknown error"), err.get("details"))
