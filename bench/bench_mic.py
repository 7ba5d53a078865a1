"""Microphone capture cost and latency, through a private PulseAudio (tests/virtmic.py).

    python bench/bench_mic.py                 # 60 s of silence
    python bench/bench_mic.py --seconds 10 --samplerate 48000   # also exercise the soxr path

Prints:
- open -> first frame latency (fresh hub each time, so it includes PortAudio re-initialisation),
  and the latency of a second source joining a running capture;
- callback -> consumer delay (what the daemon's queues add on top of the 20 ms block);
- CPU (% of one core) and RSS of this process while one source consumes silence, i.e. the
  capture itself with no engine; the audio server's own CPU is shown apart.
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
import structlog

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from virtmic import VirtMic  # noqa: E402

from symbld.audio.base import SourceContext  # noqa: E402
from symbld.audio.mic import MicHub  # noqa: E402


def first_frame_latency(cfg: dict[str, object], runs: int) -> tuple[list[float], list[float]]:
    opens, joins = [], []
    for i in range(runs):
        hub = MicHub(cfg)
        try:
            t0 = time.perf_counter()
            src = hub.open(SourceContext(f"lat{i}", lambda t, d: None))
            next(iter(src.frames()))
            opens.append((time.perf_counter() - t0) * 1000)
            t1 = time.perf_counter()
            src2 = hub.open(SourceContext(f"join{i}", lambda t, d: None))
            next(iter(src2.frames()))
            joins.append((time.perf_counter() - t1) * 1000)
            src2.close()
            src.close()
        finally:
            hub.close()
    return opens, joins


def capture_cost(cfg: dict[str, object], seconds: float) -> dict[str, float]:
    hub = MicHub(cfg)
    proc = psutil.Process()
    src = hub.open(SourceContext("cost", lambda t, d: None))
    frames = 0

    def consume() -> None:
        nonlocal frames
        for _ in src.frames():
            frames += 1

    th = threading.Thread(target=consume, daemon=True)
    th.start()
    time.sleep(1.0)  # settle: first blocks, allocator warm-up
    c0, w0, n0 = proc.cpu_times(), time.monotonic(), frames
    rss_max = 0
    while time.monotonic() - w0 < seconds:
        time.sleep(0.5)
        rss_max = max(rss_max, proc.memory_info().rss)
    c1, w1, n1 = proc.cpu_times(), time.monotonic(), frames
    d = src.describe()
    src.close()
    th.join(2)
    hub.close()
    cpu = (c1.user + c1.system - c0.user - c0.system) / (w1 - w0) * 100
    return {"cpu_pct": cpu, "rss_mb": rss_max / 2**20, "frames_per_s": (n1 - n0) / (w1 - w0),
            "delay_mean_ms": d["queue_delay_ms"]["mean"], "delay_max_ms": d["queue_delay_ms"]["max"],
            "overflows": d["overflows"], "dropped": d["dropped"], "device_rate": d["device_samplerate"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="capture duration for CPU/RSS (default 60)")
    ap.add_argument("--runs", type=int, default=10, help="open->first frame repetitions (default 10)")
    ap.add_argument("--samplerate", type=int, default=None, help="force the device rate (48000: soxr path)")
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings only

    with tempfile.TemporaryDirectory(prefix="bench-mic-") as d:
        mic = VirtMic(d)
        mic.start()
        try:
            os.environ.update(mic.env_overrides)
            cfg: dict[str, object] = {"samplerate": args.samplerate}
            opens, joins = first_frame_latency(cfg, args.runs)
            server = psutil.Process(mic.server_pid) if mic.server_pid else None
            s0 = server.cpu_times() if server else None
            cost = capture_cost(cfg, args.seconds)
            s1 = server.cpu_times() if server else None
        finally:
            mic.stop()

    def stats(xs: list[float]) -> str:
        return f"median {statistics.median(xs):6.1f} ms   max {max(xs):6.1f} ms   (n={len(xs)})"

    print(f"device rate: {cost['device_rate']} Hz -> 16000 Hz mono s16le, 20 ms blocks")
    print(f"open -> first frame (fresh hub):   {stats(opens)}   goal < 150 ms")
    print(f"join running capture -> frame:     {stats(joins)}")
    print(f"callback -> consumer delay:        mean {cost['delay_mean_ms']:.2f} ms   max {cost['delay_max_ms']:.2f} ms"
          f"   (+ one 20 ms block = capture latency; goal <= 20 ms + queueing)")
    print(f"capture CPU over {args.seconds:.0f} s:           {cost['cpu_pct']:.2f} % of one core   goal <= 2 %")
    print(f"RSS (max):                         {cost['rss_mb']:.1f} MB")
    print(f"frames/s: {cost['frames_per_s']:.1f} (50 expected)   overflows {cost['overflows']}"
          f"   dropped {cost['dropped']}")
    if s0 and s1:
        srv = (s1.user + s1.system - s0.user - s0.system) / (args.seconds + 1) * 100
        print(f"audio server (pulseaudio) CPU:     {srv:.2f} % of one core (not the daemon's)")


if __name__ == "__main__":
    main()
