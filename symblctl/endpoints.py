"""Where a daemon listens by default: the ipc sockets in its runtime directory (the daemon's config uses these too)."""

from __future__ import annotations

import os
from pathlib import Path


def default_runtime_dir() -> Path:
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "symbld"
    return Path(f"/tmp/symbld-{os.getuid()}")


def default_endpoints(runtime_dir: Path | None = None) -> tuple[str, str]:
    rd = runtime_dir or default_runtime_dir()
    return f"ipc://{rd}/control", f"ipc://{rd}/events"
