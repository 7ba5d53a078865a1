"""Every bus event, in the same envelope, on the JetStream stream at ``symbld.events.<node>.<connectionId>.<type>``.

The bus thread only appends to a bounded in-memory queue (:meth:`EventBridge.offer`, never blocks).
The bridge's coroutine publishes in order with ``Nats-Msg-Id: <connectionId>:<seq>`` and counts an
event as delivered only when JetStream acknowledged it (finals included: everything is acked). When
NATS is down or slow the queue fills; past ``buffer_events`` new events are not queued but left in the
journal (already on disk, fsync'ed for finals), and the connection is marked behind. Any gap in a
connection's seq (overflow, an outage, a crash before the ack) is filled from the journal after the
connection's acknowledged cursor before the next event goes out: in order, and re-sends are dropped by
JetStream's de-duplication window (and recognisable to any consumer by connectionId + seq).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError

from symblctl.nats_settings import NatsSettings, NatsSetupError
from symblctl.nats_subjects import DAEMON_TOKEN, EVENTS_PREFIX, event_subject
from symbld.core.journal import Journal
from symbld.integrations.nats.cursors import Cursors

log = structlog.get_logger(__name__)

_BATCH = 256


def stream_config(s: NatsSettings) -> StreamConfig:
    return StreamConfig(name=s.stream, subjects=[f"{EVENTS_PREFIX}.>"], storage=StorageType.FILE,
                        max_age=s.max_age_days * 86400 if s.max_age_days > 0 else None, max_bytes=s.max_bytes,
                        num_replicas=s.replicas, duplicate_window=s.duplicate_window)


async def ensure_stream(js: JetStreamContext, s: NatsSettings) -> None:
    """Create the stream, or bring an existing one to the configured settings (every node may do this)."""
    cfg = stream_config(s)
    try:
        try:
            await js.add_stream(cfg)
        except BadRequestError:
            await js.update_stream(cfg)  # exists with other limits: the configured ones win
    except Exception as e:  # noqa: BLE001 - nats-py raises many types: one setup error naming it
        raise NatsSetupError(f"cannot create the JetStream stream {s.stream} (is JetStream enabled, "
                             f"nats-server -js?): {type(e).__name__}: {e}") from None


class EventBridge:
    def __init__(self, settings: NatsSettings, journal: Journal, cursors: Cursors) -> None:
        self.settings = settings
        self.journal = journal
        self.cursors = cursors
        self._queue: deque[tuple[bytes, bytes]] = deque()
        self._behind: set[str] = set()
        self._lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._asleep = False
        self._busy = False  # a batch popped from the queue is being published
        self._connected: Callable[[], bool] = lambda: True  # set by run()
        self.stats = {"published": 0, "finals": 0, "fromJournal": 0, "overflowed": 0, "duplicates": 0,
                      "publishFailures": 0, "daemonEventsDropped": 0, "behind": 0, "queued": 0}

    # -- the bus thread ----------------------------------------------------------------------
    def offer(self, topic: bytes, body: bytes) -> None:
        """Called for every event the bus sent on PUB; must never block or raise."""
        with self._lock:
            if len(self._queue) >= self.settings.buffer_events:
                self.stats["overflowed"] += 1
                if topic.startswith(b"connection."):
                    self._behind.add(topic.split(b".")[1].decode())
                else:
                    self.stats["daemonEventsDropped"] += 1
                return
            self._queue.append((topic, body))
            wake = self._asleep
            self._asleep = False
        if wake and self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed at shutdown
                self._loop.call_soon_threadsafe(self._wake.set)

    # -- the NATS thread -----------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**self.stats, "queued": len(self._queue), "behind": len(self._behind)}

    def idle(self) -> bool:
        with self._lock:
            return not self._queue and not self._behind and not self._busy

    async def run(self, nc: NATS, js: JetStreamContext, connected: Callable[[], bool]) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._connected = connected
        with self._lock:
            self._behind.update(self.cursors.unpublished(self.journal))
        while True:
            if not connected():
                await asyncio.sleep(0.1)
                continue
            with self._lock:
                batch = [self._queue.popleft() for _ in range(min(_BATCH, len(self._queue)))]
                behind = self._behind.pop() if not batch and self._behind else None
                self._busy = bool(batch) or behind is not None
                if not self._busy:
                    self._asleep = True
                    self._wake.clear()
            try:
                if batch:
                    await self._publish(js, batch)
                elif behind is not None:
                    await self._catch_up(js, behind)
            finally:
                self._busy = False
            if not batch and behind is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)
            self.cursors.save()

    async def _catch_up(self, js: JetStreamContext, cid: str) -> None:
        after = self.cursors.acked.get(cid, 0)
        events = await asyncio.to_thread(lambda: list(self.journal.read(cid, after, 2000)))
        if not events:
            return
        plan = [(cid, e["seq"], event_subject(self.settings.node, cid, e["type"]), _encode(e), e) for e in events]
        self.stats["fromJournal"] += len(plan)
        ok = await self._send(js, plan)
        if ok and len(events) == 2000:
            with self._lock:
                self._behind.add(cid)  # more pages to go

    async def _publish(self, js: JetStreamContext, batch: list[tuple[bytes, bytes]]) -> None:
        plan: list[tuple[str | None, int, str, bytes, dict[str, Any]]] = []
        expected: dict[str, int] = {}
        for topic, body in batch:
            kind = topic.split(b".", 1)[0]
            if kind == b"daemon":
                event = json.loads(body)
                plan.append((None, 0, event_subject(self.settings.node, DAEMON_TOKEN, event["type"]), body, event))
                continue
            if kind != b"connection":
                continue  # subscription sync markers are for local SUB sockets only
            event = json.loads(body)
            cid, seq = event["connectionId"], event["seq"]
            last = expected.get(cid, self.cursors.acked.get(cid, 0))
            if seq <= last:
                continue  # already on the stream (a catch-up got there first)
            if seq > last + 1:  # overflow, an outage or a restart left a gap: the journal has it
                def read_gap(c: str = cid, a: int = last, n: int = seq - 1 - last) -> list[dict[str, Any]]:
                    return list(self.journal.read(c, a, n))
                missing = await asyncio.to_thread(read_gap)
                self.stats["fromJournal"] += len(missing)
                plan += [(cid, e["seq"], event_subject(self.settings.node, cid, e["type"]), _encode(e), e)
                         for e in missing if e["seq"] < seq]
            plan.append((cid, seq, event_subject(self.settings.node, cid, event["type"]), body, event))
            expected[cid] = seq
        if plan:
            await self._send(js, plan)

    async def _send(self, js: JetStreamContext,
                    plan: Sequence[tuple[str | None, int, str, bytes, dict[str, Any]]]) -> bool:
        """Publish in order, then wait for every ack; advance each connection's cursor over its acked prefix."""
        futures: list[asyncio.Future[Any] | BaseException] = []
        stopped: BaseException | None = None
        for cid, seq, subject, body, _event in plan:
            headers = {"Nats-Msg-Id": f"{cid}:{seq}"} if cid is not None else None
            if stopped is None and not self._connected():
                # Never hand the client's reconnect buffer a later event whose predecessor may have died
                # with the old socket: the rest of the batch waits in the journal.
                stopped = ConnectionError("NATS disconnected mid-batch")
            if stopped is not None:
                futures.append(stopped)
                continue
            try:
                futures.append(await js.publish_async(subject, body, headers=headers,
                                                      wait_stall=self.settings.ack_timeout))
            except Exception as e:  # noqa: BLE001 - disconnected mid-batch: the rest waits in the journal
                stopped = e
                futures.append(e)
        results = await asyncio.gather(*(_ack(f, self.settings.ack_timeout) for f in futures))
        failed: set[str] = set()
        all_ok = True
        for (cid, seq, _subject, _body, event), result in zip(plan, results, strict=True):
            if isinstance(result, BaseException):
                all_ok = False
                self.stats["publishFailures"] += 1
                if cid is None:
                    self.stats["daemonEventsDropped"] += 1
                else:
                    failed.add(cid)
                continue
            if cid is None or cid in failed:
                continue  # after a failure this connection's later acks wait for the gap to be re-sent
            self.stats["published"] += 1
            self.stats["duplicates"] += bool(result.duplicate)
            if event.get("type") == "transcript_response" and event.get("data", {}).get("isFinal"):
                self.stats["finals"] += 1
            self.cursors.advance(cid, seq)
        if failed:
            with self._lock:
                self._behind.update(failed)
            log.warning("nats_publish_failed", connections=len(failed), error=_first_error(results))
            await asyncio.sleep(0.5)  # NATS is down or slow: let the reconnect happen
        return all_ok

    async def drain(self, timeout: float, connected: Callable[[], bool]) -> bool:
        """At shutdown: wait until everything queued and behind is acknowledged (or the timeout; not at all
        while NATS is away: the journal keeps it for the next start)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.idle() and connected() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        self.cursors.save(force=True)
        return self.idle()


async def _ack(future: asyncio.Future[Any] | BaseException, timeout: float) -> Any:
    if isinstance(future, BaseException):
        return future
    try:
        return await asyncio.wait_for(future, timeout)
    except Exception as e:  # noqa: BLE001 - the ack's failure is its result (the caller counts it)
        return e


def _first_error(results: list[Any]) -> str:
    for r in results:
        if isinstance(r, BaseException):
            return f"{type(r).__name__}: {r}"
    return ""


def _encode(event: dict[str, Any]) -> bytes:
    """A journaled event back to bytes (the journal line is the same JSON the bus published)."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
