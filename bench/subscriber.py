"""A SUB client of a daemon's events socket for the benchmarks: every event of every connection,
with the monotonic time it arrived (what bench_latency and bench_resources measure from)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

import zmq


@dataclass
class Received:
    events: dict[str, list[tuple[float, dict]]] = field(default_factory=dict)  # cid -> [(arrival, body)]
    completed: set[str] = field(default_factory=set)


class Subscriber:
    """A SUB client of the daemon's events socket: every event of every connection, with its arrival time."""

    def __init__(self, endpoint: str) -> None:
        self.ctx = zmq.Context()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"connection.")
        self.sub.setsockopt(zmq.RCVHWM, 0)
        self.sub.connect(endpoint)
        self.got = Received()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.sub.poll(50):
                continue
            _, body = self.sub.recv_multipart()
            now = time.monotonic()
            e = json.loads(body)
            cid = e.get("connectionId")
            self.got.events.setdefault(cid, []).append((now, e))
            if e.get("type") == "conversation_completed":
                self.got.completed.add(cid)

    def close(self) -> None:
        self._stop.set()
        self._t.join(5)
        self.sub.close(linger=0)
        self.ctx.term()


def arrivals(got: Received, event_type: str) -> dict[str, list[tuple[float, dict]]]:
    """Per connection, (arrival, event) of each event of one type (read once the subscriber closed)."""
    return {cid: [(t, e) for t, e in evs if e.get("type") == event_type] for cid, evs in got.events.items()}
