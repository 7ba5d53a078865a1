"""Where a daemon listens by default, shared by the daemon (its config defaults) and every client."""

from __future__ import annotations

import os
from pathlib import Path


def default_runtime_dir() -> Path:
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "symbld"
    return Path(f"/tmp/symbld-{os.getuid()}")


def runtime_endpoints(runtime_dir: Path | None = None) -> tuple[str, str]:
    """The (control, events) ipc endpoints inside a runtime directory (default: the user's)."""
    rd = runtime_dir or default_runtime_dir()
    return f"ipc://{rd}/control", f"ipc://{rd}/events"


def default_endpoints() -> tuple[str, str]:
    """A client's defaults: $SYMBLD_CONTROL/$SYMBLD_EVENTS, else those of $SYMBLD_RUNTIME_DIR or the user's."""
    rd = os.environ.get("SYMBLD_RUNTIME_DIR")
    control, events = runtime_endpoints(Path(rd) if rd else None)
    return os.environ.get("SYMBLD_CONTROL") or control, os.environ.get("SYMBLD_EVENTS") or events
