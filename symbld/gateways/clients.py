"""The daemon clients of every in-process API.

Each streaming socket of the Symbl server (and each OpenAI/Deepgram socket) holds a control client
and an event stream. They all live on the process's one ZeroMQ context (``symblctl.Client`` uses
``zmq.Context.instance()``): a context per client cost its I/O and reaper threads, ~8 threads a socket.
The daemon's own sockets are on a separate context, which it terminates at exit.
"""

from __future__ import annotations

from symblctl.client import Client


class DaemonClients:
    """``client_factory`` for the gateways: a ``symblctl.Client`` of the daemon's endpoints per call."""

    def __init__(self, control: str | None, events: str | None) -> None:
        self.control = control
        self.events = events

    def __call__(self) -> Client:
        return Client(self.control, self.events)
