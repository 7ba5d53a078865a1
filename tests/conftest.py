"""Shared fixtures: the real symbld as a subprocess in a private runtime directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/speechgen.py, tests/virtmic.py

from symblctl.client import Client, DaemonError

# Every daemon a test starts (they inherit this environment) checks each event it publishes against its
# declaration in symblctl/events.py: an undeclared type or a wrong field fails in its producer.
os.environ.setdefault("SYMBLD_CHECK_EVENTS", "1")


class DaemonProc:
    """A running symbld: its process, directories, endpoints and log."""

    def __init__(self, root: Path, args: list[str] | None = None, env: dict[str, str] | None = None,
                 config: str | None = None) -> None:
        self.root = root
        self.run_dir = root / "run"
        self.state_dir = root / "state"
        self.log_path = root / "symbld.log"
        self.control = f"ipc://{self.run_dir}/control"
        self.events = f"ipc://{self.run_dir}/events"
        self.args = list(args or [])
        self.env = {**os.environ, "SYMBLD_LOG_FORMAT": "json", **(env or {})}
        self.config_path: Path | None = None
        root.mkdir(parents=True, exist_ok=True)
        if config is not None:
            self.config_path = root / "symbld.toml"
            self.config_path.write_text(config)
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "symbld", "--runtime-dir", str(self.run_dir), "--state-dir", str(self.state_dir)]
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        return cmd + self.args

    def start(self, wait: float = 90.0) -> DaemonProc:
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=self.env)
        log.close()
        deadline = time.monotonic() + wait
        with self.client(timeout=1.0, retries=0) as c:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"symbld exited with {self.proc.returncode}:\n{self.log()}")
                try:
                    c.ping()
                    return self
                except DaemonError:
                    time.sleep(0.1)
        raise RuntimeError(f"symbld did not answer within {wait} s:\n{self.log()}")

    def client(self, timeout: float = 10.0, retries: int = 1) -> Client:
        return Client(self.control, self.events, timeout=timeout, retries=retries)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"symbld did not exit within {timeout} s after signal {sig}:\n{self.log()}") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    """One daemon per test module (the model loads once)."""
    d = DaemonProc(tmp_path_factory.mktemp("symbld")).start()
    yield d
    code = d.stop()
    assert code == 0, f"symbld exited with {code} on SIGTERM:\n{d.log()}"


@pytest.fixture(scope="module")
def daemon_endpoints(daemon: DaemonProc) -> tuple[str, str]:
    """The module daemon's (control, events), for code that takes endpoints rather than a DaemonProc."""
    return daemon.control, daemon.events


@pytest.fixture
def fresh_daemon(tmp_path: Path) -> Iterator[DaemonProc]:
    """A daemon of one's own, for tests that kill or reconfigure it."""
    d = DaemonProc(tmp_path / "d").start()
    yield d
    d.kill()


@pytest.fixture
def client(daemon: DaemonProc) -> Iterator[Client]:
    with daemon.client() as c:
        yield c


def messages(events: list[dict]) -> list[str]:
    """The texts of every message_response, in order: what the tests compare with what was said."""
    return [m["payload"]["content"] for e in events if e["type"] == "message_response" for m in e["data"]["messages"]]


def wait_until(what: str, check: Callable[[], Any], timeout: float = 60.0, every: float = 0.1) -> Any:
    """Poll ``check()`` until it returns something true, and return that; fail naming ``what`` after ``timeout``.

    The one way the tests wait: on a condition, never a fixed sleep (the machines are shared and slow at times).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout} s (last value {value!r})")
        time.sleep(every)


def wait_for_events(client: Client, connection_id: str, done: Callable[[list[dict]], bool],
                    timeout: float = 30.0, what: str = "condition") -> list[dict]:
    """Poll a connection's history (complete by seq) until ``done(events)``; its events then."""
    seen: list[dict] = []

    def check() -> list[dict] | None:
        seen[:] = client.all_history(connection_id)
        return list(seen) if done(seen) else None

    try:
        return wait_until(what, check, timeout)
    except AssertionError:
        raise AssertionError(f"{what} not met within {timeout} s; events: {[e['type'] for e in seen]}") from None


def wait_for_type(client: Client, connection_id: str, event_type: str, timeout: float = 30.0) -> list[dict]:
    return wait_for_events(client, connection_id, lambda ev: any(e["type"] == event_type for e in ev), timeout,
                           f"a {event_type} event")


def events_until_complete(client: Client, connection_id: str, timeout: float = 60.0) -> list[dict]:
    """All events of a connection until conversation_completed."""
    return wait_for_events(client, connection_id, lambda ev: bool(ev) and ev[-1]["type"] == "conversation_completed",
                           timeout, "conversation_completed")
