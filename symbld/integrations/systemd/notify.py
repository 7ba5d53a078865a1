"""systemd readiness, status and watchdog notifications (the ``sd_notify`` datagram protocol).

Standard library only: one ``AF_UNIX``/``SOCK_DGRAM`` datagram per message to ``$NOTIFY_SOCKET``
(a filesystem path, or an abstract socket written ``@name``). Outside systemd, ``Notifier.from_env()``
returns a notifier whose methods do nothing, so the daemon calls it unconditionally::

    n = Notifier.from_env()
    n.extend_timeout(120)                 # while the model loads
    n.ready("0 connections live, mic: default, engine: local")
    while running:
        ...
        if healthy:
            n.watchdog()                  # from the main loop, never from a free-running thread
    n.stopping()

Protocol reference: sd_notify(3); ``RELOADING=1`` carries ``MONOTONIC_USEC=`` because
``Type=notify-reload`` (systemd >= 253) uses it to match the reload it asked for; older managers ignore it.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import structlog

log = structlog.get_logger(__name__)

# Variables systemd hands the main process; removed from os.environ so children (sipp, helpers)
# neither notify on our behalf nor inherit a watchdog they cannot serve.
_ENV_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the clock systemd compares ``MONOTONIC_USEC=`` against."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _socket_address(value: str) -> str | bytes | None:
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # Linux abstract namespace
    if value.startswith("/"):
        return value
    return None  # e.g. "vsock:..." (systemd >= 254 in VMs): not supported here


class Notifier:
    """Sends sd_notify messages; every method is a no-op when ``enabled`` is false.

    Thread-safe. Send errors are logged once and never raised: a service manager that went away
    must not take the daemon down with it.
    """

    def __init__(self, address: str | bytes | None = None, watchdog_usec: int | None = None) -> None:
        self._address = address
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._warned = False
        if address is not None:
            # Python sockets are created close-on-exec, so children never inherit this descriptor.
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, unset: bool = True) -> Notifier:
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``, then remove them (``unset``).

        ``environ`` defaults to ``os.environ``. The watchdog is honoured only when ``WATCHDOG_PID``
        is absent or names this process (systemd sets it so a forked child does not ping).
        """
        env = os.environ if environ is None else environ
        raw_socket = env.get("NOTIFY_SOCKET", "")
        raw_usec = env.get("WATCHDOG_USEC", "")
        raw_pid = env.get("WATCHDOG_PID", "")
        if unset:
            for name in _ENV_VARS:
                env.pop(name, None)

        address = _socket_address(raw_socket) if raw_socket else None
        if raw_socket and address is None:
            log.warning("sdnotify.unsupported_socket", notify_socket=raw_socket)
        watchdog_usec: int | None = None
        if raw_usec:
            try:
                watchdog_usec = int(raw_usec)
            except ValueError:
                log.warning("sdnotify.bad_watchdog_usec", value=raw_usec)
            if raw_pid:
                try:
                    if int(raw_pid) != os.getpid():
                        watchdog_usec = None
                except ValueError:
                    watchdog_usec = None
        return cls(address, watchdog_usec if address is not None else None)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines as one datagram; True when it was sent."""
        if self._sock is None or not assignments:
            return False
        payload = "\n".join(assignments).encode()
        with self._lock:
            if self._sock is None:
                return False
            try:
                self._sock.sendto(payload, self._address)  # type: ignore[arg-type]
            except OSError as exc:
                if not self._warned:
                    self._warned = True
                    log.warning("sdnotify.send_failed", error=str(exc))
                return False
        return True

    def ready(self, status: str | None = None) -> None:
        """Startup (or a reload) finished: sockets bound, model loaded."""
        self.notify("READY=1", *self._status_line(status))

    def status(self, text: str) -> None:
        """One-line live summary shown by ``systemctl status``."""
        self.notify(*self._status_line(text))

    def reloading(self, status: str | None = "reloading configuration") -> None:
        """A SIGHUP reload started; follow it with ``ready()`` when it is done."""
        self.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", *self._status_line(status))

    def stopping(self, status: str | None = "stopping") -> None:
        self.notify("STOPPING=1", *self._status_line(status))

    def extend_timeout(self, seconds: float) -> None:
        """Ask for ``seconds`` more before the start/stop timeout fires (e.g. while a model loads)."""
        self.notify(f"EXTEND_TIMEOUT_USEC={max(0, round(seconds * 1_000_000))}")

    def watchdog_interval(self) -> float | None:
        """Seconds between pings (half of ``WATCHDOG_USEC``), or None when no watchdog is armed."""
        if self._sock is None or self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2_000_000

    def watchdog(self) -> None:
        """``WATCHDOG=1``. Call from the main loop, only after its health checks passed."""
        self.notify("WATCHDOG=1")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _status_line(text: str | None) -> tuple[str, ...]:
        if text is None:
            return ()
        # A newline would end the assignment and start a bogus one.
        return ("STATUS=" + " ".join(text.splitlines()),)
