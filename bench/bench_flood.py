"""Flood and shutdown against the real daemon, with the same audio fed in real time as baseline.

    python bench/bench_flood.py               # 2 rounds of 8 sentences (~50 s of speech)
    python bench/bench_flood.py --rounds 4 --sessions 4

Runs, each on a fresh daemon (its own runtime and state directories):
1. real time: the audio pushed at 1× through one push connection;
2. flood: the same audio pushed as fast as the daemon accepts (retrying on ``busy``);
3. shutdown: ``--sessions`` connections each given 30 s of the audio at once, then SIGTERM with a
   short ``--stop-timeout`` (2 s) so that shutdown must spool;
   the daemon restarts and decodes what it spooled.
Each prints words said vs words in finals, peak RSS of the daemon, and time to drain (last audio
accepted → conversation_completed; for the shutdown: SIGTERM → exit, and restart → all completed),
with ratios to the real-time run. Asserts nothing.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import DaemonProc, events_until_complete, messages  # noqa: E402
from speechgen import SENTENCES, pcm16, silence, synth  # noqa: E402
from test_flood import CHUNK, flood  # noqa: E402


class PeakRSS:
    def __init__(self, pid: int) -> None:
        self.p = psutil.Process(pid)
        self.peak = 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.peak = max(self.peak, self.p.memory_info().rss / 2**20)
            except psutil.Error:
                return

    def stop(self) -> float:
        self._stop.set()
        return self.peak


def push(c, cid: str, pcm: bytes, realtime: bool) -> int:
    """Push, retrying on busy (tests/test_flood.py's flood); paced at 1× when ``realtime``."""
    if not realtime:
        return flood(c, cid, pcm)
    busy = 0
    t0 = time.monotonic()
    for i in range(0, len(pcm), CHUNK):
        busy += flood(c, cid, pcm[i:i + CHUNK])
        time.sleep(max(0.0, t0 + (i + CHUNK) / 32000 - time.monotonic()))
    return busy


def one_connection(root: Path, pcm: bytes, realtime: bool) -> dict:
    d = DaemonProc(root).start()
    rss = PeakRSS(d.proc.pid)
    try:
        with d.client(timeout=60) as c:
            cid = c.start(source={"type": "push"})["connectionId"]
            t0 = time.monotonic()
            busy = push(c, cid, pcm, realtime)
            fed = time.monotonic()
            c.end_audio(cid)
            events = events_until_complete(c, cid, timeout=1800)
            done = time.monotonic()
        flow = next(e for e in events if e["type"] == "connection_stopped")["data"].get("flow", {})
        return {"words": len(" ".join(messages(events)).split()), "peak_mb": rss.stop(), "drain_s": done - fed,
                "total_s": done - t0, "busy": busy, "dropped_s": flow.get("audioSecondsDropped")}
    finally:
        d.stop()


def shutdown_run(root: Path, pcm: bytes, sessions: int, stop_timeout: float) -> dict:
    d = DaemonProc(root, config=f"stop_timeout = {stop_timeout}\n").start()
    rss = PeakRSS(d.proc.pid)
    cids = []
    with d.client(timeout=60) as c:
        for _ in range(sessions):
            cid = c.start(source={"type": "push"})["connectionId"]
            push(c, cid, pcm[: 30 * 32000], realtime=False)  # what the push queue takes at once
            cids.append(cid)
    t0 = time.monotonic()
    d.stop(signal.SIGTERM, timeout=120)
    exit_s = time.monotonic() - t0
    spooled = d.log().count("session_spooled")
    t1 = time.monotonic()
    d.start()
    rss2 = PeakRSS(d.proc.pid)
    words = 0
    with d.client(timeout=60) as c:
        for cid in cids:
            words += len(" ".join(messages(events_until_complete(c, cid, timeout=1800))).split())
    recovered_s = time.monotonic() - t1
    d.stop()
    return {"words": words, "exit_s": exit_s, "spooled": spooled, "restart_drain_s": recovered_s,
            "peak_mb": max(rss.stop(), rss2.stop())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sentences", type=int, default=8)
    ap.add_argument("--sessions", type=int, default=3)
    ap.add_argument("--stop-timeout", type=float, default=2.0, help="short, so that shutdown has to spool")
    a = ap.parse_args()
    said = SENTENCES[: a.sentences]
    text_words = len(" ".join(said).split()) * a.rounds
    pcm = b"".join(pcm16(synth(s)) + silence(0.7) for s in said) * a.rounds
    audio_s = len(pcm) / 32000
    with tempfile.TemporaryDirectory() as tmp:
        rt = one_connection(Path(tmp) / "rt", pcm, realtime=True)
        fl = one_connection(Path(tmp) / "flood", pcm, realtime=False)
        sd = shutdown_run(Path(tmp) / "shutdown", pcm[: 30 * 32000], a.sessions, a.stop_timeout)
    sd_words = text_words * a.sessions * min(1.0, 30 / audio_s)
    print(f"audio {audio_s:.1f} s, {text_words} words said")
    print("| run | words in finals / said | peak RSS (MB) | drain after last audio (s) | busy | dropped (s) |")
    print("|---|---|---|---|---|---|")
    for name, r in (("real time (baseline)", rt), ("flood", fl)):
        print(f"| {name} | {r['words']} / {text_words} ({r['words'] / text_words:.2f}) | {r['peak_mb']:.0f} "
              f"({r['peak_mb'] / rt['peak_mb']:.2f}×) | {r['drain_s']:.1f} | {r['busy']} | {r['dropped_s']} |")
    print(f"flood total {fl['total_s']:.1f} s vs real time {rt['total_s']:.1f} s "
          f"({fl['total_s'] / rt['total_s']:.2f}×)")
    print(f"shutdown (stop_timeout {a.stop_timeout} s), {a.sessions} connections of ≤30 s each: "
          f"SIGTERM → exit {sd['exit_s']:.1f} s, "
          f"{sd['spooled']} spooled, restart → all completed {sd['restart_drain_s']:.1f} s, "
          f"words {sd['words']} / ~{sd_words:.0f}, peak RSS {sd['peak_mb']:.0f} MB "
          f"({sd['peak_mb'] / rt['peak_mb']:.2f}× real time)")


if __name__ == "__main__":
    main()
