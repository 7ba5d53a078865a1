"""The ``nats`` control command: the bridge's state and counters (what reached the stream, what is behind)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from symbld.control.envelope import Request
from symbld.control.registry import COMMANDS, command

if TYPE_CHECKING:
    from symbld.app import Daemon

if "nats" not in COMMANDS:
    @command("nats")
    def nats_status(d: Daemon, args: dict[str, Any], req: Request) -> dict[str, Any]:
        """NATS bridge state: connection, node, stream, and counters (published, finals, fromJournal, overflowed,
        duplicates, publishFailures, queued, behind).

        → {"v": 1, "id": "1", "cmd": "nats"}
        ← {"v": 1, "id": "1", "ok": true, "result": {"enabled": true, "node": "room-1", "connected": true, ...}}
        """
        service = getattr(d, "nats", None)
        return service.describe() if service is not None else {"enabled": False}
