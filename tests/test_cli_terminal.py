"""symblctl on a terminal (a pseudo-terminal with the CLI as its foreground process): the progress
line of a file, and Ctrl-C typed at the keyboard."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import sys
from pathlib import Path

import pytest
from cli_helpers import cli_env, symblctl
from conftest import DaemonProc, wait_until
from speechgen import SENTENCES, synth


class Terminal:
    """``symblctl ARGS`` as the foreground process of a new pseudo-terminal."""

    def __init__(self, daemon: DaemonProc, *args: str, env: dict[str, str] | None = None) -> None:
        argv = [sys.executable, "-m", "symblctl", *args, "--control", daemon.control, "--events", daemon.events]
        environ = cli_env({"TERM": "xterm", "COLUMNS": "120", **(env or {})})
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the pty is its controlling terminal, so ^C is its SIGINT
            os.execve(sys.executable, argv, environ)
        self.out = bytearray()
        self.status: int | None = None

    def read_until(self, pattern: str, timeout: float = 60) -> str:
        def seen() -> bool:
            if re.search(pattern, self.text()):
                return True
            if not self._read(0.2):
                assert self.returncode() is None, f"exited before {pattern!r}:\n{self.text()}"
            return False

        try:
            wait_until(f"{pattern!r} on the terminal", seen, timeout, every=0)
        except AssertionError as e:
            raise AssertionError(f"{e}:\n{self.text()}") from None
        return self.text()

    def _read(self, timeout: float) -> bool:
        if not select.select([self.fd], [], [], timeout)[0]:
            return False
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        self.out.extend(chunk)
        return bool(chunk)

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def returncode(self) -> int | None:
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status

    def wait(self, timeout: float = 60) -> int:
        def exited() -> bool:
            if self.returncode() is not None:
                return True
            self._read(0.1)  # keep draining the terminal meanwhile
            return False

        try:
            wait_until("the program exits", exited, timeout, every=0)
        except AssertionError as e:
            raise AssertionError(f"{e}:\n{self.text()}") from None
        while self._read(0.1):
            pass
        return self.status  # type: ignore[return-value]

    def text(self) -> str:
        return self.out.decode(errors="replace")

    def close(self) -> None:
        if self.returncode() is None:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


@pytest.fixture
def terminal(daemon: DaemonProc):
    made: list[Terminal] = []

    def open_(*args: str, **kw) -> Terminal:
        t = Terminal(daemon, *args, **kw)
        made.append(t)
        return t

    yield open_
    for t in made:
        t.close()


def test_a_followed_file_shows_position_duration_and_speed(terminal, tmp_path: Path) -> None:
    wav = synth(SENTENCES[0] + " " + SENTENCES[1])
    t = terminal("start", str(wav), "--follow")  # real time: several progress updates
    t.read_until(r"\[#+-*\] 0:0\d / 0:0\d  \d+\.\dx real time")
    assert t.wait(90) == 0, t.text()
    assert re.search(r"completed; conversationId \d+ connectionId [0-9a-f]{32}", t.text())


def test_no_progress_line_when_output_is_not_a_terminal(daemon: DaemonProc) -> None:
    r = symblctl(daemon, "start", str(synth(SENTENCES[2])), "--follow", "--fast")
    assert r.returncode == 0 and "real time" not in r.stdout and "[#" not in r.stdout


def test_ctrl_c_stops_the_connection_and_exits_130(terminal, daemon: DaemonProc) -> None:
    t = terminal("start", "--push", "--follow")
    t.read_until(r"\(Ctrl-C stops\)")
    cid = re.search(r"connectionId ([0-9a-f]{32})", t.text()).group(1)
    t.type(b"\x03")  # the user presses Ctrl-C
    t.read_until(r"stopping the connection")
    assert t.wait(60) == 130, t.text()
    assert re.search(rf"stopped; conversationId \d+ connectionId {cid}", t.text()), t.text()
    got = json.loads(symblctl(daemon, "get", cid, "--json").stdout)
    assert got["state"] == "stopped"
