"""Answers kept for retries, and the one way a command's run becomes its reply frame.

A client that timed out resends the same request id (Lazy Pirate over ZeroMQ, a new request over
NATS) and gets the first answer instead of running the command again: ``start``, ``stop`` and
``send_audio`` are not idempotent. Each transport keeps its own cache, keyed by who asked (the
ROUTER's routing id, the NATS client's name) and the request id.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import structlog

from symbld.control.envelope import Request, encode_reply
from symbld.errors import ControlError

log = structlog.get_logger(__name__)

CACHE_SIZE = 512
CACHE_BYTES = 8 << 20  # replies (and their ids) kept for retries, in bytes: a bound on memory, not a count
CACHE_SECONDS = 120.0


def reply_of(req: Request, run: Callable[[], dict[str, Any]]) -> bytes:
    """The reply frame of running a request: its result, its ControlError, or an ``internal`` error
    (logged with its traceback) for anything else."""
    try:
        return encode_reply(req.id, result=run())
    except ControlError as e:
        return encode_reply(req.id, error=e)
    except Exception as e:
        log.exception("command_failed", cmd=req.cmd)
        return encode_reply(req.id, error=ControlError("internal", f"internal error in {req.cmd}: "
                                                       f"{type(e).__name__}: {e}"))


class ReplyCache:
    """Recent replies by (peer, request id), bounded by count, bytes and age. Thread-safe."""

    def __init__(self, size: int = CACHE_SIZE, max_bytes: int = CACHE_BYTES, seconds: float = CACHE_SECONDS) -> None:
        self.size, self.max_bytes, self.seconds = size, max_bytes, seconds
        self._replies: OrderedDict[tuple[Hashable, str], tuple[float, bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[Hashable, str]) -> bytes | None:
        with self._lock:
            kept = self._replies.get(key)
        if kept is None or time.monotonic() - kept[0] >= self.seconds:
            return None
        return kept[1]

    def remember(self, key: tuple[Hashable, str], reply: bytes) -> None:
        with self._lock:
            old = self._replies.pop(key, None)
            if old is not None:
                self._bytes -= _cost(key, old[1])
            self._replies[key] = (time.monotonic(), reply)
            self._bytes += _cost(key, reply)
            while self._replies and (len(self._replies) > self.size or self._bytes > self.max_bytes):
                k, (_, r) = self._replies.popitem(last=False)
                self._bytes -= _cost(k, r)

    def __len__(self) -> int:
        return len(self._replies)


def _cost(key: tuple[Hashable, str], reply: bytes) -> int:
    peer = key[0]
    return len(reply) + len(key[1]) + (len(peer) if isinstance(peer, bytes | str) else 0)
