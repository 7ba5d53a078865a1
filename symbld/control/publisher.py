"""The PUB socket: where every event leaves the daemon.

Bound by the caller's thread (so a bind error surfaces at start-up) and used after that only by
the event bus thread, which calls ``send`` once an event is journaled. PUB never blocks: a
subscriber whose queue is full loses messages at the high-water mark, never the daemon or the
other subscribers.
"""

from __future__ import annotations

import zmq


class Publisher:
    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str, sndhwm: int = 10_000) -> None:
        self.endpoint = endpoint
        self._pub = ctx.socket(zmq.PUB)
        self._pub.setsockopt(zmq.LINGER, 0)
        self._pub.setsockopt(zmq.SNDHWM, sndhwm)
        self._pub.bind(endpoint)

    def send(self, topic: bytes, body: bytes) -> bool:
        try:
            self._pub.send_multipart((topic, body), flags=zmq.NOBLOCK, copy=len(body) < 4096)
            return True
        except zmq.Again:  # PUB only raises this with ZMQ_XPUB_NODROP; kept for safety
            return False

    def close(self) -> None:
        self._pub.close(linger=0)
