"""Premature finals on real conversations: semantic end of turn against the fixed endpoint (issue 27).

    python bench/bench_turns.py                                  # the default subset, fixed and semantic
    python bench/bench_turns.py --sets phone-2p ami-4p-tst --end-of-turn fixed semantic
    python bench/bench_turns.py --sets all                       # every real conversation (about 15 min)

Recordings: the real conversations of bench/heldout_voices.py (the pinned ``pyannote.audio==4.0.7``
sdist from PyPI: a two-person telephone call and AMI meeting excerpts, with reference speaker turns as
RTTM). By default a subset of about 3 minutes, so both modes run in about 7 minutes: ``phone-2p``
(30 s, 2 people), ``ami-2p-dev`` (61 s, 2 people), ``ami-3p-trn00`` (30 s, 3 people), ``ami-4p-tst``
(61 s, 4 people).

A real ``python -m symbld`` (default engine settings, ``--model``, tiny.en by default) is started once;
each conversation is pushed to it live (bench_latency's ``feed``: 20 ms chunks, each sent when a
microphone would have captured it), one stream at a time, once per end-of-turn mode (``start``'s
``endOfTurn``: ``fixed`` / ``semantic``), modes alternating per conversation so the machine's load
drifts over both alike; 0.5 s of silence before the recording and 2 s after; diarization off. A SUB client
timestamps every event on arrival.

Definitions (all times in stream seconds, the reference shifted by the 0.5 s lead-in):

- **reference turn**: one speaker's RTTM segments merged wherever that speaker pauses no longer than the
  fixed endpoint (``endpoint_silence_ms``, 350 ms): a stretch in which a correct endpoint never closes
  that speaker's words. Another person talking meanwhile does not end it.
- **a final's end**: its ``transcript_response`` (``isFinal``) ``timeOffset + duration`` minus ``postroll_ms``
  (the last speech frame the VAD saw, as bench_latency counts it).
- **premature final**: a final whose end falls inside a reference turn, more than ``START_GUARD`` (0.2 s,
  the annotation's precision) after the turn's start and more than ``GOES_ON`` (0.5 s) before its end: the
  speaker was cut mid-turn and went on talking without a pause longer than the fixed endpoint. Finals that
  end in reference silence, or within 0.5 s of a turn's end, are not premature.
- **finals per reference turn**: finals / reference turns (below 1: turns joined into one final, as happens
  when people overlap or answer within the endpoint; above 1: turns split).
- **speech end -> final**: for each end of reference speech (the union of every speaker's segments) followed
  by at least 1 s of reference silence, the final whose end is nearest to it, if within 0.6 s; its arrival
  minus that speech end. The reference's times are human/forced-alignment annotation, so this is coarser
  than bench_latency's (which trims its clips by energy).

- **finals >= 15 s**: finals as long as the daemon's ``max_utterance_s`` cut (20 s, cut at a low point of the
  last ``cut_search_s``, 5 s) makes them: speech with no pause the VAD hears, cut by length, not by a turn.
- **end_of_turn reasons** (semantic): ``model`` (judged complete), ``silence, judged incomplete`` (held up to
  ``turn_max_silence_ms``), ``silence, no judgment in time`` (the event's ``probability`` is null: the model
  was not asked, the stream being behind or the model busy, or its answer came after the fixed endpoint,
  which then closed the turn: on those pauses semantic end of turn *is* the fixed endpoint).
  **turn_resumed**: speech (anyone's: the daemon hears one mixed signal) within 1 s of an ``end_of_turn``.

Prints one row per conversation and mode, the totals per mode, and the ratio semantic / fixed of the
premature finals; asserts nothing. Every figure includes the machine's load, printed with them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import heldout_voices  # noqa: E402
import realspeech  # noqa: E402
import voices  # noqa: E402
from bench_latency import Timeline, feed, load, pct  # noqa: E402 - the live feed and its helpers
from conftest import DaemonProc  # noqa: E402 - the tests' real-daemon harness
from subscriber import Subscriber  # noqa: E402

from symbld.engines.local.streaming import StreamSettings  # noqa: E402

RATE = heldout_voices.RATE
LEAD_S, TAIL_S = 0.5, 2.0
START_GUARD = 0.2  # a final's end this far into a turn before it counts (the RTTM's precision)
GOES_ON = 0.5  # ... and the speaker goes on for more than this after it
SPEECH_END_SILENCE = 1.0  # reference silence after a speech end for its latency to count
MATCH = 0.6  # a final's end this near a speech end is that speech end's final
DEFAULT_SETS = ["phone-2p", "ami-2p-dev", "ami-3p-trn00", "ami-4p-tst"]


def reference_turns(turns: list[voices.Turn], gap: float) -> list[voices.Turn]:
    """Each speaker's segments merged where that speaker pauses no longer than ``gap`` seconds."""
    out: list[voices.Turn] = []
    for who in sorted({t.speaker for t in turns}):
        mine = sorted((t for t in turns if t.speaker == who), key=lambda t: t.start)
        cur = mine[0]
        for t in mine[1:]:
            if t.start - cur.end <= gap:
                cur = voices.Turn(who, cur.start, max(cur.end, t.end))
            else:
                out.append(cur)
                cur = t
        out.append(cur)
    return sorted(out, key=lambda t: t.start)


def speech_ends(turns: list[voices.Turn], total: float) -> list[float]:
    """Ends of reference speech (any speaker) followed by at least SPEECH_END_SILENCE of silence."""
    spans = sorted((t.start, t.end) for t in turns)
    merged: list[list[float]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    nexts = [m[0] for m in merged[1:]] + [total]
    return [b for (_, b), n in zip(merged, nexts, strict=True) if n - b >= SPEECH_END_SILENCE]


@dataclass
class Result:
    finals: int = 0
    words: int = 0
    premature: int = 0
    turns: int = 0
    latency: list[float] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    resumed: int = 0
    capped: int = 0  # finals as long as the max_utterance_s cut makes them (>= max_utterance_s - cut_search_s)
    cuts: list[str] = field(default_factory=list)  # "who@end: text" of each premature final

    def add(self, r: Result) -> None:
        self.finals += r.finals
        self.words += r.words
        self.premature += r.premature
        self.turns += r.turns
        self.latency += r.latency
        self.reasons += r.reasons
        self.resumed += r.resumed
        self.capped += r.capped


def analyse(events: list[tuple[float, dict[str, Any]]], t0: float, turns: list[voices.Turn], total: float) -> Result:
    s = StreamSettings()
    ref = reference_turns(turns, s.endpoint_silence_ms / 1000)
    ends = speech_ends(turns, total)
    r = Result(turns=len(ref))
    finals: list[tuple[float, float]] = []  # (arrival, end)
    for when, body in events:
        kind, e = body.get("type"), body.get("data") or {}
        if kind == "end_of_turn":  # silence: held by an "incomplete", or the fixed endpoint
            reason = str(e.get("reason"))
            if reason == "silence":
                judged = e.get("probability") is not None
                reason = "silence, judged incomplete" if judged else "silence, no judgment in time"
            r.reasons[reason] += 1
        elif kind == "turn_resumed":
            r.resumed += 1
        if kind != "transcript_response" or not e.get("isFinal"):
            continue
        text = e.get("payload", {}).get("content", "")
        if not text.strip():
            continue
        end = e["duration"]["timeOffset"] + e["duration"]["duration"] - s.postroll_ms / 1000
        finals.append((when, end))
        r.finals += 1
        r.words += len(text.split())
        r.capped += e["duration"]["duration"] >= s.max_utterance_s - s.cut_search_s
        cut = [t for t in ref if t.start + START_GUARD < end < t.end - GOES_ON]
        if cut:
            r.premature += 1
            r.cuts.append(f"{cut[0].speaker} cut at {end:.1f} s (turn {cut[0].start:.1f}-{cut[0].end:.1f} s): "
                          f"{text!r}")
    for x in ends:
        near = [(abs(end - x), when) for when, end in finals if abs(end - x) <= MATCH]
        if near:
            r.latency.append(min(near)[1] - (t0 + x))
    return r


def run_one(d: DaemonProc, sub: Subscriber, audio: np.ndarray, mode: str) -> tuple[str, float]:
    pcm = realspeech.pcm16(np.concatenate([np.zeros(int(LEAD_S * RATE), np.float32), audio,
                                           np.zeros(int(TAIL_S * RATE), np.float32)]))
    starts: dict[str, float] = {}
    feed(d, Timeline(pcm, [], []), 0.0, starts, mode)
    (cid, t0), = starts.items()
    deadline = time.monotonic() + 60
    while cid not in sub.got.completed and time.monotonic() < deadline:
        time.sleep(0.1)
    return cid, t0


def row(name: str, mode: str, r: Result) -> str:
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(r.reasons.items())) or "-"
    return (f"| {name} | {mode} | {r.premature} | {r.finals} | {r.turns} | {r.finals / max(r.turns, 1):.2f} | "
            f"{r.words / max(r.finals, 1):.1f} | {pct(r.latency, 50):.3f} / {pct(r.latency, 95):.3f} s "
            f"({len(r.latency)}) | {r.capped} | {reasons} | {r.resumed} | {load()} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="*", default=DEFAULT_SETS,
                    help=f"conversations of heldout_voices.REAL_SETS, or 'all' ({', '.join(heldout_voices.REAL_SETS)})")
    ap.add_argument("--end-of-turn", nargs="*", default=["fixed", "semantic"], choices=["fixed", "semantic"])
    ap.add_argument("--model", default="tiny.en")
    args = ap.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    names = list(heldout_voices.REAL_SETS) if args.sets == ["all"] else args.sets
    p = heldout_voices.Pyannote()
    convs = {n: heldout_voices.join([p.recording(u) for u in heldout_voices.REAL_SETS[n]]) for n in names}
    seconds = sum(len(a) for a, _ in convs.values()) / RATE
    print(f"conversations: {', '.join(names)}; {seconds:.1f} s of audio per mode, {len(args.end_of_turn)} modes; "
          f"model {args.model}; {os.cpu_count()} CPUs; load average before: {load()}")
    print("\n| conversation | end of turn | premature finals | finals | reference turns | finals per turn "
          "| words per final | speech end -> final p50 / p95 (n) | finals >= 15 s (length cut) | end_of_turn reasons "
          "| turn_resumed | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    totals = {m: Result() for m in args.end_of_turn}
    cuts: list[str] = []
    with tempfile.TemporaryDirectory(prefix="symbld-bench-turns-") as tmp:
        d = DaemonProc(Path(tmp) / "d", config=f'[engine.local]\nmodel = "{args.model}"\n').start()
        sub = Subscriber(d.events)
        try:
            time.sleep(0.5)  # the SUB connects before the first event
            for name, (audio, turns) in convs.items():
                shifted = [voices.Turn(t.speaker, t.start + LEAD_S, t.end + LEAD_S) for t in turns]
                for mode in args.end_of_turn:
                    cid, t0 = run_one(d, sub, audio, mode)
                    r = analyse(sub.got.events.get(cid, []), t0, shifted, LEAD_S + len(audio) / RATE + TAIL_S)
                    totals[mode].add(r)
                    cuts += [f"  {name}, {mode}: {c}" for c in r.cuts]
                    print(row(name, mode, r), flush=True)
        finally:
            sub.close()
            d.stop()
    for mode, r in totals.items():
        print(row("all", mode, r))
    if {"fixed", "semantic"} <= set(totals):
        fixed, sem = totals["fixed"], totals["semantic"]
        rate = (sem.premature / max(sem.finals, 1)) / max(fixed.premature / max(fixed.finals, 1), 1e-9)
        print(f"\npremature finals semantic / fixed: {sem.premature} / {fixed.premature} = "
              f"{sem.premature / max(fixed.premature, 1e-9):.2f}x (per final: {rate:.2f}x); "
              f"finals {sem.finals} / {fixed.finals}; speech end -> final p50 "
              f"{pct(sem.latency, 50):.3f} / {pct(fixed.latency, 50):.3f} s")
    print("\npremature finals:\n" + ("\n".join(cuts) or "  none"))
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
