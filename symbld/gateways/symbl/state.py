"""What a Symbl connection id is on this server: its conversation, the daemon connections (legs) behind it.

State only, and the few facts about it (a daemon error's HTTP status, letting a leg go); ``live.py`` starts,
relays and ends them, ``streaming.py`` and ``telephony.py`` serve them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from symblctl.client import Client, DaemonUnavailable
from symbld.core import speakers


class StartFailed(Exception):
    """The daemon would not start a connection; carries the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def daemon_status(exc: Exception) -> int:
    """HTTP status for a daemon error; 501 when the daemon cannot do telephony."""
    if isinstance(exc, DaemonUnavailable):
        return 503
    code = str(getattr(exc, "code", ""))
    text = str(getattr(exc, "message", exc)).lower()
    if code in ("device_unavailable", "unknown_command") or "sip" in text or "telephony" in text:
        return 501
    return {"bad_request": 400, "limit_exceeded": 429, "busy": 503, "unknown_connection": 404}.get(code, 500)


def error_message(exc: BaseException) -> str:
    """What a daemon error (or any other) says, for a client's error frame."""
    return str(getattr(exc, "message", exc))


@dataclass
class Leg:
    """One daemon connection of a conversation: one speaker socket's (or a call's).

    Each speaker socket gets its own daemon connection, started with the conversation's
    ``conversationId``: its words carry its own speaker, and the Conversation API finds every leg.
    """

    daemon_id: str
    control: Client  # used only from ``executor``
    executor: concurrent.futures.ThreadPoolExecutor
    attribution: speakers.Attribution
    speaker: dict[str, Any] | None = None  # the start_request's speaker
    socket: web.WebSocketResponse | None = None  # the speaker socket feeding it (None: dropped)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: bool = False
    pump_stop: threading.Event = field(default_factory=threading.Event)
    pump: threading.Thread | None = None
    forwarded: int = 0  # bytes of 16 kHz audio sent: the position speaker events are pinned to

    def same_speaker(self, speaker: dict[str, Any] | None) -> bool:
        def key(s: dict[str, Any] | None) -> tuple[Any, Any]:
            return ((s or {}).get("userId"), (s or {}).get("name"))
        return key(self.speaker) == key(speaker)

    def live(self) -> bool:
        return not self.stopping and not self.stopped.is_set()


@dataclass
class Conversation:
    """One Symbl connection id: its sockets, listeners and the daemon connections behind it."""

    symbl_id: str
    conversation_id: str
    kind: str  # "streaming" | "telephony"
    legs: list[Leg]
    start_args: dict[str, Any] = field(default_factory=dict)  # the first daemon start's, for more legs
    sockets: set[web.WebSocketResponse] = field(default_factory=set)
    subscribers: dict[web.WebSocketResponse, str] = field(default_factory=dict)  # ws → style
    daemon_stopped: asyncio.Event = field(default_factory=asyncio.Event)  # every leg stopped
    orphan_timer: asyncio.TimerHandle | None = None
    stopping: bool = False
    ended: bool = False
    failure: dict[str, Any] | None = None
    no_connection_timeout: float = 60.0
    insight_types: set[str] | None = None  # insight types the clients get; None = all

    def listeners(self) -> list[web.WebSocketResponse]:
        """Every socket that gets the conversation's frames: speaker sockets, then subscribers."""
        return [*self.sockets, *self.subscribers]


@dataclass
class Opened:
    leg: Leg
    conversation_id: str


def release(leg: Leg) -> None:
    """A leg's daemon client closed and its thread let go (once its queued calls are done)."""
    leg.pump_stop.set()
    with contextlib.suppress(RuntimeError):  # already shut down with the server
        leg.executor.submit(leg.control.close)
    leg.executor.shutdown(wait=False)
