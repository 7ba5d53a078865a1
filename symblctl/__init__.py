"""symblctl: client library and command line for the symbld daemon.

``import symblctl as symbl`` gives the Symbl Python SDK's surface (``Streaming``,
``Telephony``, ``Connection``, ``stop``) served by the local daemon; ``Client`` is the
protocol-level client underneath (explicit endpoints and timeouts). See docs/client.md.
"""

__version__ = "0.1.0"  # the client distribution's version (symblctl/pyproject.toml)

from symblctl.client import Client, DaemonError, DaemonUnavailable
from symblctl.sdk import Connection, Streaming, StreamingApi, Telephony, TelephonyApi, stop

__all__ = ["Client", "Connection", "DaemonError", "DaemonUnavailable", "Streaming", "StreamingApi", "Telephony",
           "TelephonyApi", "stop"]
