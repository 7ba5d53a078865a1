"""NATS fleet benchmark: events/s and publish → remote-consumer latency through NATS JetStream vs direct PUB.

Each node is its own process with symbld's EventBus (journal on, as in the daemon), its PUB socket and the
NATS bridge (symbld.integrations.nats) on a real ``nats-server -js``. Every event goes both ways at once;
this process consumes both: SUB sockets on every node's PUB (the baseline) and one JetStream consumer on
``symbld.events.>``. With 1 and 3 nodes. Events are final transcripts (fsync'ed, acked by JetStream).
Latency = receipt time − the publish time carried in the event (one machine, one clock).

Usage: python bench/bench_nats.py [--n 2000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

TOKEN = "bench-token"


def producer(endpoint: str, url: str, node: str, n: int, state: str, rate: float) -> None:
    """One node: bus + PUB + bridge; publishes n events after 'go' on stdin, prints its bridge counters."""
    import nats  # noqa: F401  (fail here, not in the loop thread)

    from symblctl.nats_settings import NatsSettings, connect
    from symbld.control.publisher import Publisher
    from symbld.core.bus import EventBus
    from symbld.core.journal import Journal
    from symbld.integrations.nats.bridge import EventBridge, ensure_stream
    from symbld.integrations.nats.cursors import Cursors

    ctx = zmq.Context()
    journal = Journal(Path(state) / "journal")
    bus = EventBus(Publisher(ctx, endpoint, 100_000), journal)
    settings = NatsSettings(servers=(url,), node=node, token=TOKEN)
    bridge = EventBridge(settings, journal, Cursors(Path(state) / "nats"))
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    tasks = []

    async def start() -> None:
        nc = await connect(settings, f"bench {node}")
        js = nc.jetstream()
        await ensure_stream(js, settings)
        tasks.append(loop.create_task(bridge.run(nc, js, lambda: nc.is_connected)))

    asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    bus.listeners.append(bridge.offer)
    print("ready", flush=True)
    sys.stdin.readline()
    cid = f"bench-{node}"
    t0 = time.monotonic()
    for i in range(n):
        if rate > 0:  # paced: latency without a queue in front of it
            time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        bus.publish(cid, "conv", "transcript_response",
                    {"isFinal": True, "payload": {"content": f"event {i}"}, "t": time.time()})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (bridge.idle() and bus.last_seq(cid) == n):
        time.sleep(0.05)
    time.sleep(0.5)  # let PUB flush the last frames before the socket closes
    print(json.dumps(bridge.snapshot()), flush=True)
    bus.close()


def run_case(url: str, nodes: int, n: int, root: Path, rate: float = 0.0) -> dict[str, float]:
    import nats

    ctx = zmq.Context()
    procs, subs = [], []
    for k in range(nodes):
        tag = f"{nodes}-{k}-{int(rate)}"
        endpoint = f"ipc://{root}/events-{tag}"
        p = subprocess.Popen([sys.executable, __file__, "--producer", endpoint, url, f"node{tag}", str(n),
                              str(root / f"state-{tag}"), str(rate)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.RCVHWM, 0)
        s.setsockopt(zmq.SUBSCRIBE, b"connection.")
        s.connect(endpoint)
        procs.append(p)
        subs.append(s)
    total = n * nodes
    pub_lat: list[float] = []
    nats_lat: list[float] = []
    pub_done = nats_done = 0.0

    def read_pub() -> None:
        nonlocal pub_done
        poller = zmq.Poller()
        for s in subs:
            poller.register(s, zmq.POLLIN)
        deadline = time.monotonic() + 180
        while len(pub_lat) < total and time.monotonic() < deadline:
            for sock, _ in poller.poll(500):
                _topic, body = sock.recv_multipart()
                pub_lat.append(time.time() - json.loads(body)["data"]["t"])
        pub_done = time.time()

    async def read_nats(started: threading.Event) -> None:
        nonlocal nats_done
        nc = await nats.connect(url, token=TOKEN)
        js = nc.jetstream()
        sub = await js.subscribe("symbld.events.*.*.transcript_response", ordered_consumer=True,
                                 deliver_policy=nats.js.api.DeliverPolicy.NEW)
        started.set()
        deadline = time.monotonic() + 180
        while len(nats_lat) < total and time.monotonic() < deadline:
            try:
                msg = await sub.next_msg(timeout=5)
            except nats.errors.TimeoutError:
                continue
            nats_lat.append(time.time() - json.loads(msg.data)["data"]["t"])
        nats_done = time.time()
        await nc.close()

    started = threading.Event()
    nats_thread = threading.Thread(target=lambda: asyncio.run(read_nats(started)))
    nats_thread.start()
    started.wait(30)
    time.sleep(0.5)  # SUB subscriptions propagate (the baseline must not lose its first events)
    pub_thread = threading.Thread(target=read_pub)
    pub_thread.start()
    t0 = time.time()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    stats = [json.loads(p.stdout.readline()) for p in procs if p.stdout is not None]
    pub_thread.join()
    nats_thread.join()
    for p in procs:
        p.wait(30)
    for s in subs:
        s.close(0)
    ctx.term()

    def p(lat: list[float], q: float) -> float:
        return statistics.quantiles(lat, n=100)[q - 1] * 1000 if len(lat) > 1 else float("nan")

    return {"nodes": nodes, "rate": rate, "events": total, "pub_received": len(pub_lat), "nats_received": len(nats_lat),
            "pub_rate": len(pub_lat) / max(pub_done - t0, 1e-9), "nats_rate": len(nats_lat) / max(nats_done - t0, 1e-9),
            "pub_p50": p(pub_lat, 50), "pub_p99": p(pub_lat, 99), "nats_p50": p(nats_lat, 50),
            "nats_p99": p(nats_lat, 99), "from_journal": sum(s["fromJournal"] for s in stats),
            "failures": sum(s["publishFailures"] for s in stats)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--producer":
        producer(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6], float(sys.argv[7]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000, help="events per node")
    ap.add_argument("--quick", action="store_true")
    ns = ap.parse_args()
    n = 500 if ns.quick else ns.n
    from natsproc import NatsServer

    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp) / "nats", token=TOKEN).start()
        try:
            rows = [run_case(server.url, k, n, Path(tmp)) for k in (1, 3)]
            paced = [run_case(server.url, k, n // 4, Path(tmp), rate=200.0) for k in (1, 3)]
        finally:
            server.stop()
    print(f"Burst: {n} final transcripts per node at once, each both on PUB and through the NATS bridge "
          "(JetStream, acked); latency here is mostly queueing\n")
    print("| nodes | path | received | events/s | p50 ms | p99 ms | NATS / PUB events/s | NATS / PUB p50 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['nodes']} | PUB (baseline) | {r['pub_received']}/{r['events']} | {r['pub_rate']:.0f} | "
              f"{r['pub_p50']:.1f} | {r['pub_p99']:.1f} | | |")
        print(f"| {r['nodes']} | NATS JetStream | {r['nats_received']}/{r['events']} | {r['nats_rate']:.0f} | "
              f"{r['nats_p50']:.1f} | {r['nats_p99']:.1f} | {r['nats_rate'] / r['pub_rate']:.2f} | "
              f"{r['nats_p50'] / r['pub_p50']:.1f} |")
    print(f"\nPaced: {n // 4} per node at 200 events/s per node (latency of one event, no backlog)\n")
    print("| nodes | PUB p50 ms | PUB p99 ms | NATS p50 ms | NATS p99 ms | NATS / PUB p50 | received PUB / NATS |")
    print("|---|---|---|---|---|---|---|")
    for r in paced:
        print(f"| {r['nodes']} | {r['pub_p50']:.2f} | {r['pub_p99']:.2f} | {r['nats_p50']:.2f} | {r['nats_p99']:.2f} | "
              f"{r['nats_p50'] / r['pub_p50']:.1f} | {r['pub_received']}/{r['nats_received']} of {r['events']} |")
    rows += paced
    print(f"\nbridge: {sum(r['from_journal'] for r in rows)} events caught up from the journal, "
          f"{sum(r['failures'] for r in rows)} publish failures")


if __name__ == "__main__":
    main()
