"""EventBus: numbering, history and the journal-then-send order of every event.

Any thread may call ``publish``; it numbers the event (per connection, under a lock), keeps
it in a bounded in-memory history and hands it to the bus thread, which journals it (fsync
for everything but interim transcripts, batched: one fsync per burst) and only then gives it
to the sink (the PUB socket, ``symbld.control.publisher``). A lossy subscriber recovers by seq
with ``history`` (the ZeroMQ guide's Clone pattern).

A journal write that fails (ENOSPC, EIO) does not lose the event: it is still published and
kept in memory (``JournalBacklog``), a ``journal_degraded`` daemon event and the status say so,
and the bus retries every second, in order, until the journal is complete again
(``journal_recovered``).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from typing import IO, Any, Protocol

import msgspec
import structlog
from msgspec import Struct

from symblctl import events
from symbld.core.ids import EVENT_VERSION, connection_topic, daemon_topic, iso_now
from symbld.core.journal import Journal, is_durable
from symbld.core.journal_backlog import JournalBacklog

log = structlog.get_logger(__name__)

_STOP = object()
_EVERY_EVENT = 1_000_000  # all_events' bound: far beyond any conversation's events


def _plain(obj: Any) -> Any:
    """A number the JSON encoder does not know (a numpy scalar from an engine) as the Python number it is.
    Only the unchecked daemon gets here: with ``check`` such a value is an ``EventShapeError`` in its producer."""
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, int):
        return int(obj)
    item = getattr(obj, "item", None)
    if item is not None:
        return item()
    raise NotImplementedError(f"cannot encode {type(obj).__name__} in an event")


_encode = msgspec.json.Encoder(enc_hook=_plain).encode

# The id of the control request being run on this thread (set by symbld.control.registry). An event
# published while it runs, on its thread (connection_started of start, speaker_event, ...), was caused by
# it and carries it as the envelope's "requestId". Threads start with no request: the session thread's
# events (transcripts, connection_stopped) carry none.
caused_by: ContextVar[str | None] = ContextVar("caused_by", default=None)


# How long a client's ``history`` waits for what was published before it to be journaled and sent (the bus
# thread does that within milliseconds; a disk slower than this gives the events sent so far).
_SENT_WAIT_S = 1.0


class Sink(Protocol):
    """Where journaled events go (the PUB socket); used only from the bus thread."""

    def send(self, topic: bytes, body: bytes) -> bool: ...

    def close(self) -> None: ...


class EventBus:
    """``check``: every event's ``data`` is checked against its declaration (``symblctl.events``) and one
    that does not fit raises ``EventShapeError`` in its producer (tests run so: ``SYMBLD_CHECK_EVENTS=1``).
    Without it only the type is checked: an undeclared one is logged once and still published (never lost)."""

    def __init__(self, sink: Sink, journal: Journal | None, history_per_connection: int = 5000,
                 check: bool = False) -> None:
        self.sink = sink
        self.journal = journal
        self.check = check
        self._undeclared: set[str] = set()
        self._history_len = history_per_connection
        self._lock = threading.Lock()
        self._seq: dict[str, int] = {}
        self._history: dict[str, deque[dict[str, Any]]] = {}
        # The last seq of each connection the bus thread has journaled and sent: what clients may read back.
        self._sent: dict[str, int] = {}
        self._sent_changed = threading.Condition(self._lock)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.published = 0
        self.refills = 0  # gap refills reported by subscribers (history with gap=true)
        self.refilled_events = 0
        # Called on the bus thread with (topic, body) after each send; must not block (the NATS bridge).
        self.listeners: list[Callable[[bytes, bytes], None]] = []
        self.backlog = JournalBacklog(journal, self.publish_daemon) if journal is not None else None
        self._thread = threading.Thread(target=self._run, name="event-bus", daemon=True)
        self._thread.start()

    # -- producers (any thread) -------------------------------------------------------------
    def _checked(self, event_type: str, data: Struct | dict[str, Any]) -> dict[str, Any]:
        """``data`` as its JSON object, checked against the declaration of ``event_type`` (see the class)."""
        if isinstance(data, Struct):
            if events.EVENTS.get(event_type) is not type(data):
                raise events.EventShapeError(f"{type(data).__name__} is not the declaration of {event_type!r}")
            return events.data_of(data)
        if self.check:
            events.check(event_type, data)
        elif event_type not in events.EVENTS and event_type not in self._undeclared:
            self._undeclared.add(event_type)
            log.error("event_undeclared", event_type=event_type, hint="declare it in symblctl/events.py")
        return data

    def publish(self, connection_id: str, conversation_id: str, event_type: str,
                data: Struct | dict[str, Any]) -> dict[str, Any]:
        data = self._checked(event_type, data)
        with self._lock:
            seq = self._seq.get(connection_id, 0) + 1
            self._seq[connection_id] = seq
            event = {"v": EVENT_VERSION, "seq": seq, "connectionId": connection_id,
                     "conversationId": conversation_id, "type": event_type, "time": iso_now(), "data": data}
            request_id = caused_by.get()
            if request_id:
                event["requestId"] = request_id
            hist = self._history.get(connection_id)
            if hist is None:
                hist = self._history[connection_id] = deque(maxlen=self._history_len)
            hist.append(event)
            body = _encode(event)
            self._queue.put((connection_id, connection_topic(connection_id, event_type), body, is_durable(event), seq))
        return event

    def publish_daemon(self, event_type: str, data: Struct | dict[str, Any]) -> None:
        data = self._checked(event_type, data)
        with self._lock:
            seq = self._seq.get("", 0) + 1
            self._seq[""] = seq
            event = {"v": EVENT_VERSION, "seq": seq, "type": event_type, "time": iso_now(), "data": data}
            self._queue.put((None, daemon_topic(event_type), _encode(event), False, seq))

    def publish_raw(self, topic: bytes, body: dict[str, Any]) -> None:
        """A message outside any connection's sequence (subscription sync markers)."""
        self._queue.put((None, topic, _encode(body), False, 0))

    def seed(self, connection_id: str, last_seq: int) -> None:
        """Continue a connection's numbering after a restart (its journal already has 1..last_seq)."""
        with self._lock:
            self._seq[connection_id] = max(self._seq.get(connection_id, 0), last_seq)

    def continue_numbering(self, connection_id: str) -> None:
        """A connection of an earlier run that gets news now: its numbering goes on from its journal's last
        event (the one place that rule lives; nothing when this run already numbers it)."""
        if self.journal is None or self.last_seq(connection_id):
            return
        last = self.journal.last_event(connection_id)
        if last is not None:
            self.seed(connection_id, int(last.get("seq", 0)))

    def close_connection(self, connection_id: str) -> None:
        """The connection ended: close its journal file once everything queued is written."""
        self._queue.put(("__close__", connection_id, b"", False, 0))

    # -- readers (any thread) -------------------------------------------------------------------
    def last_seq(self, connection_id: str) -> int:
        with self._lock:
            return self._seq.get(connection_id, 0)

    def sent_seq(self, connection_id: str) -> int:
        """The last seq journaled and sent (0: none yet, or not a connection of this run's memory)."""
        with self._lock:
            return self._sent.get(connection_id, 0)

    def history(self, connection_id: str, after_seq: int = 0, limit: int = 1000,
                sent_only: bool = False) -> list[dict[str, Any]]:
        """A connection's events after ``after_seq``. ``sent_only`` (what clients read back): only those already
        journaled and sent, so a seq a client has seen can never be lost to a crash and reused after it."""
        with self._lock:
            hist = list(self._history.get(connection_id, ()))
            if sent_only:  # read your writes: what was published before this call, once it is on disk
                numbered = self._seq.get(connection_id, 0)
                self._sent_changed.wait_for(lambda: self._sent.get(connection_id, 0) >= numbered
                                            or connection_id not in self._history, _SENT_WAIT_S)
                sent = self._sent.get(connection_id, 0)
                hist = [e for e in hist if e["seq"] <= sent]
        if hist and hist[0]["seq"] <= after_seq + 1:
            return [e for e in hist if e["seq"] > after_seq][:limit]
        # Older than memory holds (or a past daemon's connection): the journal has it.
        if self.journal is not None:
            events = list(self.journal.read(connection_id, after_seq, limit))
            if events or not hist:
                return events
        return [e for e in hist if e["seq"] > after_seq][:limit]

    def all_events(self, connection_id: str) -> list[dict[str, Any]]:
        """Every event of a connection, oldest first (memory, else its journal): summaries, pages, actions."""
        return self.history(connection_id, 0, _EVERY_EVENT)

    def forget(self, connection_id: str) -> None:
        """Drop an ended connection from memory; ``history`` then reads its journal."""
        with self._lock:
            self._history.pop(connection_id, None)
            self._seq.pop(connection_id, None)
            self._sent.pop(connection_id, None)

    # -- the bus thread -------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                try:  # while the journal is behind, wake every second to retry it
                    batch = [self._queue.get(timeout=1.0 if self.backlog and self.backlog.pending else None)]
                except queue.Empty:
                    batch = []
                if self.backlog is not None and self.backlog.pending:
                    self.backlog.retry()
                try:  # drain what is already waiting: one fsync per burst, not per event
                    while len(batch) < 512:
                        batch.append(self._queue.get_nowait())
                except queue.Empty:
                    pass
                stop = False
                to_sync: set[IO[bytes]] = set()
                ready: list[tuple[str | None, int, bytes, bytes]] = []
                for item in batch:
                    if item is _STOP:
                        stop = True
                        continue
                    cid, topic, body, durable, seq = item
                    if cid == "__close__":
                        if self.backlog is not None:
                            self._flush(ready, to_sync)
                            self.backlog.close_connection(topic)
                        continue
                    if cid is not None and self.backlog is not None:
                        f = self.backlog.append(cid, body)
                        if durable and f is not None:
                            to_sync.add(f)
                    ready.append((cid, seq, topic, body))
                self._flush(ready, to_sync)
                if stop:
                    return
        except Exception:
            log.exception("event_bus_crashed")
        finally:
            self.sink.close()

    def _flush(self, ready: list[tuple[str | None, int, bytes, bytes]], to_sync: set[IO[bytes]]) -> None:
        if to_sync and self.backlog is not None:
            self.backlog.sync(to_sync)
            to_sync.clear()
        for _cid, _seq, topic, body in ready:
            if self.sink.send(topic, body):
                self.published += 1
            for listener in self.listeners:
                listener(topic, body)
        with self._lock:
            for cid, seq, _topic, _body in ready:
                if cid is not None and cid in self._history:  # not for a connection forget() has dropped
                    self._sent[cid] = seq
            self._sent_changed.notify_all()
        ready.clear()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self.backlog is not None and not self._thread.is_alive():
            self.backlog.close()
