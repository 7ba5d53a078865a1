"""symbld started in a terminal (a pseudo-terminal here): quiet by default, colours only when wanted."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_until

from symblctl.client import Client, DaemonError

ROOT = Path(__file__).resolve().parent.parent
ESC = "\x1b["


def run_in_terminal(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Start symbld with stderr on a pty, wait until it answers, stop it; return what the terminal showed."""
    cfg = tmp_path / "symbld.toml"
    cfg.write_text('[engine.local]\nmodel_dir = "/nowhere"\n')  # a compatibility key: one warning line
    master, slave = pty.openpty()
    run = tmp_path / "run"
    environ = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "SYMBLD_LOG_FORMAT", "TERM")}
    environ.update({"PYTHONPATH": str(ROOT), "TERM": "xterm", **(env or {})})
    proc = subprocess.Popen([sys.executable, "-m", "symbld", "--no-preload", "--config", str(cfg),
                             "--runtime-dir", str(run), "--state-dir", str(tmp_path / "state"), *args],
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=environ)
    os.close(slave)
    out = bytearray()

    def drain(timeout: float) -> None:
        while select.select([master], [], [], timeout)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            out.extend(chunk)
            timeout = 0.2

    try:
        with Client(f"ipc://{run}/control", f"ipc://{run}/events", timeout=1.0, retries=0) as c:
            def answers() -> bool:
                assert proc.poll() is None, out.decode(errors="replace")
                try:
                    return bool(c.ping())
                except DaemonError:
                    drain(0.1)
                    return False

            wait_until("the daemon answers ping", answers, 60, every=0)
        proc.terminate()
        proc.wait(30)
        drain(0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return out.decode(errors="replace")


def test_terminal_shows_warnings_only_and_in_colour(tmp_path: Path) -> None:
    shown = run_in_terminal(tmp_path)
    assert "config_warning" in shown and "model_dir is kept for compatibility" in shown
    assert "symbld_ready" not in shown  # info lines would flood the shell the daemon shares
    assert ESC in shown


@pytest.mark.parametrize("env", [{"NO_COLOR": "1"}, {"TERM": "dumb"}])
def test_no_color_and_dumb_terminals_get_no_escape_codes(tmp_path: Path, env: dict[str, str]) -> None:
    shown = run_in_terminal(tmp_path, env=env)
    assert "config_warning" in shown
    assert ESC not in shown


def test_asked_for_info_on_a_terminal(tmp_path: Path) -> None:
    shown = run_in_terminal(tmp_path, "--log-level", "info", env={"NO_COLOR": "1"})
    assert "symbld_ready" in shown and "config_warning" in shown
