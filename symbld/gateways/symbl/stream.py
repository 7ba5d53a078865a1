"""One streaming connection to a Symbl(-compatible) endpoint, with reconnect and buffering.

Threads: ``open()`` connects and waits for ``conversation_created``; then a *reader* receives and
maps frames (and reconnects when the socket drops), and a *writer* sends buffered audio in chunks
of at most 8,192 bytes, the keep-alive ``__PING__`` and finally ``stop_request``.

Audio is never sent before the ``start_request`` of the current socket. While the socket is down
``feed`` keeps appending to a bounded buffer (``buffer_seconds``; the oldest audio is dropped past
it), which the writer drains after the reconnect, so no audio fed during an outage is lost up to
that bound. Audio already handed to the dying socket can be lost with it.
"""

from __future__ import annotations

import collections
import json
import random
import threading
import time
from typing import Any

import structlog
import websocket

from symbld.engines.base import Emit, Engine, EngineError, EngineStream, StreamConfig
from symbld.gateways.symbl import wire
from symbld.gateways.symbl.auth import TokenClient
from symbld.gateways.symbl.cloud_socket import Closable, Retry, connect_websocket, start_request, websocket_url

log = structlog.get_logger(__name__)

MAX_CHUNK = 8192  # Symbl's documented maximum binary frame
BYTES_PER_SECOND = 32000  # 16 kHz mono s16le


class SymblStream:
    def __init__(self, cfg: StreamConfig, emit: Emit, tokens: TokenClient, options: dict[str, Any],
                 fallback: Engine | None = None) -> None:
        self.cfg = cfg
        self._fallback_engine = fallback if options.get("failover") == "local" else None
        self.fallback: EngineStream | None = None  # set once the stream failed over
        self._emit = emit
        self._tokens = tokens
        self._opt = options
        self._url = websocket_url(options["base_url"], f"/v1/streaming/{cfg.connection_id}")
        self._start = start_request(cfg)
        self._mapper = wire.FrameMapper(cfg.started_at or time.time())
        self._ws: websocket.WebSocket | None = None
        self._cond = threading.Condition()
        self._buffer: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._max_buffer = int(float(options["buffer_seconds"]) * BYTES_PER_SECOND)
        self._connected = False
        self._stop_requested = False
        self._stop_sent = False
        self._closing = False
        self._completed = threading.Event()
        self._shut = threading.Event()  # wakes the reconnect backoff at close()
        self._last_send = time.monotonic()
        self._ping_sent_at: float | None = None
        self.error: EngineError | None = None
        self.remote_conversation_id: str | None = None
        self.reconnects = 0
        self.dropped_bytes = 0
        self._reader: threading.Thread | None = None
        self._writer: threading.Thread | None = None

    # ------------------------------------------------------------ contract

    def open(self) -> None:
        try:
            ws = connect_websocket(self._url, self._tokens, float(self._opt["connect_timeout"]))
            self._begin(ws)
        except Retry as exc:
            if self._fallback_engine is not None:
                self._fail_over(f"Symbl endpoint unreachable at {self._opt['base_url']}: {exc}")
                return
            raise EngineError(f"Symbl endpoint unreachable at {self._opt['base_url']}: {exc}") from exc
        name = self.cfg.connection_id[:8]
        self._reader = threading.Thread(target=self._read_loop, name=f"symbl-read-{name}", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name=f"symbl-write-{name}", daemon=True)
        self._reader.start()
        self._writer.start()

    def feed(self, pcm: bytes) -> None:
        with self._cond:
            if self.fallback is not None:
                self.fallback.feed(pcm)
                return
            if self._stop_requested or self._closing:
                return
            for i in range(0, len(pcm), MAX_CHUNK):
                chunk = pcm[i:i + MAX_CHUNK]
                self._buffer.append(chunk)
                self._buffered += len(chunk)
            while self._buffered > self._max_buffer:
                old = self._buffer.popleft()
                self._buffered -= len(old)
                if not self.dropped_bytes:
                    log.warning("symbl audio buffer full; dropping oldest audio",
                                connection_id=self.cfg.connection_id, buffer_seconds=self._opt["buffer_seconds"])
                self.dropped_bytes += len(old)
            self._cond.notify_all()

    def finish(self) -> None:
        """Send what is buffered, then stop_request; return when the server completed (bounded)."""
        with self._cond:
            self._stop_requested = True
            self._cond.notify_all()
        if not self._completed.wait(float(self._opt["stop_timeout"])):
            log.warning("symbl stop not completed in time", connection_id=self.cfg.connection_id)
        if self.fallback is not None:
            self.fallback.finish()

    def close(self) -> None:
        self._shut.set()
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        ws = self._ws
        if ws is not None:
            try:
                ws.close(timeout=1)
            except Exception:
                log.debug("symbl socket close failed", exc_info=True)
        self._completed.set()
        for t in (self._reader, self._writer):
            if t is not None and t is not threading.current_thread():
                t.join(5)
        if self.fallback is not None:
            self.fallback.close()

    # ------------------------------------------------------------ connection

    def _begin(self, ws: websocket.WebSocket) -> None:
        """Send start_request and wait for conversation_created; then audio may flow."""
        ws.send(json.dumps(self._start))
        ws.settimeout(float(self._opt["connect_timeout"]))
        try:
            while True:
                opcode, data = ws.recv_data()
                if opcode != websocket.ABNF.OPCODE_TEXT:
                    raise Retry("server closed before conversation_created")
                mapped = self._mapper.map_text(data.decode("utf-8", "replace"))
                if mapped.error:
                    ws.close()
                    raise EngineError(f"Symbl endpoint refused start_request: {mapped.error['message']}",
                                      {"details": mapped.error.get("details")})
                if mapped.system == "conversation_created":
                    self.remote_conversation_id = mapped.conversation_id
                    break
        except (OSError, websocket.WebSocketException) as exc:
            raise Retry(f"no conversation_created: {exc}") from exc
        finally:
            ws.settimeout(None)
        with self._cond:
            self._ws = ws
            self._connected = True
            self._stop_sent = False
            self._ping_sent_at = None
            self._last_send = time.monotonic()
            self._cond.notify_all()
        log.info("symbl stream connected", connection_id=self.cfg.connection_id,
                 remote_conversation=self.remote_conversation_id)

    def _read_loop(self) -> None:
        while not self._closing and not self._completed.is_set():
            ws = self._ws
            try:
                assert ws is not None
                opcode, data = ws.recv_data()
            except (OSError, websocket.WebSocketException, AssertionError):
                opcode, data = websocket.ABNF.OPCODE_CLOSE, b""
            if opcode == websocket.ABNF.OPCODE_TEXT:
                self._handle(data.decode("utf-8", "replace"))
                continue
            if opcode != websocket.ABNF.OPCODE_CLOSE:
                continue
            # The socket is gone. After our stop, that is the normal end.
            if self._closing or (self._stop_sent and self._completed.is_set()):
                break
            self._reconnect()

    def _handle(self, text: str) -> None:
        mapped = self._mapper.map_text(text)
        if mapped.system == wire.PONG:
            with self._cond:
                self._ping_sent_at = None
            return
        if mapped.error:
            log.warning("symbl server error frame", connection_id=self.cfg.connection_id,
                        message=mapped.error["message"])
        for etype, data in mapped.events:
            self._emit(etype, data)
        if mapped.system in ("conversation_completed", "recognition_stopped"):
            if not self._stop_sent:  # ended on the server side (its own stop); do not start a new one
                log.info("symbl conversation ended by the server", connection_id=self.cfg.connection_id)
            self._completed.set()

    def _reconnect(self) -> None:
        with self._cond:
            self._connected = False
            self._cond.notify_all()
        old = self._ws
        if old is not None:
            try:
                old.close(timeout=0.2)
            except Exception:
                log.debug("symbl old socket close failed", exc_info=True)
        lost_at = time.monotonic()
        deadline = lost_at + float(self._opt["reconnect_max_seconds"])
        delay = float(self._opt["reconnect_initial_delay"])
        log.warning("symbl stream dropped; reconnecting", connection_id=self.cfg.connection_id)
        while not self._closing:
            # Exponential backoff with jitter (so many clients do not return in lockstep).
            if self._shut.wait(delay * random.uniform(0.5, 1.0)):
                return
            delay = min(delay * 2, float(self._opt["reconnect_max_delay"]))
            try:
                ws = connect_websocket(self._url, self._tokens, float(self._opt["connect_timeout"]))
                self._begin(ws)
                self.reconnects += 1
                log.info("symbl stream reconnected", connection_id=self.cfg.connection_id,
                         buffered_seconds=round(self._buffered / BYTES_PER_SECOND, 2))
                return
            except EngineError as exc:
                self._fail(exc)
                return
            except Retry as exc:
                if self._fallback_engine is not None and time.monotonic() - lost_at >= float(
                        self._opt["failover_after"]):
                    self._fail_over(f"Symbl endpoint unreachable for {self._opt['failover_after']} s: {exc}")
                    return
                if time.monotonic() > deadline:
                    self._fail(EngineError(
                        f"Symbl endpoint unreachable for {self._opt['reconnect_max_seconds']} s: {exc}",
                        code="engine_error"))
                    return
                log.info("symbl reconnect failed; retrying", connection_id=self.cfg.connection_id, error=str(exc))

    def _fail_over(self, reason: str) -> None:
        """Continue this connection on the fallback (offline) engine, with the buffered audio."""
        assert self._fallback_engine is not None
        try:
            fallback = self._fallback_engine.open(self.cfg, self._emit)
        except EngineError as exc:
            self._fail(exc)
            return
        log.warning("symbl stream failed over to the offline engine", connection_id=self.cfg.connection_id,
                    reason=reason)
        self._emit("engine_failover", {"from": "symbl", "to": getattr(self._fallback_engine, "name", "local"),
                                       "reason": reason})
        with self._cond:  # under the lock so buffered audio goes first, before any new feed()
            if self._buffer:
                fallback.feed(b"".join(self._buffer))
            self._buffer.clear()
            self._buffered = 0
            self.fallback = fallback
            self._closing = True  # ends the reader and writer; feed() now goes to the fallback
            self._cond.notify_all()
        self._completed.set()  # a waiting finish() then finishes the fallback stream

    def _fail(self, exc: EngineError) -> None:
        """A fatal error after open: record it, tell the session, end the stream."""
        self.error = exc
        log.error("symbl stream failed", connection_id=self.cfg.connection_id, error=exc.message)
        callback = self.cfg.extra.get("on_fatal")
        if callable(callback):
            try:
                callback(exc)
            except Exception:
                log.exception("symbl on_fatal callback failed")
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._completed.set()

    # ------------------------------------------------------------ writer

    def _write_loop(self) -> None:
        interval = float(self._opt["keepalive_interval"])
        while True:
            with self._cond:
                while not self._closing and not (
                    self._connected and (self._buffer or (self._stop_requested and not self._stop_sent))
                ):
                    if self._connected and interval > 0:
                        due = self._last_send + interval - time.monotonic()
                        if due <= 0:
                            break
                        self._cond.wait(due)
                    else:
                        self._cond.wait(1.0)
                if self._closing:
                    return
                ws = self._ws
                chunk = self._buffer.popleft() if self._buffer else None
                if chunk is not None:
                    self._buffered -= len(chunk)
                send_stop = chunk is None and self._stop_requested and not self._stop_sent
            try:
                assert ws is not None
                if chunk is not None:
                    ws.send(chunk, opcode=websocket.ABNF.OPCODE_BINARY)
                elif send_stop:
                    ws.send(json.dumps({"type": "stop_request"}))
                    with self._cond:
                        self._stop_sent = True
                else:
                    self._keepalive(ws, interval)
                with self._cond:
                    self._last_send = time.monotonic()
            except (OSError, websocket.WebSocketException, AssertionError):
                with self._cond:
                    if chunk is not None:  # not sent: keep it for after the reconnect
                        self._buffer.appendleft(chunk)
                        self._buffered += len(chunk)
                    self._connected = False
                if ws is not None:
                    closable: Closable = ws
                    try:
                        closable.shutdown()  # make the reader notice at once
                    except Exception:
                        log.debug("symbl shutdown failed", exc_info=True)

    def _keepalive(self, ws: websocket.WebSocket, interval: float) -> None:
        now = time.monotonic()
        if self._ping_sent_at is not None and now - self._ping_sent_at > 2 * interval:
            log.warning("symbl keep-alive unanswered; reconnecting", connection_id=self.cfg.connection_id)
            raise websocket.WebSocketException("no __PONG__")
        ws.send(wire.PING)
        if self._ping_sent_at is None:
            self._ping_sent_at = now
