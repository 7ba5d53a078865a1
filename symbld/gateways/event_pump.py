"""One connection's daemon events, in order, onto an asyncio loop's queue: the thread every streaming gateway runs.

Each live socket of a compatible API (Deepgram's listen, OpenAI's realtime session, Symbl's streaming legs) is a
daemon connection whose events it must relay in order; this reads them on a thread of its own (a ZeroMQ SUB through
``Client.events``) and hands each to the socket's loop. It ends when the connection completed, when ``stop`` is set,
or when the loop has closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

import structlog

from symblctl.client import Client

log = structlog.get_logger(__name__)


def pump_events(client_factory: Callable[[], Client], connection_id: str, loop: asyncio.AbstractEventLoop,
                queue: asyncio.Queue[dict[str, Any]], stop: threading.Event, *, api: str,
                types: list[str] | None = None) -> None:
    """Runs on its own thread until the connection's ``conversation_completed`` (or ``stop``, or the loop's end)."""
    try:
        client = client_factory()
        stream = client.events(connection_id, types=types, after_seq=0)
    except Exception as exc:  # noqa: BLE001 - any failure to subscribe ends the pump; the socket reports it
        log.warning("event_stream_failed", api=api, connection_id=connection_id, error=str(exc))
        return
    try:
        while not stop.is_set():
            event = stream.get(0.5)
            if event is None:
                if stream.completed:  # drained up to conversation_completed
                    break
                continue
            if loop.is_closed():
                break
            loop.call_soon_threadsafe(queue.put_nowait, event)
            if event.get("type") == "conversation_completed":
                break
    finally:
        with contextlib.suppress(Exception):
            stream.close()
        with contextlib.suppress(Exception):
            client.close()
