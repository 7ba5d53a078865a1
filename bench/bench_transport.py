"""Transport benchmarks, each beside a raw pyzmq baseline measured in the same run.

1. Control round trip: ``status`` to a real symbld over ipc (bare REQ, and the symblctl Client)
   vs a raw REQ/REP echo server on another ipc endpoint.
2. Event fan-out: symbld's EventBus (journal on, as in the daemon) publish → SUB receipt with
   1 and 32 subscribers vs a raw PUB socket, same payload, same receiver loop.

Prints a markdown table; ratios are symbld / raw. Usage: python bench/bench_transport.py [--n 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from symblctl.client import Client
from symbld.control.publisher import Publisher
from symbld.core.bus import EventBus
from symbld.core.journal import Journal


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def _round_trips(sock: zmq.Socket, body: bytes, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        sock.send(body)
        sock.recv()
        out.append((time.perf_counter() - t) * 1000)
    return out


def bench_control(tmp: Path, n: int) -> list[tuple[str, float, float]]:
    ctx = zmq.Context()
    # Raw baseline: a REP echo server in a thread of a separate process would add nothing; a thread suffices.
    raw_ep = f"ipc://{tmp}/raw-echo"
    stop = threading.Event()

    def echo() -> None:
        rep = ctx.socket(zmq.REP)
        rep.bind(raw_ep)
        while not stop.is_set():
            if rep.poll(100):
                rep.send(rep.recv())
        rep.close(linger=0)

    th = threading.Thread(target=echo, daemon=True)
    th.start()
    time.sleep(0.2)
    req = ctx.socket(zmq.REQ)
    req.connect(raw_ep)
    body = json.dumps({"v": 1, "id": "b", "cmd": "status"}).encode()
    _round_trips(req, body, 200)
    raw = _round_trips(req, body, n)
    req.close(linger=0)
    stop.set()
    th.join()

    env = {**os.environ, "SYMBLD_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "symbld", "--runtime-dir", str(tmp / "run"), "--state-dir",
                             str(tmp / "state"), "--no-preload"], env=env, stderr=subprocess.DEVNULL)
    try:
        c = Client(f"ipc://{tmp}/run/control", f"ipc://{tmp}/run/events", timeout=1, retries=0)
        for _ in range(100):
            try:
                c.ping()
                break
            except Exception:  # noqa: BLE001 - the daemon is not up yet: retry until ping answers
                time.sleep(0.1)
        req = ctx.socket(zmq.REQ)
        req.connect(f"ipc://{tmp}/run/control")
        _round_trips(req, body, 200)
        daemon = _round_trips(req, body, n)
        req.close(linger=0)
        lib = []
        for _ in range(n):
            t = time.perf_counter()
            c.status()
            lib.append((time.perf_counter() - t) * 1000)
        c.close()
    finally:
        proc.terminate()
        proc.wait(30)
    ctx.term()
    return [("raw REQ/REP echo", pct(raw, 50), pct(raw, 99)),
            ("symbld status (bare REQ)", pct(daemon, 50), pct(daemon, 99)),
            ("symbld status (symblctl.Client)", pct(lib, 50), pct(lib, 99))]


def _fanout(publish: object, ctx: zmq.Context, endpoint: str, subs: int, n: int, final: bool) -> list[float]:
    socks = []
    for _ in range(subs):
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.RCVHWM, 0)
        s.setsockopt(zmq.SUBSCRIBE, b"")
        s.connect(endpoint)
        socks.append(s)
    time.sleep(0.5)  # slow joiners
    lat: list[float] = []
    expected = n * subs
    done = threading.Event()

    def receive() -> None:
        poller = zmq.Poller()
        for s in socks:
            poller.register(s, zmq.POLLIN)
        got = 0
        while got < expected:
            ready = poller.poll(5000)
            if not ready:
                break
            for s, _ in ready:
                while True:
                    try:
                        _t, body = s.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    sent = json.loads(body)["data"]["t"]
                    lat.append((time.perf_counter() - sent) * 1000)
                    got += 1
        done.set()

    th = threading.Thread(target=receive, daemon=True)
    th.start()
    for _ in range(n):
        publish({"t": time.perf_counter(), "isFinal": final, "pad": "x" * 300})  # type: ignore[operator]
        time.sleep(0.0005)  # ~2000 events/s: a busy meeting is far fewer
    done.wait(30)
    for s in socks:
        s.close(linger=0)
    return lat


def bench_fanout(tmp: Path, n: int) -> list[tuple[str, float, float]]:
    rows = []
    for subs in (1, 32):
        ctx = zmq.Context()
        raw_ep = f"ipc://{tmp}/raw-pub-{subs}"
        pub = ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.SNDHWM, 0)
        pub.bind(raw_ep)
        lock = threading.Lock()
        seq = [0]

        def raw_publish(data: dict, pub: zmq.Socket = pub, lock: threading.Lock = lock, seq: list = seq) -> None:
            with lock:
                seq[0] += 1
                body = {"v": 1, "seq": seq[0], "connectionId": "c", "conversationId": "1",
                        "type": "transcript_response", "time": "", "data": data}
                pub.send_multipart([b"connection.c.transcript_response", json.dumps(body).encode()])

        raw = _fanout(raw_publish, ctx, raw_ep, subs, n, True)
        pub.close(linger=0)
        rows.append((f"raw PUB/SUB, {subs} sub", pct(raw, 50), pct(raw, 99)))
        for final, what in ((False, "interim: journaled, no fsync"), (True, "final: journaled + fsync first")):
            bus_ep = f"ipc://{tmp}/bus-{subs}-{final}"
            bus = EventBus(Publisher(ctx, bus_ep), Journal(tmp / f"journal-{subs}-{final}"))
            ours = _fanout(lambda data, bus=bus: bus.publish("c", "1", "transcript_response", data), ctx, bus_ep,
                           subs, n, final)
            bus.close()
            rows.append((f"symbld EventBus, {subs} sub, {what}", pct(ours, 50), pct(ours, 99)))
        ctx.term()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        control = bench_control(tmp, a.n)
        fanout = bench_fanout(tmp, a.n // 2)
    print("## Transport (ipc, this machine)\n")
    print("| what | p50 ms | p99 ms | p50 ratio to raw |")
    print("|---|---|---|---|")
    base = control[0][1]
    for name, p50, p99 in control:
        print(f"| {name} | {p50:.3f} | {p99:.3f} | {p50 / base:.2f}× |")
    for i in range(0, len(fanout), 3):
        raw = fanout[i]
        print(f"| {raw[0]} | {raw[1]:.3f} | {raw[2]:.3f} | 1.00× |")
        for ours in fanout[i + 1:i + 3]:
            print(f"| {ours[0]} | {ours[1]:.3f} | {ours[2]:.3f} | {ours[1] / raw[1]:.2f}× |")
    print(f"\n(n = {a.n} round trips, {a.n // 2} events per fan-out run; median of latencies, ratios of p50)")
    print(f"statistics: control p50 spread {statistics.pstdev([r[1] for r in control]):.3f} ms")


if __name__ == "__main__":
    main()
