"""The real daemon under an emulated service manager (NOTIFY_SOCKET bound by the test).

Written ahead of the daemon against the interface it is meant to have::

    python -m symbld --runtime-dir DIR --state-dir DIR --config FILE
    -> control socket DIR/control, READY=1 once bound (model loaded), STATUS= lines,
       WATCHDOG=1 from the main loop every WATCHDOG_USEC/2, SIGHUP -> RELOADING=1 ... READY=1,
       SIGTERM -> STOPPING=1 and exit 0.

The stalled-loop test assumes a test hook: while the file named by ``SYMBLD_DEBUG_STALL_FILE``
exists, the daemon's main loop blocks (sleeps) instead of iterating. Adjust on integration.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import wait_until

WATCHDOG_USEC = 400_000
READY_TIMEOUT = 60.0


@dataclass
class Message:
    at: float
    fields: dict[str, str]


@dataclass
class Manager:
    """Stands in for systemd: owns the notify socket, starts/stops the daemon, records messages."""

    tmp: Path
    sock: socket.socket
    proc: subprocess.Popen[bytes] | None = None
    messages: list[Message] = field(default_factory=list)

    @property
    def runtime_dir(self) -> Path:
        return self.tmp / "run"

    def start(self, extra_env: dict[str, str] | None = None, journal_socket: str | None = None) -> None:
        env = dict(os.environ, NOTIFY_SOCKET=self.sock.getsockname(), WATCHDOG_USEC=str(WATCHDOG_USEC))
        for name in ("WATCHDOG_PID", "JOURNAL_STREAM", "SYMBLD_JOURNAL_SOCKET"):
            env.pop(name, None)
        env.update(extra_env or {})
        cmd = [sys.executable, "-m", "symbld", "--runtime-dir", str(self.runtime_dir),
               "--state-dir", str(self.tmp / "state"), "--config", str(self.tmp / "symbld.toml")]
        # A file, not a pipe: a full pipe would wedge the daemon.
        with open(self.tmp / "daemon.log", "ab") as log:
            if journal_socket is not None:  # what systemd does: stderr is the journal stream, named by dev:ino
                st = os.fstat(log.fileno())
                env.update(JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}", SYMBLD_JOURNAL_SOCKET=journal_socket)
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)

    def next_message(self, timeout: float) -> Message | None:
        self.sock.settimeout(max(0.001, timeout))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return None
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
        message = Message(time.monotonic(), fields)
        self.messages.append(message)
        return message

    def wait_for(self, key: str, value: str = "1", timeout: float = 10.0) -> Message:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.next_message(left)
            if message is not None and message.fields.get(key) == value:
                return message
            if self.proc is not None and self.proc.poll() is not None:
                break
        raise AssertionError(f"no {key}={value} within {timeout} s; got {[m.fields for m in self.messages]}\n"
                             f"daemon log:\n{self.log_tail()}")

    def collect(self, seconds: float) -> list[Message]:
        out: list[Message] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            message = self.next_message(left)
            if message is not None:
                out.append(message)
        return out

    def log_tail(self) -> str:
        path = self.tmp / "daemon.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[Manager]:
    (tmp_path / "symbld.toml").write_text("# empty: defaults\n")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    m = Manager(tmp_path, sock)
    try:
        yield m
    finally:
        m.stop()
        sock.close()


def pings(messages: list[Message]) -> list[float]:
    return [m.at for m in messages if m.fields.get("WATCHDOG") == "1"]


def test_ready_only_after_sockets_are_bound_then_status_and_watchdog(manager: Manager) -> None:
    manager.start()
    manager.wait_for("READY", timeout=READY_TIMEOUT)
    assert (manager.runtime_dir / "control").exists()  # bound before READY, not after
    window = manager.collect(2.0)
    times = pings(window)
    assert len(times) >= 5, [m.fields for m in window]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # systemd's deadline is WATCHDOG_USEC; pinging at half of it leaves room for scheduling noise.
    assert max(gaps) < WATCHDOG_USEC / 1e6, gaps
    assert any(m.fields.get("STATUS") for m in manager.messages), "no STATUS= line"


def test_sighup_reloads_and_sigterm_stops(manager: Manager) -> None:
    manager.start()
    manager.wait_for("READY", timeout=READY_TIMEOUT)
    assert manager.proc is not None
    manager.proc.send_signal(signal.SIGHUP)
    reloading = manager.wait_for("RELOADING", timeout=10)
    assert int(reloading.fields["MONOTONIC_USEC"]) > 0  # Type=notify-reload (systemd >= 253) needs it
    manager.wait_for("READY", timeout=30)
    manager.proc.send_signal(signal.SIGTERM)
    manager.wait_for("STOPPING", timeout=10)
    assert manager.proc.wait(30) == 0


def test_watchdog_pings_stop_when_the_main_loop_is_stuck(manager: Manager) -> None:
    stall = manager.tmp / "stall"
    manager.start({"SYMBLD_DEBUG_STALL_FILE": str(stall)})
    manager.wait_for("READY", timeout=READY_TIMEOUT)
    manager.wait_for("WATCHDOG", timeout=2)
    stall.touch()
    manager.collect(0.5)  # drop what was sent while the loop reached the stall
    stuck = manager.collect(1.5)
    assert pings(stuck) == [], "a free-running thread kept pinging while the main loop was blocked"
    stall.unlink()
    manager.wait_for("WATCHDOG", timeout=3)  # pings resume once the loop runs again


def test_restart_after_kill_9(manager: Manager) -> None:
    manager.start()
    manager.wait_for("READY", timeout=READY_TIMEOUT)
    assert manager.proc is not None
    manager.proc.kill()  # SIGKILL: no cleanup, stale socket files stay behind
    manager.proc.wait(10)
    manager.messages.clear()
    manager.start()  # what Restart=on-failure does
    manager.wait_for("READY", timeout=READY_TIMEOUT)
    assert (manager.runtime_dir / "control").exists()
    manager.proc.send_signal(signal.SIGTERM)
    manager.wait_for("STOPPING", timeout=10)
    assert manager.proc.wait(30) == 0


def test_logs_go_to_journald_as_fields_under_systemd(manager: Manager) -> None:
    journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journal.bind(str(manager.tmp / "journal.sock"))
    journal.settimeout(1.0)
    try:
        manager.start(journal_socket=str(manager.tmp / "journal.sock"))
        manager.wait_for("READY", timeout=READY_TIMEOUT)
        entries: list[dict[str, str]] = []

        def an_entry_with_priority() -> bool:
            try:
                data = journal.recv(1 << 20)
            except TimeoutError:
                return False
            entries.append(dict(line.split("=", 1) for line in data.decode(errors="replace").split("\n")
                                if "=" in line))
            return any(e.get("PRIORITY") for e in entries)

        try:
            wait_until("a journal entry with PRIORITY", an_entry_with_priority, 10, every=0)
        except AssertionError:
            raise AssertionError(f"no journal entry with PRIORITY ({len(entries)} entries); daemon log:\n"
                                 f"{manager.log_tail()}") from None
        assert all(e.get("SYSLOG_IDENTIFIER") == "symbld" for e in entries)
        assert all(e.get("SYMBLD_EVENT") for e in entries)
        assert "{" not in manager.log_tail()  # not also written as JSON lines to stderr
    finally:
        journal.close()
