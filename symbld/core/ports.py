"""What each component around the daemon may use of it: declared here, implemented by ``symbld.app.Daemon``.

The page server, the metrics, the NATS bridge and control, and start-up recovery are handed the daemon,
but typed as one of these read-only views, so none of them imports ``symbld.app`` (the wiring sits above
everything; ``tests/test_imports.py`` checks the layers) and what each reaches is written down. Command
handlers have their own, narrower port: ``symbld.control.service.Service``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from symbld.core.bus import EventBus
from symbld.core.journal import Journal
from symbld.core.service import ConnectionService
from symbld.core.sessions import SessionRegistry
from symbld.engines.base import Engine


class MetricsHost(Protocol):
    """``web/metrics.py``: counters of the connections, the engines, the bus, control and NATS."""

    @property
    def service(self) -> ConnectionService: ...
    @property
    def engines(self) -> dict[str, Engine]: ...
    @property
    def bus(self) -> EventBus: ...
    @property
    def started_at(self) -> float: ...
    def request_count(self) -> int: ...
    def nats_status(self) -> dict[str, Any]: ...


class PageHost(MetricsHost, Protocol):
    """``web/server.py``: the summary pages (the events of a conversation, live sessions) and /metrics."""

    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def runtime_dir(self) -> Path: ...
    @property
    def sessions(self) -> SessionRegistry: ...


class NatsHost(Protocol):
    """``integrations/nats``: the journal it catches up from, the bus it copies, the service it serves."""

    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def state_dir(self) -> Path: ...
    @property
    def journal(self) -> Journal | None: ...
    @property
    def bus(self) -> EventBus: ...
    @property
    def service(self) -> ConnectionService: ...


class RecoveryHost(Protocol):
    """``core/shutdown.py``'s ``resume_spooled``: new sessions under spooled connections' ids."""

    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def state_dir(self) -> Path: ...
    @property
    def bus(self) -> EventBus: ...
    @property
    def engines(self) -> dict[str, Engine]: ...
    @property
    def service(self) -> ConnectionService: ...
    @property
    def sessions(self) -> SessionRegistry: ...
