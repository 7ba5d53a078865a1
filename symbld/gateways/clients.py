"""The daemon clients of every in-process API, made on one ZeroMQ context.

Each streaming socket of the Symbl server (and each OpenAI/Deepgram socket) holds a control client
and an event stream; a ``symblctl.Client`` of its own context costs that context's I/O and reaper
threads, so a socket cost ~8 threads. On one shared context a socket costs its sockets only. The
context lives as long as the process (the daemon terminates its own, separate one at exit).
"""

from __future__ import annotations

from typing import Any

import zmq

from symblctl.client import Client


class DaemonClients:
    """``client_factory`` for the gateways: a ``symblctl.Client`` per call, all on ``self.context``."""

    def __init__(self, control: str | None, events: str | None) -> None:
        self.control = control
        self.events = events
        self.context: zmq.Context[Any] = zmq.Context()

    def __call__(self) -> Client:
        return Client(self.control, self.events, context=self.context)
