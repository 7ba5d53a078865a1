"""The PUB socket: where every event leaves the daemon.

Bound by the caller's thread (so a bind error surfaces at start-up) and used after that only by
the event bus thread, which calls ``send`` once an event is journaled. PUB never blocks: a
subscriber whose queue is full loses messages at the high-water mark, never the daemon or the
other subscribers.

Closing lingers up to ``LINGER_MS`` (the context's ``term()`` waits that long at most): the last events
(``connection_stopped``, ``conversation_completed`` of every connection the shutdown ended) are queued
for the subscribers by then, and a linger of 0 would drop them on the floor at exit. Bounded, so a
subscriber that stopped reading cannot hold the daemon's exit past the service's stop timeout.
"""

from __future__ import annotations

import structlog
import zmq

log = structlog.get_logger(__name__)

LINGER_MS = 2000


class Publisher:
    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str, sndhwm: int = 10_000) -> None:
        self.endpoint = endpoint
        self._pub = ctx.socket(zmq.PUB)
        self._pub.setsockopt(zmq.LINGER, LINGER_MS)
        self._pub.setsockopt(zmq.SNDHWM, sndhwm)
        self._pub.bind(endpoint)

    def send(self, topic: bytes, body: bytes) -> bool:
        try:
            self._pub.send_multipart((topic, body), flags=zmq.NOBLOCK, copy=len(body) < 4096)
            return True
        except zmq.Again:  # PUB only raises this with ZMQ_XPUB_NODROP; kept for safety
            return False

    def close(self) -> None:
        self._pub.close(linger=LINGER_MS)
        # From here the context's term() gives the queued events up to LINGER_MS to reach the subscribers.
        log.info("events_socket_closed", linger_ms=LINGER_MS)
