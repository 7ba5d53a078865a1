"""Prometheus ``GET /metrics`` on the summary-page listener (``[page]``; docs/metrics.md).

Read when scraped (a custom collector): the daemon's own state (connections, flow control, the
journal, the NATS bridge, the other APIs' request counts) is the source of truth, so nothing here
has to be kept in step with it. Two things are counted as they happen, from ``EventBus.listeners``
(the bus thread; cheap, never blocks): events published per type, finals, and the lag of each final.

Counters of ended connections are folded into running totals when a connection leaves the
session registry, so totals never go down while the daemon runs.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from symbld.gateways import api_counters

if TYPE_CHECKING:
    from symbld.core.ports import MetricsHost

# Seconds of audio received past the end of an utterance when its final was published.
LAG_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
# Diarization's load shedding (docs/diarization.md): the connection object's diarizationWork, summed.
_DIARIZATION = {"provisionalFinals": ("symbld_diarization_provisional_finals", "Finals published before their voice "
                                      "prints were ready (after 100 ms), with a provisional speaker label."),
                "lateRevisedMessages": ("symbld_diarization_late_revised_messages", "Messages whose late voice prints "
                                        "attributed them to another speaker (speaker_revision, reason late)."),
                "tailPrints": ("symbld_diarization_tail_prints", "Utterances heard from their last seconds only: the "
                               "embedding thread was behind the finals."),
                "skippedPrints": ("symbld_diarization_skipped_prints", "Utterances given no voice print: the "
                                  "embedding thread was far behind (their provisional labels stay)."),
                "printCpuSeconds": ("symbld_diarization_print_cpu_seconds", "CPU-seconds spent taking voice prints.")}
_PER_CONNECTION = ("audio", "dropped", "spooled", "finals_dropped", *_DIARIZATION)


class DaemonMetrics:
    """The collector: registered in its own registry (not the process-global one)."""

    def __init__(self, daemon: MetricsHost) -> None:
        self.daemon = daemon
        self._lock = threading.Lock()
        self._events: Counter[str] = Counter()
        self._finals = 0
        self._lag_buckets = [0] * (len(LAG_BUCKETS) + 1)
        self._lag_sum = 0.0
        self._seen: dict[str, dict[str, float]] = {}  # connection → its last-read per-connection totals
        self._retired: dict[str, float] = dict.fromkeys(_PER_CONNECTION, 0.0)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # -- counted as it happens (bus thread) ---------------------------------------------------
    def on_bus_event(self, topic: bytes, body: bytes) -> None:
        if not topic.startswith(b"connection."):  # daemon-wide news and the stream's sync markers
            return
        etype = topic.rsplit(b".", 1)[-1].decode("ascii", "replace")
        lag = None
        if etype == "transcript_response" and b'"isFinal":true' in body:  # the bus writes compact JSON
            lag = self._final_lag(body)
        with self._lock:
            self._events[etype] += 1
            if lag is not None:
                self._finals += 1
                if lag >= 0:
                    i = next((n for n, le in enumerate(LAG_BUCKETS) if lag <= le), len(LAG_BUCKETS))
                    self._lag_buckets[i] += 1
                    self._lag_sum += lag

    def _final_lag(self, body: bytes) -> float:
        """Audio the connection had read beyond the utterance's end (for a live source: its seconds of
        speech-end → final latency); -1 when unknown."""
        try:
            event = json.loads(body)
            d = event["data"]["duration"]
            session = self.daemon.service.sessions.find(event["connectionId"])
            if session is None:
                return -1.0
            return max(0.0, session.audio_seconds - float(d["timeOffset"]) - float(d["duration"]))
        except (ValueError, KeyError, TypeError):
            return -1.0

    # -- read when scraped --------------------------------------------------------------------
    def _connection_totals(self, sessions: list[Any]) -> dict[str, float]:
        now: dict[str, dict[str, float]] = {}
        for s in sessions:
            flow = s.as_dict()["flow"]
            work: dict[str, Any] = s.diarization_work() if hasattr(s, "diarization_work") else {}
            now[s.connection_id] = {"audio": float(s.audio_seconds), "dropped": float(flow["audioSecondsDropped"]),
                                    "spooled": float(flow.get("spooledSeconds") or 0.0),
                                    "finals_dropped": float(flow.get("finalsDropped") or 0),
                                    **{k: float(work.get(k) or 0.0) for k in _DIARIZATION}}
        with self._lock:
            for cid in set(self._seen) - set(now):  # left the registry: its last figures stay in the totals
                for k, v in self._seen.pop(cid).items():
                    self._retired[k] += v
            self._seen = now
            return {k: self._retired[k] + sum(c[k] for c in now.values()) for k in _PER_CONNECTION}

    def collect(self) -> Any:
        d = self.daemon
        sessions = d.service.sessions.all()
        live = [s for s in sessions if s.state not in ("stopped", "failed")]
        totals = self._connection_totals(sessions)
        yield _gauge("symbld_uptime_seconds", "Seconds since the daemon started.", time.time() - d.started_at)
        yield _gauge("symbld_connections_live", "Connections not yet stopped or failed.", len(live))
        yield from self._engine_metrics(live)
        yield _counter("symbld_audio_seconds", "Seconds of audio read from sources.", totals["audio"])
        yield _counter("symbld_audio_dropped_seconds", "Seconds of audio lost (only when the disk failed).",
                       totals["dropped"])
        yield _counter("symbld_audio_spooled_seconds", "Seconds of audio spooled to disk while the engine was "
                       "behind.", totals["spooled"])
        yield _counter("symbld_finals_dropped", "Finals lost at shutdown or on a failed disk.",
                       totals["finals_dropped"])
        for key, (name, doc) in _DIARIZATION.items():
            yield _counter(name, doc, totals[key])
        yield from self._event_metrics()
        bus = d.bus
        yield _counter("symbld_events_sent", "Events sent on the PUB socket.", bus.published)
        yield _counter("symbld_control_requests", "Control requests handled.", d.request_count())
        yield _counter("symbld_gap_refills", "History refills clients made after missing events (PUB drops).",
                       bus.refills)
        yield _counter("symbld_gap_refilled_events", "Events clients refilled after a gap.", bus.refilled_events)
        yield from _journal(bus.backlog.state() if bus.backlog is not None else None)
        yield from _nats(d.nats_status())
        requests = CounterMetricFamily("symbld_api_requests", "HTTP API requests by API and outcome (ok or status).",
                                       labels=["api", "outcome"])
        for (api, outcome), n in sorted(api_counters.snapshot().items()):
            requests.add_metric([api, outcome], n)
        yield requests

    def _engine_metrics(self, live: list[Any]) -> Any:
        behind = [float(s.backlog.get("behindSeconds") or 0.0) for s in live]
        yield _gauge("symbld_engine_behind_connections", "Live connections whose engine is behind real time.",
                     sum(1 for s in live if s.behind))
        yield _gauge("symbld_engine_backlog_seconds", "Longest wait of a pending final decode over live connections.",
                     max(behind, default=0.0))
        yield _gauge("symbld_engine_pending_finals", "Utterances waiting for their final decode.",
                     sum(int(s.backlog.get("pendingFinals") or 0) for s in live))
        streams = GaugeMetricFamily("symbld_engine_streams", "Open engine streams.", labels=["engine"])
        for name, engine in self.daemon.engines.items():
            streams.add_metric([name], float(engine.describe().get("streams") or 0))
        yield streams

    def _event_metrics(self) -> Any:
        with self._lock:
            events, finals = dict(self._events), self._finals
            buckets, lag_sum = list(self._lag_buckets), self._lag_sum
        family = CounterMetricFamily("symbld_events", "Connection events published, by type.", labels=["type"])
        for etype, n in sorted(events.items()):
            family.add_metric([etype], n)
        yield family
        yield _counter("symbld_finals", "Final transcripts published.", finals)
        cumulative, running = [], 0
        for le, n in zip((*map(str, LAG_BUCKETS), "+Inf"), buckets, strict=True):
            running += n
            cumulative.append((le, running))
        yield HistogramMetricFamily(
            "symbld_final_lag_seconds", "Audio seconds a connection had read past an utterance's end when its "
            "final was published (for live sources: speech end to final, in seconds).",
            buckets=cumulative, sum_value=lag_sum)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _journal(state: dict[str, Any] | None) -> Any:
    state = state or {}
    yield _gauge("symbld_journal_degraded", "1 while journal writes fail (events kept in memory and retried).",
                 1.0 if state.get("degraded") else 0.0)
    yield _gauge("symbld_journal_pending_events", "Events published but not yet journaled.",
                 float(state.get("pendingEvents") or 0))
    yield _counter("symbld_journal_written_late_events", "Events journaled after a retry.",
                   float(state.get("writtenLate") or 0))


def _nats(status: dict[str, Any]) -> Any:
    yield _gauge("symbld_nats_connected", "1 when the NATS bridge is connected (0 also when not configured).",
                 1.0 if status.get("connected") else 0.0)
    bridge = status.get("bridge") or {}
    for key, doc in (("published", "Events the bridge published to JetStream."),
                     ("fromJournal", "Events the bridge caught up on from the journal."),
                     ("publishFailures", "JetStream publishes that failed (retried)."),
                     ("daemonEventsDropped", "Daemon-wide events the bridge could not keep.")):
        yield _counter(f"symbld_nats_{_snake(key)}", doc, float(bridge.get(key) or 0))
    yield _gauge("symbld_nats_queued_events", "Events waiting in the bridge's queue.", float(bridge.get("queued") or 0))


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def add_routes(app: web.Application, daemon: MetricsHost) -> None:
    """``GET /metrics`` on ``app``, counting bus events from now on."""
    metrics = DaemonMetrics(daemon)
    daemon.bus.listeners.append(metrics.on_bus_event)

    async def scrape(request: web.Request) -> web.Response:
        body = await asyncio.to_thread(generate_latest, metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", scrape)
