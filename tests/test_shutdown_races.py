"""SIGTERM while commands run: the daemon exits 0 and its log holds no traceback, whatever was in flight.

Slow commands (start, stop) run on ``cmd-*`` threads whose replies wake the control loop through a pipe;
shutdown closes that pipe. Clients keep sending start/stop/status from several threads while the signal
arrives after 1, 8 and 30 answered commands, so the signal lands at different points of their work.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest
from conftest import DaemonProc, wait_until

from symblctl.client import Client, DaemonError


def _hammer(daemon: DaemonProc, answered: list[int], stop: threading.Event) -> None:
    with Client(daemon.control, daemon.events, timeout=2.0, retries=0) as c:
        while not stop.is_set():
            try:
                conn = c.start(source={"type": "push"})
                c.status()
                c.stop(conn["connectionId"])
            except DaemonError:
                return  # the daemon is going or gone: what this test wants to see it survive
            answered.append(1)


@pytest.mark.parametrize("after", [1, 8, 30])
def test_sigterm_while_commands_run_leaves_no_traceback(tmp_path: Path, after: int) -> None:
    daemon = DaemonProc(tmp_path / "d", args=["--no-preload"]).start()
    with daemon.client() as c:  # the first start loads the engine (1.8 s idle): done before the 2 s hammers
        c.stop(c.start(source={"type": "push"})["connectionId"])
    answered: list[int] = []
    stop = threading.Event()
    workers = [threading.Thread(target=_hammer, args=(daemon, answered, stop)) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        wait_until(f"{after} start/status/stop rounds answered", lambda: len(answered) >= after, timeout=120)
        code = daemon.stop(signal.SIGTERM)
    finally:
        stop.set()
        for w in workers:
            w.join(30)
        daemon.kill()
    log = daemon.log_path.read_text(errors="replace")
    assert code == 0, log[-4000:]
    assert "Traceback" not in log, log[-8000:]
