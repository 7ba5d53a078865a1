"""Running the real symblctl process (``python -m symblctl``) the way a user or a script does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import DaemonProc

ROOT = Path(__file__).resolve().parent.parent


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYMBLD_", "_ARGCOMPLETE", "NO_COLOR"))}
    pythonpath = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**env, "PYTHONPATH": pythonpath, **(extra or {})}


def symblctl(daemon: DaemonProc | None, *args: str, cwd: Path | None = None, input: bytes | None = None,
             timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``symblctl ARGS`` with the daemon's endpoints given after the subcommand (as a user may)."""
    where = ["--control", daemon.control, "--events", daemon.events] if daemon is not None else []
    if where and "--timeout" not in args:  # the default 5 s is a user's patience, not this machine's: a test
        where += ["--timeout", "30"]        # daemon on a loaded machine once took longer to describe itself
    cmd = [sys.executable, "-m", "symblctl", *args]
    if where and args and args[0] == "subscribe":  # subscribe's own --events is the type filter
        cmd = [sys.executable, "-m", "symblctl", *where, *args]
    elif where:
        cmd += where
    r = subprocess.run(cmd, cwd=cwd, input=input, capture_output=True, timeout=timeout, env=cli_env(env))
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(errors="replace"),
                                       r.stderr.decode(errors="replace"))
