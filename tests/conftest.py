"""Shared fixtures: the real symbld as a subprocess in a private runtime directory."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

sys.path.insert(0, str(Path(__file__).parent))  # tests/speechgen.py, tests/virtmic.py

from symblctl.client import Client, DaemonError

# Every daemon a test starts (they inherit this environment) checks each event it publishes against its
# declaration in symblctl/events.py: an undeclared type or a wrong field fails in its producer.
os.environ.setdefault("SYMBLD_CHECK_EVENTS", "1")

# Variables that would point a daemon or a client started by a test at the user's own daemon, config
# or keys rather than the test's.
_OUTSIDE_ENV = ("SYMBLD_CONFIG", "SYMBLD_CONTROL", "SYMBLD_EVENTS", "SYMBLD_RUNTIME_DIR", "SYMBLD_KEYS_DIR",
                "SYMBLD_NATS", "SYMBLD_NATS_CREDS", "SYMBLD_NATS_TOKEN", "SYMBLD_NATS_CA", "SYMBLD_CLIENT_KEY",
                "SYMBLD_SERVER_KEY", "SYMBLD_TOKEN_SECRET", "SYMBL_APP_ID", "SYMBL_APP_SECRET", "CREDENTIALS_DIRECTORY")


# How tests are spread over xdist workers. A test module goes to one worker whole (its module fixtures, a
# daemon or a venv, are built once), and modules marked with the same module-level xdist_group share that one
# worker, one after another: "cpu-heavy" measurements never run beside each other, "install" adds extras to
# one venv in order. This is xdist's loadgroup done here, because pytest-xdist 3.8's own does not group under
# pytest 9 (it renames items through a private attribute pytest no longer reads: tests of one group were
# seen on both workers). A module marked ``spread`` (independent tests, no costly module fixture) is dealt
# out test by test instead, so one long module does not keep a worker busy after the others have finished.
_GROUP_MARK = re.compile(r"pytest\.mark\.xdist_group\(\"([^\"]+)\"\)")
_SPREAD_MARK = re.compile(r"pytest\.mark\.spread\b")


@functools.cache
def _scope_of_module(module: str) -> str | None:
    """The scope a module's tests are scheduled in: its group, itself, or None (each test its own)."""
    path = Path(__file__).resolve().parents[1] / module  # node ids are relative to the repository root
    text = path.read_text() if path.is_file() else ""
    if _SPREAD_MARK.search(text):
        return None
    found = _GROUP_MARK.search(text)
    return f"group:{found.group(1)}" if found else module


class _ModuleGroupScheduling(LoadScopeScheduling):
    def _split_scope(self, nodeid: str) -> str:
        return _scope_of_module(nodeid.split("::", 1)[0]) or nodeid


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadScopeScheduling:
    return _ModuleGroupScheduling(config, log)


def pytest_configure(config: pytest.Config) -> None:
    """Each test process (an xdist worker, or the one process) gets XDG config/state/data homes of its
    own, and none of the user's symbld variables: tests never read or write ~/.config/symbld, and
    workers never share a default config, key or journal. Set before any test copies os.environ."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    home = Path(tempfile.mkdtemp(prefix=f"symbld-tests-{worker}-"))
    config.stash[_HOME] = home
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_STATE_HOME", "state"), ("XDG_DATA_HOME", "data")):
        (home / sub).mkdir()
        os.environ[var] = str(home / sub)
    for var in _OUTSIDE_ENV:
        os.environ.pop(var, None)
    if worker == "main":
        _compile_project()


def _compile_project() -> None:
    """Byte-compile the project's own modules once, before any worker starts.

    The suite starts hundreds of daemons and CLIs as fresh processes. Where PYTHONDONTWRITEBYTECODE is set (as
    on this project's CI machine) Python never writes the .pyc files of an editable install, so every one of
    those processes compiled the ~170 modules of symbld and symblctl from source again: 0.44 of the 1.3 CPU
    seconds a daemon start took. compileall writes them whatever the variable says, and Python reads them."""
    import compileall

    root = Path(__file__).resolve().parent.parent
    for package in (root / "symbld", root / "symblctl"):
        compileall.compile_dir(str(package), quiet=1, workers=0, rx=re.compile(r"[/\\]build[/\\]"))


def pytest_unconfigure(config: pytest.Config) -> None:
    home = config.stash.get(_HOME, None)
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)


_HOME = pytest.StashKey[Path]()


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
        # PYTHONFAULTHANDLER: a daemon that will not stop is sent SIGABRT before SIGKILL (stop()), so its log ends
        # with every thread's stack: a hang seen once on a loaded machine can then be read, not guessed.
        self.env = {**os.environ, "SYMBLD_LOG_FORMAT": "json", "PYTHONFAULTHANDLER": "1", **(env or {})}
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
        proc = self.proc
        with self.client(timeout=1.0, retries=0) as c:
            def answers() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"symbld exited with {proc.returncode}:\n{self.log()}")
                try:
                    return bool(c.ping())
                except DaemonError:
                    return False

            try:
                wait_until("symbld answers ping", answers, wait)
            except AssertionError:
                raise RuntimeError(f"symbld did not answer within {wait} s:\n{self.log()}") from None
        return self

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
            self.proc.send_signal(signal.SIGABRT)  # faulthandler writes every thread's stack to the log
            try:
                self.proc.wait(10)
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


def wait_until(what: str, check: Callable[[], Any], timeout: float = 60.0, every: float = 0.1,
               not_yet: tuple[type[Exception], ...] = (FileNotFoundError, ConnectionRefusedError)) -> Any:
    """Poll ``check()`` until it returns something true, and return that; fail naming ``what`` after ``timeout``.

    The one way the tests wait: on a condition, never a fixed sleep (the machines are shared and slow at times).
    A check that raises one of ``not_yet`` (a file not written yet, a port not listening yet) counts as not
    yet true, so a check may read what only the condition brings into being.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except not_yet as e:
            value = e
        if value and not isinstance(value, BaseException):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout} s (last value {value!r})")
        time.sleep(every)


def wait_while(what: str, check: Callable[[], Any], seconds: float, every: float = 0.05) -> None:
    """Assert ``check()`` stays false for ``seconds`` (something that must NOT happen, e.g. no second email).

    The one bounded watch: it fails as soon as the condition turns true, rather than sleeping and looking once.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        assert not value, f"{what}: happened ({value!r})"
        time.sleep(every)


def free_rtp_port() -> int:
    """An even UDP port whose odd neighbour is free too (RTP and RTCP), for a peer told its media port."""
    for _ in range(100):
        port = free_port(socket.SOCK_DGRAM) & ~1
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, socket.socket(socket.AF_INET,
                                                                                  socket.SOCK_DGRAM) as b:
            try:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no free even/odd UDP port pair")


def udp_port_taken(port: int) -> bool:
    """Something is bound to UDP ``port`` on loopback (a SIP peer that is listening)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing listens on now (TCP unless told), for a peer that must be told its port up front."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


@contextlib.contextmanager
def serving_symbl(endpoints: tuple[str, str], config: dict[str, Any]) -> Iterator[Any]:
    """The Symbl-compatible server (and the APIs on its listener) on a free port, in front of a test's daemon."""
    from symbld.gateways.symbl.server import serve_symbl

    control, events = endpoints
    handle = serve_symbl("127.0.0.1", 0, lambda: Client(control, events), config)
    try:
        yield handle
    finally:
        handle.close()
