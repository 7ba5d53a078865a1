"""Daemon resources: idle cost, start/stop cycles, a long connection, concurrent real-time connections.

    python bench/bench_resources.py            # full: 1,000 cycles, a 30-minute connection, 1-16 connections
    python bench/bench_resources.py --quick    # 200 cycles, 60 s connection, 30 s per concurrency level

Everything is measured on a real symbld subprocess (psutil on its pid), fed through the
symblctl client like any user:

1. idle: start → first reply, then CPU (% of one core) and RSS of the idle daemon;
2. start/stop cycles: push connections started, fed 0.3 s (speech every 20th), stopped;
   RSS / threads / fds along the way;
3. one continuous connection fed speech in real time: RSS / threads / fds along the way;
4. N concurrent push connections, each fed looping speech in real time: speech end → final
   latency (p50 / p95 / max), whether it grows (last quarter vs first), the daemon's CPU, and
   the drain time after the audio ends. A level "keeps up" when p95 ≤ 3 s and the last
   quarter's median is within 2 s of the first's. Past that, the offline engine first skips
   interims, then queues finals (its feed never blocks, no audio is refused), so finals come
   later and later but all come; the daemon says so with ``engine_backlog`` events (counted
   here) and a ``backlog`` field per connection in ``status``.

Prints markdown tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import DaemonProc  # noqa: E402 - the tests' real-daemon harness
from speechgen import SENTENCES, pcm16, silence, synth, white_noise  # noqa: E402
from subscriber import Subscriber, arrivals  # noqa: E402 - bench/, this script's own directory

CHUNK = 3200  # 100 ms of 16 kHz s16le


def mb(p: psutil.Process) -> float:
    return p.memory_info().rss / 2**20


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q / 100 * len(xs)))] if xs else float("nan")


def speech_loop(offset: int) -> bytes:
    """A few sentences with pauses, rotated per connection so they do not all speak alike."""
    picks = [SENTENCES[(offset + i) % len(SENTENCES)] for i in range(5)]
    return b"".join(pcm16(synth(s)) + silence(1.2) for s in picks)


# -- 1. idle -----------------------------------------------------------------------------------------
def bench_idle(root: Path, seconds: float) -> tuple[DaemonProc, list[str]]:
    t0 = time.monotonic()
    d = DaemonProc(root / "d").start()
    ready = time.monotonic() - t0
    p = psutil.Process(d.proc.pid)  # type: ignore[union-attr]
    time.sleep(2.0)
    c0 = p.cpu_times()
    time.sleep(seconds)
    c1 = p.cpu_times()
    cpu = (c1.user + c1.system - c0.user - c0.system) / seconds * 100
    rows = ["| idle daemon | value |", "|---|---:|",
            f"| start → first reply (model preloaded) | {ready:.2f} s |",
            f"| CPU while idle ({seconds:.0f} s) | {cpu:.2f} % of one core |",
            f"| RSS idle | {mb(p):.0f} MB |",
            f"| threads / fds idle | {p.num_threads()} / {p.num_fds()} |"]
    return d, rows


# -- 2. cycles ---------------------------------------------------------------------------------------
def bench_cycles(d: DaemonProc, cycles: int) -> list[str]:
    p = psutil.Process(d.proc.pid)  # type: ignore[union-attr]
    speech, noise = pcm16(synth(SENTENCES[0])), white_noise(0.3, rms=0.01)
    rows = ["| start/stop cycles | RSS MB | threads | fds | cycles/s |", "|---:|---:|---:|---:|---:|"]
    step = max(1, cycles // 5)
    with d.client() as c:
        t0 = time.monotonic()
        last_t, last_i = t0, 0
        for i in range(cycles + 1):
            if i % step == 0:
                now = time.monotonic()
                rate = (i - last_i) / (now - last_t) if i else float("nan")
                rows.append(f"| {i} | {mb(p):.0f} | {p.num_threads()} | {p.num_fds()} | {rate:.1f} |")
                last_t, last_i = now, i
            if i == cycles:
                break
            cid = c.start(source={"type": "push"})["connectionId"]
            c.send_audio(cid, speech if i % 20 == 0 else noise)
            c.stop(cid)
    return rows


# -- 3. one long connection ------------------------------------------------------------------------
def bench_soak(d: DaemonProc, seconds: float) -> list[str]:
    p = psutil.Process(d.proc.pid)  # type: ignore[union-attr]
    loop = speech_loop(0)
    rows = ["| continuous connection | RSS MB | threads | fds | finals so far |", "|---:|---:|---:|---:|---:|"]
    marks = {round(seconds * f) for f in (0, 0.25, 0.5, 0.75, 1.0)}
    with d.client() as c:
        cid = c.start(source={"type": "push"})["connectionId"]
        t0 = time.monotonic()
        sent = 0
        while True:
            elapsed_audio = sent / 32000
            if round(elapsed_audio) in marks and sent % 32000 == 0:
                marks.discard(round(elapsed_audio))
                finals = c.get(cid)["events"].get("message_response", 0)
                rows.append(f"| {elapsed_audio:.0f} s | {mb(p):.0f} | {p.num_threads()} | {p.num_fds()} | {finals} |")
            if elapsed_audio >= seconds:
                break
            off = sent % len(loop)
            c.send_audio(cid, loop[off:off + CHUNK])
            sent += CHUNK
            delay = t0 + sent / 32000 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        c.stop(cid)
    return rows


# -- 4. concurrent real-time connections -------------------------------------------------------------
def _final_ends(finals: list[tuple[float, dict]]) -> list[tuple[float, float]]:
    """(arrival, where its audio ends in the connection's audio) of each message of message_response events."""
    out = []
    for recv, e in finals:
        for m in e["data"].get("messages", []):
            dur = m.get("duration") or {}
            out.append((recv, float(dur.get("timeOffset", 0)) + float(dur.get("duration", 0))))
    return out


def run_level(d: DaemonProc, n: int, seconds: float) -> dict[str, float | int | str]:
    p = psutil.Process(d.proc.pid)  # type: ignore[union-attr]
    sub = Subscriber(d.events)
    time.sleep(0.3)
    starts: dict[str, float] = {}
    refused = [0]
    end_sent: dict[str, float] = {}

    def feed(idx: int) -> None:
        loop = speech_loop(idx * 3)
        with d.client() as c:
            cid = c.start(source={"type": "push"})["connectionId"]
            t0 = time.monotonic()
            starts[cid] = t0
            sent = 0
            while sent / 32000 < seconds:
                off = sent % len(loop)
                try:
                    c.send_audio(cid, loop[off:off + CHUNK])
                    sent += CHUNK
                except Exception:  # noqa: BLE001 - a refused chunk is counted, whatever refused it
                    refused[0] += 1
                delay = t0 + sent / 32000 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            c.end_audio(cid)
            end_sent[cid] = time.monotonic()

    c0 = p.cpu_times()
    w0 = time.monotonic()
    threads = [threading.Thread(target=feed, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - w0
    c1 = p.cpu_times()
    deadline = time.monotonic() + max(120.0, seconds * 4)
    while len(sub.got.completed) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    sub.close()
    completed = {cid: evs[-1][0] for cid, evs in arrivals(sub.got, "conversation_completed").items() if evs}
    lat: list[float] = []
    first_q: list[float] = []
    last_q: list[float] = []
    for cid, finals in arrivals(sub.got, "message_response").items():
        t0 = starts.get(cid)
        if t0 is None:
            continue
        for recv, end in _final_ends(finals):
            x = recv - (t0 + end)
            lat.append(x)
            if end < seconds / 4:
                first_q.append(x)
            elif end > seconds * 3 / 4:
                last_q.append(x)
    drain = [completed[c] - end_sent[c] for c in end_sent if c in completed]
    growth = (statistics.median(last_q) - statistics.median(first_q)) if first_q and last_q else float("nan")
    keeps_up = bool(lat) and pct(lat, 95) <= 3.0 and growth <= 2.0 and len(completed) == n
    return {"n": n, "finals": len(lat), "p50": statistics.median(lat) if lat else float("nan"),
            "p95": pct(lat, 95), "max": max(lat) if lat else float("nan"), "growth": growth,
            "drain": max(drain) if drain else float("nan"),
            "cpu": (c1.user + c1.system - c0.user - c0.system) / wall * 100,
            "refused": refused[0], "backlog_events": sum(map(len, arrivals(sub.got, "engine_backlog").values())),
            "keeps_up": "yes" if keeps_up else "**no**"}


def bench_concurrency(d: DaemonProc, levels: list[int], seconds: float) -> list[str]:
    rows = ["| live connections | finals | final latency p50 / p95 / max (s) | growth first→last quarter (s) "
            "| drain after end (s) | daemon CPU (% of one core) | audio refused | engine_backlog events "
            "| keeps up |", "|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    for n in levels:
        r = run_level(d, n, seconds)
        rows.append(f"| {n} | {r['finals']} | {r['p50']:.2f} / {r['p95']:.2f} / {r['max']:.2f} | {r['growth']:+.2f} "
                    f"| {r['drain']:.1f} | {r['cpu']:.0f} | {r['refused']} | {r['backlog_events']} "
                    f"| {r['keeps_up']} |")
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs (for trying the bench out)")
    ap.add_argument("--cycles", type=int, help="start/stop cycles (default 1000; quick 200)")
    ap.add_argument("--soak", type=float, help="continuous connection seconds (default 1800; quick 60)")
    ap.add_argument("--levels", default="1,2,4,6,8,12,16", help="concurrent connections to try, comma-separated")
    ap.add_argument("--seconds", type=float, help="seconds of audio per concurrency level (default 60; quick 30)")
    ap.add_argument("--idle", type=float, default=10.0, help="idle CPU measurement seconds")
    ns = ap.parse_args()
    cycles = ns.cycles if ns.cycles is not None else (200 if ns.quick else 1000)
    soak = ns.soak if ns.soak is not None else (60.0 if ns.quick else 1800.0)
    seconds = ns.seconds if ns.seconds is not None else (30.0 if ns.quick else 60.0)
    levels = [int(x) for x in ns.levels.split(",") if x.strip()]
    print(f"machine: {os.cpu_count()} logical CPUs; engine: local (defaults); audio fed in real time\n")
    with tempfile.TemporaryDirectory(prefix="symbld-bench-") as tmp:
        d, rows = bench_idle(Path(tmp), ns.idle)
        try:
            print("\n".join(rows) + "\n", flush=True)
            print("\n".join(bench_cycles(d, cycles)) + "\n", flush=True)
            print("\n".join(bench_concurrency(d, levels, seconds)) + "\n", flush=True)
            if soak > 0:
                print("\n".join(bench_soak(d, soak)) + "\n", flush=True)
        finally:
            d.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
