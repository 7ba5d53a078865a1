"""Ids, times and topics as Symbl and the event stream write them."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

EVENT_VERSION = 1  # the "v" of every published event (the control protocol's version)


def iso_now(ts: float | None = None) -> str:
    """ISO-8601 UTC with milliseconds and a Z, as Symbl writes times."""
    t = datetime.fromtimestamp(time.time() if ts is None else ts, tz=UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def new_connection_id() -> str:
    return uuid.uuid4().hex


def new_conversation_id() -> str:
    """A 16-digit decimal string, the form Symbl's conversationIds take."""
    return str(uuid.uuid4().int % 9_000_000_000_000_000 + 1_000_000_000_000_000)


def connection_topic(connection_id: str, event_type: str = "") -> bytes:
    return f"connection.{connection_id}.{event_type}".encode()


def daemon_topic(event_type: str) -> bytes:
    return f"daemon.{event_type}".encode()
