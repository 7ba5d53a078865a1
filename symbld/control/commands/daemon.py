"""The daemon as a whole: ping, describe, status, shutdown, the NATS bridge's state."""

from __future__ import annotations

import os
import time
from typing import Any

from symblctl import events, protocol
from symbld import __version__, diarization
from symbld.control.describe import command_catalog, config_catalog, event_catalog
from symbld.control.envelope import PROTOCOL_VERSION, Request
from symbld.control.registry import handles
from symbld.control.service import Service
from symbld.errors import ERROR_CODES

INSIGHT_TYPES = ("question", "action_item", "follow_up")


@handles(protocol.Ping)
def ping(svc: Service, args: protocol.Ping, req: Request) -> protocol.Pong:
    """→ {"v": 1, "id": "1", "cmd": "ping"}
    ← {"v": 1, "id": "1", "ok": true, "result": {"pong": true, "version": "0.1.0", "pid": 4242, "uptime": 12.5}}
    """
    return protocol.Pong(pong=True, version=__version__, pid=os.getpid(),
                         uptime=round(time.time() - svc.host.started_at, 3))


@handles(protocol.Describe)
def describe(svc: Service, args: protocol.Describe, req: Request) -> dict[str, Any]:
    """→ {"v": 1, "id": "2", "cmd": "describe"}
    ← {"v": 1, "id": "2", "ok": true, "result": {"version": "0.1.0", "protocol": 1, "engines": {...},
       "defaultEngine": "local", "eventTypes": [...], "endpoints": {"control": "...", "events": "..."},
       "audioSources": {...}, "commands": [...], "schemas": {...}, "errorCodes": {...}, "limits": {...},
       "config": {"": {"$ref": "#/schemas/TopLevelConfig"}, "smtp": {"$ref": "#/schemas/SmtpTable"}, ...}}}
    """
    commands, schemas = command_catalog()
    event_types, event_schemas = event_catalog()
    config_tables, config_schemas = config_catalog()
    return {
        "version": __version__,
        "protocol": PROTOCOL_VERSION,
        **svc.about(),
        "eventTypes": list(events.EVENTS),
        "events": event_types,
        "insightTypes": list(INSIGHT_TYPES),
        "diarization": diarization.describe(),
        "commands": commands,
        "config": config_tables,
        "schemas": {**config_schemas, **event_schemas, **schemas},
        "errorCodes": ERROR_CODES,
    }


@handles(protocol.StatusRequest)
def status(svc: Service, args: protocol.StatusRequest, req: Request) -> dict[str, Any]:
    """→ {"v": 1, "id": "5", "cmd": "status"}
    ← {"v": 1, "id": "5", "ok": true, "result": {"connections": [{...}], "live": 1, "uptime": 60.1,
       "published": 1234, "requests": 56, "cut": [...], "models": {"local": "tiny.en"}, "drops": {...},
       "journal": null}}
    """
    conns = sorted((s.as_dict() for s in svc.sessions.all()),
                   key=lambda c: (c["state"] in ("stopped", "failed"), c["createdAt"]))
    return {
        "connections": conns,
        "live": sum(1 for c in conns if c["state"] not in ("stopped", "failed")),
        "uptime": round(time.time() - svc.host.started_at, 3),
        **svc.counters(),
    }


@handles(protocol.Shutdown)
def shutdown(svc: Service, args: protocol.Shutdown, req: Request) -> protocol.Stopping:
    """→ {"v": 1, "id": "10", "cmd": "shutdown"}
    ← {"v": 1, "id": "10", "ok": true, "result": {"stopping": true, "live": 2}}
    """
    live = len(svc.sessions.live())
    svc.host.request_shutdown("shutdown command")
    return protocol.Stopping(stopping=True, live=live)


@handles(protocol.Nats)
def nats(svc: Service, args: protocol.Nats, req: Request) -> dict[str, Any]:
    """→ {"v": 1, "id": "1", "cmd": "nats"}
    ← {"v": 1, "id": "1", "ok": true, "result": {"enabled": true, "node": "room-1", "connected": true, ...}}
    """
    return svc.host.nats_status()
