"""Where the CPU of a live stream goes, in CPU-seconds (not wall clock: the machine is shared).

    python bench/bench_stream_cpu.py                      # 1, 8 and 16 streams, 40 s each
    python bench/bench_stream_cpu.py --streams 16 --seconds 60 --end-of-turn semantic
    python bench/bench_stream_cpu.py --baseline   # each level also with interims whenever a worker is free
    SYMBLD_SCHEDULE=retry,hold,spare python bench/bench_stream_cpu.py --streams 1   # without cancelled decodes

In process, the local engine (default settings) and N streams fed the real-speech timeline of
bench_latency.py (recordings of people from Debian's pocketsphinx-testdata) in real time, 20 ms
chunks, staggered 0.7 s. Measured:

1. **CPU by thread** (``/proc/self/task/<tid>/stat``, user + system): the feeding threads (VAD,
   framing: one per stream, like the daemon's session threads), the decode pool's Python threads
   (faster-whisper's Python side: features, tokens, the segment loop, word alignment glue), the
   emit and turn threads, and the native threads Python does not know (CTranslate2's compute
   workers: the encoder and decoder themselves).
2. **Jobs**: how many decodes of each kind ran (interims, speculative finals, finals decoded after
   the endpoint, finals published from a speculation), speculations thrown away because speech
   resumed, each kind's mean wall time on its worker, and how busy the pool's workers were; decodes by kind,
   those stopped early because their result was no longer wanted (``cancel`` in ``SYMBLD_SCHEDULE``), and
   interims decoded but not published.
3. **CPU of one job of each kind** alone on an idle engine afterwards (``time.process_time``
   around one call, median of the clips): multiplied by the counts, the share of each kind.

Prints figures; asserts nothing. Diarization runs in the daemon, not here: bench_diarization.py and
bench_latency.py ``--diarization on`` measure its share.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import realspeech  # noqa: E402
from bench_latency import CHUNK, CHUNK_S, STAGGER_S, timeline  # noqa: E402

from symbld.engines.base import StreamConfig  # noqa: E402
from symbld.engines.local import LocalEngine  # noqa: E402
from symbld.engines.local import streaming as st  # noqa: E402
from symbld.engines.local.recognizer import DecodeCancelled  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
HEADROOM = st._INTERIM_HEADROOM


def thread_cpu() -> dict[int, float]:
    """CPU seconds of every thread of this process, by native thread id."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / TICK
    return out


class Jobs:
    """Counts and wall times of the pool's jobs by kind, and how many workers were busy over time."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.wall: dict[str, float] = defaultdict(float)
        self.busy = 0
        self.busy_time: Counter[int] = Counter()
        self._since = time.monotonic()
        self._lock = threading.Lock()

    def _tick(self) -> None:
        now = time.monotonic()
        self.busy_time[self.busy] += now - self._since
        self._since = now

    def wrap(self, kind: str, job: Any) -> Any:
        def run() -> None:
            with self._lock:
                self._tick()
                self.busy += 1
            t0 = time.monotonic()
            try:
                job()
            finally:
                with self._lock:
                    self._tick()
                    self.busy -= 1
                    self.count[kind] += 1
                    self.wall[kind] += time.monotonic() - t0
        return run


JOBS = Jobs()


def instrument() -> None:
    """Tag each pool submission with its kind (the pool's entry points say which); counts go to JOBS."""
    pool = st.DecodePool
    submit, idle, now = pool.submit, pool.try_submit_idle, pool.try_submit_now
    pool.submit = lambda self, job, priority=st._FINAL: submit(self, JOBS.wrap("final decoded after endpoint", job),
                                                                  priority)
    pool.try_submit_idle = lambda self, job, priority=st._INTERIM, **kw: idle(self, JOBS.wrap("interim", job),
                                                                               priority, **kw)
    pool.try_submit_now = lambda self, job: now(self, JOBS.wrap("speculative final", job))
    spec_used = st.LocalStream._run_final

    def run_final(self: st.LocalStream, utt: Any) -> None:
        if utt.spec is not None and utt.spec.end == utt.end and utt.spec.done:
            JOBS.count["final from its speculation"] += 1
        spec_used(self, utt)

    st.LocalStream._run_final = run_final  # type: ignore[method-assign]
    reuse = st.LocalStream._reuse_speculation

    def reuse_counted(self: st.LocalStream, utt: Any) -> None:
        spec = utt.spec
        if spec is not None and spec.done and spec.rec is not None and spec.rec.text:
            JOBS.count["speculation decoded, speech resumed: published as the interim"] += 1
        reuse(self, utt)

    st.LocalStream._reuse_speculation = reuse_counted  # type: ignore[method-assign]


FEED_CPU: list[float] = []  # each feeding thread's own CPU seconds (a finished thread leaves /proc)


def feed(stream: st.LocalStream, pcm: bytes, delay: float, seconds: float) -> None:
    time.sleep(delay)
    c0 = time.thread_time()
    t0 = time.monotonic()
    total = min(len(pcm), int(seconds * realspeech.RATE) * 2)
    for k, i in enumerate(range(0, total, CHUNK)):
        wait = t0 + (k + 1) * CHUNK_S - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        stream.feed(pcm[i : i + CHUNK])
    FEED_CPU.append(time.thread_time() - c0)
    stream.finish()


def run(n: int, seconds: float, mode: str, pcm: bytes, load_rule: bool = True) -> dict[str, Any]:
    # The baseline: interims started whenever a worker is free (never the last), whatever finals need.
    st._INTERIM_HEADROOM = HEADROOM if load_rule else -1e9
    engine = LocalEngine({"end_of_turn": mode})
    engine.load()
    global JOBS
    JOBS = jobs = Jobs()
    finals = Counter()

    def emit(kind: str, data: dict[str, Any]) -> None:
        if kind == "transcript_response":
            finals["final" if data.get("isFinal") else "interim"] += 1

    decodes: Counter[str] = Counter()
    transcribe = engine.recognizer.transcribe

    def counted(audio: np.ndarray, *, final: bool, **kw: Any) -> Any:
        kind = "final" if final else "interim"
        decodes[kind] += 1
        decodes["final with finals waiting (behind_beam_size)"] += final and kw.get("behind", False)
        try:
            return transcribe(audio, final=final, **kw)
        except DecodeCancelled as e:
            decodes[f"{kind} cancelled"] += 1
            decodes[f"{kind} cancelled before {e}"] += 1
            raise

    engine.recognizer.transcribe = counted  # type: ignore[method-assign]
    streams = [engine.open(StreamConfig(connection_id=f"s{k}", conversation_id=f"c{k}"), emit) for k in range(n)]
    feeders = [threading.Thread(target=feed, args=(s, pcm, STAGGER_S * k, seconds), name=f"feed-{k}")
               for k, s in enumerate(streams)]
    c0, w0, t0 = thread_cpu(), time.process_time(), time.monotonic()
    for t in feeders:
        t.start()
    names = {t.native_id: t.name for t in threading.enumerate()}  # a finished thread is no longer listed
    for t in feeders:
        t.join()
    c1, cpu, wall = thread_cpu(), time.process_time() - w0, time.monotonic() - t0
    groups: Counter[str] = Counter({"feed threads (VAD, framing)": sum(FEED_CPU[-n:])})
    for tid, c in c1.items():
        name = names.get(tid, "native (CTranslate2, onnxruntime pools)")
        if name.startswith("feed-"):
            continue  # counted by the thread itself
        if name.startswith("symbld-decode"):
            name = "decode workers' Python side"
        groups[name] += c - c0.get(tid, 0.0)
    engine.close()
    return {"cpu": cpu, "wall": wall, "groups": groups, "jobs": jobs, "events": finals, "decodes": decodes}


def unit_costs(engine: LocalEngine, clips: list[np.ndarray]) -> dict[str, float]:
    """CPU seconds of one job of each kind, alone (median over the clips)."""
    rec = engine.recognizer
    pre = np.zeros(realspeech.RATE, np.float32)
    out: dict[str, list[float]] = defaultdict(list)
    rec.transcribe(np.concatenate([pre, clips[0]]), final=True)  # warm-up
    vad = engine._vad.new_state()  # type: ignore[union-attr]
    for a in clips:
        audio = np.concatenate([pre, a, np.zeros(1600, np.float32)])
        for kind, final in (("final (beam 5, words)", True), ("interim (greedy)", False)):
            c0 = time.process_time()
            rec.transcribe(audio, final=final)
            out[kind].append(time.process_time() - c0)
        c0 = time.process_time()
        for i in range(0, len(a) - 512, 512):
            vad(a[i : i + 512])
        out["VAD per audio second"].append((time.process_time() - c0) / (len(a) / realspeech.RATE))
    return {k: float(np.median(v)) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, nargs="*", default=[1, 8, 16])
    ap.add_argument("--seconds", type=float, default=40.0, help="audio fed per stream")
    ap.add_argument("--end-of-turn", default="fixed", choices=["fixed", "semantic"])
    ap.add_argument("--baseline", action="store_true",
                    help="each level also without the pool's load rule for interims (interims whenever a worker "
                         "is free), first")
    args = ap.parse_args()
    clips = realspeech.clips()
    tl = timeline(clips)
    instrument()
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()}; {args.seconds:.0f} s per stream; "
          f"end of turn {args.end_of_turn}")
    for n, rule in [(n, rule) for n in args.streams for rule in ([False, True] if args.baseline else [True])]:
        r = run(n, args.seconds, args.end_of_turn, tl.pcm, rule)
        audio = n * args.seconds
        policy = "by load" if rule else "whenever a worker is free"
        print(f"\n## {n} stream(s), interims {policy}: process CPU {r['cpu']:.1f} s over {r['wall']:.1f} s = "
              f"{r['cpu'] / r['wall']:.2f} cores; {r['cpu'] / audio:.3f} CPU-s per audio s per stream; "
              f"load {os.getloadavg()[0]:.2f}")
        for name, c in r["groups"].most_common():
            print(f"  {name:45s} {c:7.1f} CPU-s  {c / r['cpu']:6.1%}")
        jobs: Jobs = r["jobs"]
        for kind, k in jobs.count.most_common():
            wall = jobs.wall.get(kind)
            print(f"  jobs: {kind:37s} {k:5d}" + (f"  mean {wall / k:.3f} s on its worker" if wall else ""))
        spec = jobs.count["speculative final"]
        used = JOBS.count["final from its speculation"]
        print(f"  speculations thrown away (speech resumed, or closed on other audio): {spec - used} of {spec}")
        total = sum(jobs.busy_time.values()) or 1.0
        print("  decode workers busy: " + ", ".join(f"{b}: {t / total:.0%}" for b, t in sorted(jobs.busy_time.items())))
        print(f"  events: {dict(r['events'])}")
        dec, ev = r["decodes"], r["events"]
        print(f"  decodes: {dict(dec)}; interims decoded and not published: "
              f"{dec['interim'] - dec['interim cancelled'] - ev['interim']} of {dec['interim']} (and "
              f"{dec['interim cancelled']} cancelled); final decodes per final published: "
              f"{dec['final'] / max(1, ev['final']):.2f} ({dec['final cancelled']} cancelled); "
              f"schedule {','.join(sorted(st.SCHEDULE)) or 'baseline'}")
    engine = LocalEngine({})
    engine.load()
    costs = unit_costs(engine, tl.trimmed)
    print("\nCPU of one job alone (median over the clips, 3.0 s of speech p50, 1 s lead-in):")
    for k, v in costs.items():
        print(f"  {k:30s} {v:.4f} CPU-s")
    engine.close()


if __name__ == "__main__":
    main()
