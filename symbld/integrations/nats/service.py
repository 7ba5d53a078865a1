"""The daemon's NATS side on one asyncio thread: connection, stream, event bridge and control server.

Started from ``symbld.app`` once the bus exists; :class:`NatsService` is what the daemon holds.
Start-up is all or nothing: bad credentials, a TLS mismatch, an unreachable server or a missing
JetStream stop the daemon with one line (``NatsSetupError``). After that NATS may come and go;
the bridge catches up from the journal.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from symblctl.nats_settings import NatsSettings, NatsSetupError, connect
from symbld.integrations.nats.bridge import EventBridge, ensure_stream
from symbld.integrations.nats.control import NatsControl
from symbld.integrations.nats.cursors import Cursors

if TYPE_CHECKING:
    from symbld.core.ports import NatsHost

log = structlog.get_logger(__name__)

_START_TIMEOUT = 30.0
_DRAIN_TIMEOUT = 10.0


class NatsService:
    def __init__(self, daemon: NatsHost, settings: NatsSettings) -> None:
        if not (settings.credentials or settings.token or settings.user):
            # Like tcp:// without CURVE: never serve control to unauthenticated peers.
            raise NatsSetupError("[nats] serves control to remote peers: configure credentials, token or user "
                                 "(the NATS server must authenticate its clients)")
        self.daemon = daemon
        self.settings = settings
        assert daemon.journal is not None
        self.bridge = EventBridge(settings, daemon.journal, Cursors(Path(daemon.state_dir) / "nats"))
        self.control = NatsControl(daemon, settings.node)
        self.disconnects = 0
        self.connected_since: float | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nats", daemon=True)
        self._nc: Any = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        try:
            future.result(_START_TIMEOUT)
        except TimeoutError:
            raise NatsSetupError(f"NATS start-up took longer than {_START_TIMEOUT:g} s") from None
        except NatsSetupError:
            self._stop_loop()
            raise
        self.daemon.bus.listeners.append(self.bridge.offer)
        log.info("nats_ready", **self.settings.describe())

    async def _start(self) -> None:
        self._nc = await connect(self.settings, f"symbld {self.settings.node}",
                                 disconnected_cb=self._disconnected, reconnected_cb=self._reconnected,
                                 error_cb=self._error)
        self.connected_since = time.time()
        js = self._nc.jetstream(timeout=self.settings.ack_timeout)
        try:
            await ensure_stream(js, self.settings)
            await self.control.start(self._nc)
        except NatsSetupError:
            await self._nc.close()
            raise
        run = self.bridge.run(self._nc, js, lambda: self._nc.is_connected)
        self._task = asyncio.get_running_loop().create_task(run)

    async def _disconnected(self) -> None:
        self.disconnects += 1
        self.connected_since = None
        # nats-py keeps what it had not yet written to the dead socket and sends it after the reconnect: a later
        # event (seq 4) then reached the stream while its predecessor (3), written just before the socket died, was
        # lost, and the journal's catch-up put 3 after 4 (test_nats_killed_mid_session, once in a fresh clone).
        # Dropped here instead: their acks fail, and the bridge re-sends them from the journal, in order.
        # (nats-py 2.16's own buffer: the client is pinned, and this callback runs before the reconnect.)
        if self._nc is not None:
            self._nc._pending.clear()
            self._nc._pending_data_size = 0
        log.warning("nats_disconnected")

    async def _reconnected(self) -> None:
        self.connected_since = time.time()
        log.info("nats_reconnected", server=str(self._nc.connected_url.netloc if self._nc.connected_url else ""))

    async def _error(self, e: Exception) -> None:
        log.warning("nats_error", error=f"{type(e).__name__}: {e}")

    def describe(self) -> dict[str, Any]:
        return {"enabled": True, **self.settings.describe(), "connected": bool(self._nc and self._nc.is_connected),
                "disconnects": self.disconnects, "controlRequests": self.control.requests,
                "bridge": self.bridge.snapshot()}

    def close(self) -> None:
        """After the bus is closed: publish what is left (bounded wait), then disconnect."""
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._close(), self._loop)
        try:
            future.result(_DRAIN_TIMEOUT + 5)
        except Exception as e:  # noqa: BLE001 - closing: logged, the loop stops anyway
            log.warning("nats_close_failed", error=f"{type(e).__name__}: {e}")
        self._stop_loop()

    async def _close(self) -> None:
        drained = await self.bridge.drain(_DRAIN_TIMEOUT, lambda: bool(self._nc and self._nc.is_connected))
        if not drained:
            log.warning("nats_not_drained", **self.bridge.snapshot())  # the journal keeps it: the next start sends it
        await self.control.close()
        if self._task is not None:
            self._task.cancel()
        if self._nc is not None:
            try:
                await asyncio.wait_for(self._nc.drain(), 5.0)
            except Exception:  # noqa: BLE001 - NATS away or slow: close without waiting (nothing unacked is lost: journal)
                await self._nc.close()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
