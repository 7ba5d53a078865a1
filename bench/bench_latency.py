"""Speech end -> final latency on the PUB socket of the real daemon, against the floor of the same run.

    python bench/bench_latency.py                 # 1, 4, 8, 16, 24 live streams, fixed and semantic, + keep-up
    python bench/bench_latency.py --streams 1 2 4 6 --end-of-turn fixed --keep-up 0
    python bench/bench_latency.py --streams --long  # only the keep-up check: 24 streams for 5 minutes
    python bench/bench_latency.py --streams 1 --diarization off on --keep-up 0  # the speaker labels' share
    python bench/bench_latency.py --model base
    python bench/bench_latency.py --streams 8 --end-of-turn fixed --keep-up 0 --trace --schedule baseline default
                                                  # old vs new decode scheduling, each level in turn, + where time goes

What a user sees: a real ``python -m symbld`` (default engine settings) is started; each stream is
a push connection fed the real-speech clips of tests/realspeech.py (recordings of people from
Debian's pocketsphinx-testdata) in real time, 20 ms chunks each sent when a microphone would have
captured it, and a SUB client on the daemon's events socket timestamps every event on arrival.

- **speech end -> final**: the arrival of the final that closes a clip minus the *true* end of
  its speech. Each clip is trimmed to its speech (its own leading and trailing silence cut by
  frame energy) and followed by 1.5 s of silence, so the end of speech is exact.
- **floor** (same run, same machine, before the streams): the endpoint silence plus the time to
  decode that utterance alone (the audio the engine decodes: pre-roll + speech + post-roll) with
  the same model in this process on an otherwise idle engine. A streaming layer that waited for
  the endpoint and only then decoded would sit at this floor; the speculative final can go below.
- **endpoint due**: when the endpoint is confirmed, from the true end of speech (the VAD's last
  speech frame + ``endpoint_silence_ms``): no final can be out earlier; the rest is decode and transport;
- **interim lag**: arrival of each interim minus the audio time its text covers (how far behind
  the speech the live text is); **onset -> first interim** per clip.
- WER of the finals against the transcripts, the daemon's CPU, and the machine's load average.
- **end of turn** (``--end-of-turn fixed semantic``, each level run once per mode, side by side on the same
  daemon through ``start``'s ``endOfTurn``): the figures above per mode, and **premature finals**: finals
  that end inside a clip's speech (more than 0.3 s before its end) whose speaker goes on within 1 s
  (the clip's next voiced 10 ms frame, by the same energy rule that trims the clips). The clips are
  read sentences and spoken card lists with their own pauses: no conversational recordings ship in a
  Debian or PyPI package here. With semantic end of turn, ``end_of_turn`` reasons are counted too.
  **end_of_turn p50 / p95** (semantic): the arrival of a turn's ``end_of_turn`` event minus the true end of
  its speech, the end-of-turn decision alone (against the fixed endpoint's "endpoint due"), free of the
  decode that the final waits for.
  ``finalize``: the client sends the ``finalize`` command as soon as a clip's speech is sent (a client
  that knows the turn ended, Deepgram's Finalize): speech end -> final is then transport + decode.

- **CPU per stream**: the daemon's CPU-seconds (``/proc``, user + system) over the level's wall time, divided
  by the streams (the columns "daemon CPU" and "CPU per stream"; CPU, unlike wall-clock latency, hardly
  depends on what else the machine runs). Connections are started with ``diarization`` off unless
  ``--diarization on`` (push connections diarize by default once ``symbld[diarize]`` is installed).
- **keep-up** (``--keep-up N``, default 24 streams, ``--keep-up-seconds``, default 60, ``--long``: 300): the
  clips repeated for the whole duration on every stream, each mode once; speech end -> final p50/p95 of the
  first and the last quarter of the run: growth means the streams fall behind.

- **where a final's time goes** (``--trace``): the daemon writes each final's timestamps
  (``SYMBLD_TRACE_FINALS``, symbld/engines/local/trace.py) and each level prints, from the true end of speech:
  the last speech frame the VAD saw, the speculative decode's start and end (and how many finals used it, how
  many asked for it while no worker was free), the utterance's close (the endpoint), the queued final
  decode's wait and run, and the publish.

Prints figures and ratios; asserts nothing. On a shared machine every figure includes its load,
which is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import realspeech  # noqa: E402
from conftest import DaemonProc  # noqa: E402 - the tests' real-daemon harness
from speechgen import wer  # noqa: E402
from subscriber import Received, Subscriber  # noqa: E402

from symbld.engines.local.recognizer import make_recognizer  # noqa: E402
from symbld.engines.local.streaming import StreamSettings  # noqa: E402

RATE = realspeech.RATE
CHUNK_S = 0.02
CHUNK = int(CHUNK_S * RATE) * 2  # bytes of s16le
GAP_S = 1.5  # silence after each clip
STAGGER_S = 0.7  # streams start this far apart, as sessions do


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass
class Timeline:
    """The stream's audio: trimmed clips, each followed by silence; speech spans in stream seconds."""

    pcm: bytes
    spans: list[tuple[float, float]]
    trimmed: list[np.ndarray]

    def speaks_again(self, k: int, at: float, within: float = 1.0) -> bool:
        """Whether clip ``k``'s speaker has a voiced 10 ms frame in (``at``, ``at`` + ``within``] (stream s)."""
        a = self.trimmed[k]
        frame = RATE // 100
        energy = np.array([np.mean(a[i : i + frame] ** 2) + 1e-12 for i in range(0, len(a) - frame + 1, frame)])
        voiced = np.nonzero(10 * np.log10(energy / energy.max()) > -35.0)[0] / 100 + self.spans[k][0]
        return bool(np.any((voiced > at) & (voiced <= at + within)))


def timeline(clips: list[realspeech.Clip]) -> Timeline:
    parts, spans, trimmed, pos = [np.zeros(int(0.5 * RATE), np.float32)], [], [], 0.5
    for c in clips:
        s, e = realspeech.speech_bounds(c.audio)
        a = c.audio[int(s * RATE) : int(e * RATE)]
        trimmed.append(a)
        spans.append((pos, pos + len(a) / RATE))
        parts += [a, np.zeros(int(GAP_S * RATE), np.float32)]
        pos += len(a) / RATE + GAP_S
    return Timeline(realspeech.pcm16(np.concatenate(parts)), spans, trimmed)


def floor(model: str, trimmed: list[np.ndarray], whole: list[np.ndarray]) -> tuple[list[float], list[str]]:
    """Endpoint silence + the idle decode of each utterance (the engine's own audio for it); and the
    plain model's text of each whole clip as recorded (faster-whisper as shipped: beam 5, T=0, 30 s)."""
    s = StreamSettings()
    rec = make_recognizer({"model": model, "num_workers": 1, "cpu_threads": 1})
    rec.load()
    plain = []
    for a in whole:
        segs, _ = rec._model.transcribe(a, language="en", beam_size=5, temperature=0.0,  # type: ignore[attr-defined]
                                        condition_on_previous_text=False, vad_filter=False)
        plain.append(" ".join(seg.text.strip() for seg in segs))
    pre, post = np.zeros(int(s.preroll_ms * RATE / 1000), np.float32), np.zeros(int(s.postroll_ms * RATE / 1000),
                                                                               np.float32)
    rec.transcribe(trimmed[0], final=True)  # warm-up
    out = []
    for a in trimmed:
        t0 = time.perf_counter()
        rec.transcribe(np.concatenate([pre, a, post]), final=True)
        out.append(s.endpoint_silence_ms / 1000 + time.perf_counter() - t0)
    rec.close()
    return out, plain


def feed(d: DaemonProc, tl: Timeline, delay: float, starts: dict[str, float], mode: str,
         diarization: bool = False) -> None:
    time.sleep(delay)
    with d.client(timeout=30) as c:
        cid = c.start(source={"type": "push"}, endOfTurn="fixed" if mode == "finalize" else mode,
                      diarization=diarization)["connectionId"]
        t0 = time.monotonic()
        starts[cid] = t0
        ends = [int(e * RATE) * 2 for _, e in tl.spans] if mode == "finalize" else []
        for k, i in enumerate(range(0, len(tl.pcm), CHUNK)):
            due = t0 + (k + 1) * CHUNK_S  # a microphone hands a chunk over once it is captured
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            c.send_audio(cid, tl.pcm[i : i + CHUNK])
            if ends and i + CHUNK >= ends[0]:  # the clip's speech is all sent: the client forces its final
                ends.pop(0)
                c.finalize(cid)
        c.end_audio(cid)


def clip_of(d: dict, spans: list[tuple[float, float]]) -> int:
    mid = d["duration"]["timeOffset"] + d["duration"]["duration"] / 2
    return min(range(len(spans)), key=lambda j: abs((spans[j][0] + spans[j][1]) / 2 - mid))


def analyse(got: Received, starts: dict[str, float], tl: Timeline, refs: list[str]) -> dict[str, Any]:
    lat, lag, first, wers, texts, due = [], [], [], [], [], []
    timed: list[tuple[float, float]] = []  # (speech end in stream seconds, speech end -> final)
    premature, finals, reasons, cut_clips = 0, 0, Counter(), Counter()
    turn_closed: list[float] = []  # end_of_turn arrival - true end of speech (semantic end of turn)
    settings = StreamSettings()
    for cid, t0 in starts.items():
        hyps: list[list[str]] = [[] for _ in tl.spans]
        seen: set[int] = set()
        last_final: dict[int, tuple[float, float]] = {}  # clip -> (arrival, audio end of that final)
        for when, body in got.events.get(cid, []):
            e = body.get("data") or {}
            if body.get("type") == "end_of_turn":
                reasons[e.get("reason")] += 1
                at = float(e.get("timeOffset", 0.0))  # the turn's last speech, in stream seconds
                k = min(range(len(tl.spans)), key=lambda j: abs(tl.spans[j][1] - at))
                if e.get("reason") in ("model", "silence") and abs(tl.spans[k][1] - at) < 0.5:
                    turn_closed.append(when - (t0 + tl.spans[k][1]))
            if body.get("type") != "transcript_response" or not e.get("punctuated", {}).get("transcript"):
                continue
            k = clip_of(e, tl.spans)
            if e["isFinal"]:
                hyps[k].append(e["punctuated"]["transcript"])
                end = e["duration"]["timeOffset"] + e["duration"]["duration"]
                last_final[k] = (when, end)
                finals += 1
                if end < tl.spans[k][1] - 0.3 and tl.speaks_again(k, end - settings.postroll_ms / 1000):
                    premature += 1
                    cut_clips[k] += 1
            else:
                covered = e["duration"]["timeOffset"] + e["duration"]["duration"]
                lag.append(when - (t0 + min(covered, tl.spans[k][1])))
                if k not in seen:
                    seen.add(k)
                    first.append(when - (t0 + tl.spans[k][0]))
        lat += [when - (t0 + tl.spans[k][1]) for k, (when, _) in last_final.items()]
        timed += [(tl.spans[k][1], when - (t0 + tl.spans[k][1])) for k, (when, _) in last_final.items()]
        # The endpoint is due endpoint_silence_ms after the last speech frame (the final's audio
        # ends post-roll after it): the earliest a final can be out, whatever the decode costs.
        due += [end - settings.postroll_ms / 1000 + settings.endpoint_silence_ms / 1000 - tl.spans[k][1]
                for k, (_, end) in last_final.items()]
        texts.append([" ".join(h) for h in hyps])
        wers.append(wer(refs, texts[-1]))
    return {"texts": texts, "p50": pct(lat, 50), "p95": pct(lat, 95), "max": max(lat, default=float("nan")),
            "n": len(lat),
            "due50": pct(due, 50), "lag50": pct(lag, 50), "lag95": pct(lag, 95), "first50": pct(first, 50),
            "wer": float(np.mean(wers)), "premature": premature, "finals": finals, "reasons": dict(reasons),
            "cut_clips": cut_clips, "turn50": pct(turn_closed, 50), "turn95": pct(turn_closed, 95),
            "timed": timed}


def breakdown(path: Path, starts: dict[str, float], tl: Timeline) -> str:
    """The traced finals of these connections: p50 / p95 of each step from the true end of speech."""
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    rows = [r for r in rows if r["cid"] in starts]
    if not rows:
        return "trace: no finals traced"
    steps: dict[str, list[float]] = {}
    used = refused = discarded = cancelled = packed = behind = 0
    pool_busy: Counter[str] = Counter()
    for r in rows:
        k = min(range(len(tl.spans)), key=lambda j: abs(tl.spans[j][1] - r["speech_end"]))
        if abs(tl.spans[k][1] - r["speech_end"]) > 0.5:
            continue  # a final inside a clip (a pause): only the clips' last finals are the latency's
        end = starts[r["cid"]] + tl.spans[k][1]
        m = r["marks"]
        for step, at in m.items():
            steps.setdefault(step, []).append(at - end)
        if "spec_start" in m and "spec_ask" in m:
            steps.setdefault("spec wait", []).append(m["spec_start"] - m["spec_ask"])
        if "final_start" in m and "final_submit" in m:
            steps.setdefault("final queue wait", []).append(m["final_start"] - m["final_submit"])
        if not r.get("used_spec") and "decoded" in m and "final_start" in m:
            steps.setdefault("final decode", []).append(m["decoded"] - m["final_start"])
        if r.get("used_spec") and "spec_end" in m and "spec_start" in m:
            steps.setdefault("spec decode", []).append(m["spec_end"] - m["spec_start"])
        used += bool(r.get("used_spec"))
        refused += bool(r.get("spec_refused"))
        discarded += r.get("spec_discarded", 0)
        cancelled += r.get("spec_cancelled", 0)
        packed += r.get("packed", 1) > 1
        behind += bool(r.get("behind"))
        busy = r.get("pool_at_ask") or {}
        pool_busy[f"{busy.get('final', 0)}f+{busy.get('optional', 0)}i"] += 1
    order = ["speech", "spec_ask", "spec_start", "spec_end", "close", "final_submit", "final_start", "decoded",
             "emitted", "spec wait", "spec decode", "final queue wait", "final decode"]
    parts = [f"{s} {pct(steps[s], 50):+.3f}/{pct(steps[s], 95):+.3f}" for s in order if s in steps]
    return (f"trace ({len(rows)} finals; p50/p95 s from the true end of speech, waits and decodes as durations): "
            + ", ".join(parts) + f"; used speculative {used}, refused (no free worker) {refused}, discarded "
            f"{discarded} (stopped early {cancelled}), packed {packed}, cheaper search (finals waiting, "
            f"behind_beam_size) {behind}; workers busy at the speculative ask (finals+interims): "
            + ", ".join(f"{k} {v}" for k, v in pool_busy.most_common()))


def run_level(d: DaemonProc, n: int, tl: Timeline, refs: list[str], mode: str,
              diarization: bool = False) -> dict[str, Any]:
    proc = psutil.Process(d.proc.pid)  # type: ignore[union-attr]
    sub = Subscriber(d.events)
    time.sleep(0.5)  # the SUB connects before the first event
    starts: dict[str, float] = {}
    c0, w0 = proc.cpu_times(), time.monotonic()
    threads = [threading.Thread(target=feed, args=(d, tl, STAGGER_S * k, starts, mode, diarization))
               for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 60
    while len(sub.got.completed & set(starts)) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    c1, wall = proc.cpu_times(), time.monotonic() - w0
    sub.close()
    r = analyse(sub.got, starts, tl, refs)
    if trace := os.environ.get("SYMBLD_TRACE_FINALS"):
        r["trace"] = breakdown(Path(trace), starts, tl)
    r["cpu"] = (c1.user + c1.system - c0.user - c0.system) / wall
    r["cpu_per_audio_s"] = (c1.user + c1.system - c0.user - c0.system) / (n * len(tl.pcm) / 2 / RATE)
    if diarization:
        r["speakers"] = speaker_work(d, sub.got, starts)
    return r


def speaker_work(d: DaemonProc, got: Received, starts: dict[str, float]) -> str:
    """With diarization: messages published with a ``from``, the finals that went out before their prints
    (provisional label) and the late revisions that followed (their delay after the message), the prints'
    load shedding and CPU per audio second (the connections' ``diarizationWork``, docs/diarization.md)."""
    labelled = messages = 0
    delays: list[float] = []
    work: Counter[str] = Counter()
    cpu = audio = 0.0
    with d.client(timeout=30) as c:
        for cid in starts:
            at: dict[str, float] = {}
            for when, body in got.events.get(cid, []):
                e = body.get("data") or {}
                if body.get("type") == "message_response":
                    for m in e.get("messages") or []:
                        at[m["id"]] = when
                        messages += 1
                        labelled += bool(m.get("from"))
                elif body.get("type") == "speaker_revision" and e.get("reason") == "late":
                    delays += [when - at[mid] for mid in e.get("messageIds") or [] if mid in at]
            conn = c.request("get", connectionId=cid)
            w = conn.get("diarizationWork") or {}
            work.update({k: v for k, v in w.items() if isinstance(v, int)})
            cpu += float(w.get("printCpuSeconds") or 0.0)
            audio += float(conn.get("audioSeconds") or 0.0)
    late = f"{pct(delays, 50):.2f} / {pct(delays, 95):.2f} s after their message" if delays else "none"
    return (f"speakers: {labelled} of {messages} messages published with a from; finals before their prints "
            f"{work['provisionalFinals']}, late-revised messages {work['lateRevisedMessages']} ({late}), tail prints "
            f"{work['tailPrints']}, skipped {work['skippedPrints']}; prints {cpu / max(audio, 1e-9):.3f} CPU-s per "
            f"audio s")


def keep_up(d: DaemonProc, n: int, seconds: float, clips: list[realspeech.Clip], mode: str,
            diarization: bool) -> None:
    """``n`` live streams for ``seconds`` of audio each: speech end -> final by quarter of the run;
    keeping up means the last quarter is no later than the first (no growth of lag)."""
    one = timeline(clips)
    tl = timeline(clips * max(1, int(np.ceil(seconds / (len(one.pcm) / 2 / RATE)))))
    spans = [sp for sp in tl.spans if sp[1] + GAP_S < seconds]
    tl = Timeline(tl.pcm[: int(seconds * RATE) * 2], spans, tl.trimmed[: len(spans)])
    refs = ([c.text for c in clips] * len(spans))[: len(spans)]
    r = run_level(d, n, tl, refs, mode, diarization)
    timed = sorted(r["timed"])
    q = max(1, len(timed) // 4)
    first, last = [x for _, x in timed[:q]], [x for _, x in timed[-q:]]
    print(f"\nkeep-up: {n} live streams x {seconds:.0f} s, {mode}, diarization {'on' if diarization else 'off'}: "
          f"speech end -> final p50 {r['p50']:.3f} s, p95 {r['p95']:.3f} s, max {r['max']:.3f} s over {r['n']} finals; "
          f"first quarter p50 {pct(first, 50):.3f} s, last quarter p50 {pct(last, 50):.3f} s "
          f"(growth {pct(last, 50) - pct(first, 50):+.3f} s; p95 {pct(first, 95):.3f} -> {pct(last, 95):.3f} s); "
          f"WER {r['wer']:.1%}; daemon {r['cpu']:.2f} cores, {r['cpu_per_audio_s']:.3f} CPU-s per audio s per "
          f"stream; load {load()}", flush=True)
    if "trace" in r:
        print(f"  {r['trace']}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, nargs="*", default=[1, 4, 8, 16, 24])
    ap.add_argument("--diarization", nargs="*", default=["off"], choices=["on", "off"],
                    help="speaker labels on each push connection (the daemon's default with [diarize] "
                         "installed is on; off measures the engine alone); each level runs once per value")
    ap.add_argument("--keep-up", type=int, default=24, metavar="N",
                    help="live streams of the keep-up check (0: skip it)")
    ap.add_argument("--keep-up-seconds", type=float, default=60.0,
                    help="audio per stream of the keep-up check (default 60 s)")
    ap.add_argument("--long", action="store_true", help="the keep-up check over 5 minutes")
    ap.add_argument("--end-of-turn", nargs="*", default=["fixed", "semantic"],
                    choices=["fixed", "semantic", "finalize"],
                    help="end-of-turn modes, each level run once per mode (semantic needs symbld[turn]; "
                         "finalize: the fixed endpoint, and the client sends finalize as each clip's speech ends)")
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--schedule", nargs="*", default=["default"],
                    help="decode schedules to compare side by side (SYMBLD_SCHEDULE of symbld/engines/local/"
                         "streaming.py: 'baseline', 'retry', 'hold', 'retry,hold'; 'default' = the daemon's own), "
                         "each optionally with [engine.local] keys after '+' ('retry,hold+num_workers=3'): one "
                         "daemon each, every level run on each in turn")
    ap.add_argument("--trace", action="store_true",
                    help="print where each level's finals spent their time (SYMBLD_TRACE_FINALS in the daemon)")
    args = ap.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    clips = realspeech.clips()
    tl = timeline(clips)
    refs = [c.text for c in clips]
    speech = sum(len(a) for a in tl.trimmed) / RATE
    print(f"audio: {len(clips)} real recordings trimmed to their speech, {speech:.1f} s, "
          f"{sum(len(r.split()) for r in refs)} words; stream {len(tl.pcm) / 2 / RATE:.1f} s; "
          f"{os.cpu_count()} CPUs; model {args.model}")
    print(f"load average before: {load()}")
    fl, plain = floor(args.model, tl.trimmed, [c.audio for c in clips])
    print(f"plain model, each whole clip as recorded: WER {wer(refs, plain):.1%}")
    print(f"floor (endpoint {StreamSettings().endpoint_silence_ms} ms + idle decode of the utterance alone): "
          f"p50 {pct(fl, 50):.3f} s, p95 {pct(fl, 95):.3f} s  [load {load()}]\n")
    with tempfile.TemporaryDirectory(prefix="symbld-bench-latency-") as tmp:
        if args.trace and not os.environ.get("SYMBLD_TRACE_FINALS"):
            os.environ["SYMBLD_TRACE_FINALS"] = str(Path(tmp) / "finals.jsonl")
        most = max([16, args.keep_up, *args.streams])
        config = f'max_connections = {most}\n[engine.local]\nmodel = "{args.model}"\n'
        # One daemon per decode schedule (SYMBLD_SCHEDULE), all started now; each level runs on each in turn.
        daemons: dict[str, DaemonProc] = {}
        try:
            for sched in args.schedule:
                name, *keys = sched.split("+")  # "retry,hold+num_workers=3": engine keys after the schedule
                env = {} if name == "default" else {"SYMBLD_SCHEDULE": name}
                conf = config + "".join(f"{k.replace('=', ' = ', 1)}\n" for k in keys)
                daemons[sched] = DaemonProc(Path(tmp) / f"d{len(daemons)}", config=conf, env=env).start()
            measure(args, daemons, clips, tl, refs, fl, plain)
        finally:
            for d in daemons.values():
                d.stop()


def measure(args: argparse.Namespace, daemons: dict[str, DaemonProc], clips: list[realspeech.Clip], tl: Timeline,
            refs: list[str], fl: list[float], plain: list[str]) -> None:
    print("| live streams | end of turn | speech end -> final p50 | p95 | max | p50 / floor p50 "
          "| endpoint due p50 | interim lag p50 / p95 | onset -> first interim p50 | WER "
          "| premature finals | end_of_turn reasons | end_of_turn p50 / p95 | daemon CPU (cores) "
          "| CPU per stream | load average |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    texts: list[list[str]] = []
    runs: list[tuple[int, str]] = []
    cuts: dict[tuple[int, str], Counter[int]] = {}
    for n, diar, mode, sched in [(n, diar, mode, sched) for n in args.streams for diar in args.diarization
                                 for mode in args.end_of_turn for sched in daemons]:
        r = run_level(daemons[sched], n, tl, refs, mode, diar == "on")
        mode = mode + (" + speakers" if diar == "on" else "")  # the row's label
        if len(daemons) > 1:
            mode += f" [{sched}]"
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(r["reasons"].items())) or "-"
        print(f"| {n} | {mode} | {r['p50']:.3f} s | {r['p95']:.3f} s | {r['max']:.3f} s | "
              f"{r['p50'] / pct(fl, 50):.2f}x | {r['due50']:.3f} s | {r['lag50']:.3f} / "
              f"{r['lag95']:.3f} s | {r['first50']:.3f} s | {r['wer']:.1%} | "
              f"{r['premature']} of {r['finals']} | {reasons} | {r['turn50']:.3f} / {r['turn95']:.3f} s | "
              f"{r['cpu']:.2f} | {r['cpu'] / n:.3f} | "
              f"{load()} |", flush=True)
        if "trace" in r:
            print(f"  {n} {mode}: {r['trace']}", flush=True)
        if "speakers" in r:
            print(f"  {n} {mode}: {r['speakers']}", flush=True)
        texts.append(r["texts"][0])
        runs.append((n, mode))
        cuts[(n, mode)] = r["cut_clips"]
    if args.keep_up:
        for mode, sched in [(mode, sched) for mode in args.end_of_turn for sched in daemons]:
            if len(daemons) > 1:
                print(f"\nschedule {sched}:", end="")
            keep_up(daemons[sched], args.keep_up, 300.0 if args.long else args.keep_up_seconds, clips, mode,
                    args.diarization[0] == "on")
    print("\npremature finals by clip:")
    for (n, mode), by_clip in cuts.items():
        print(f"  {n} stream(s), {mode}: " + (", ".join(f"{clips[k].name} ({refs[k]!r}) {v}"
                                                     for k, v in sorted(by_clip.items())) or "none"))
    print("\nclips where the daemon's finals (first stream of each run) and the plain model differ in "
          "word errors:")
    for k, ref in enumerate(refs):
        said = [t[k] for t in texts]
        errs = [round(wer([ref], [t]) * len(ref.split())) for t in said]
        base = round(wer([ref], [plain[k]]) * len(ref.split()))
        if any(e != base for e in errs):
            print(f"  {clips[k].name}: said {ref!r}\n    plain ({base} errors) {plain[k]!r}")
            for (n, mode), t, e in zip(runs, said, errs, strict=True):
                print(f"    daemon, {n} stream(s), {mode} ({e} errors) {t!r}")

if __name__ == "__main__":
    main()
