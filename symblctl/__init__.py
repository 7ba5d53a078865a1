"""symblctl: client library and command line for the symbld daemon.

``import symblctl as symbl`` gives the Symbl Python SDK's surface (``Streaming``,
``Telephony``, ``Connection``, ``stop``) served by the local daemon; ``Client`` is the
protocol-level client underneath (explicit endpoints and timeouts). See docs/client.md.

The names are imported on first use (PEP 562), so the CLI, which needs only the client, does not pay
for the SDK's imports (structlog, threads) on every ``symblctl status``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"  # the client distribution's version (symblctl/pyproject.toml)

_EXPORTS = {
    "Client": "symblctl.client", "DaemonError": "symblctl.client", "DaemonUnavailable": "symblctl.client",
    "Connection": "symblctl.sdk", "Streaming": "symblctl.sdk", "StreamingApi": "symblctl.sdk",
    "Telephony": "symblctl.sdk", "TelephonyApi": "symblctl.sdk", "stop": "symblctl.sdk",
}
__all__ = ["Client", "Connection", "DaemonError", "DaemonUnavailable", "Streaming", "StreamingApi", "Telephony",
           "TelephonyApi", "stop"]

if TYPE_CHECKING:
    from symblctl.client import Client, DaemonError, DaemonUnavailable
    from symblctl.sdk import Connection, Streaming, StreamingApi, Telephony, TelephonyApi, stop


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'symblctl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
