"""Benchmark the local engine against plain faster-whisper on the same real recorded speech.

    python bench/bench_engine.py                    # all runs, 1 and 4 live streams
    python bench/bench_engine.py --streams 1 2 4 6  # which live stream counts to try

The audio is the real-speech set of tests/realspeech.py (recordings of people with their
transcripts from Debian's pocketsphinx-testdata; nothing synthesised). In one process:

1. per copy (clean, 10 dB noise, 8 kHz telephone): the plain model decoding each whole clip
   (beam 5, T=0, the same tiny.en), and on the whole stream as one file (what ``--fast`` files are
   compared with), against the engine fed as fast as possible — WER and RTF side by side, ratios;
2. live streams fed in real time (``--streams`` counts, staggered): speech end -> final latency,
   from the *true* end of speech (the clip's own trailing silence trimmed) to the final's emit
   callback, p50/p95, against the floor measured in the same run: endpoint silence + the time
   to decode that utterance alone on an idle engine; onset -> first interim; whether the
   streams kept up (every final within 2 s of its speech end).
Prints figures and ratios; asserts nothing. On a shared machine all figures include its load.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import realspeech  # noqa: E402
from speechgen import wer  # noqa: E402

from symbld.engines.base import StreamConfig  # noqa: E402
from symbld.engines.local import LocalEngine  # noqa: E402

RATE = realspeech.RATE
CHUNK = 640  # 20 ms
GAP_S = 1.5  # silence between clips


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def plain(engine: LocalEngine, audio: np.ndarray) -> str:
    segs, _ = engine.recognizer._model.transcribe(
        audio, language="en", beam_size=5, temperature=0.0, condition_on_previous_text=False, vad_filter=False
    )
    return " ".join(s.text.strip() for s in segs)


def layout(clips: list[np.ndarray]) -> tuple[bytes, list[tuple[float, float]]]:
    """The clips with gaps as one stream; each clip's true speech (start, end) in stream seconds."""
    gap = np.zeros(int(GAP_S * RATE), np.float32)
    parts, spans, pos = [], [], 0.0
    for a in clips:
        s, e = realspeech.speech_bounds(a)
        spans.append((pos + GAP_S + s, pos + GAP_S + e))
        parts += [gap, a]
        pos += GAP_S + len(a) / RATE
    parts.append(gap)
    return realspeech.pcm16(np.concatenate(parts)), spans


def run_stream(engine: LocalEngine, name: str, pcm: bytes, realtime: bool) -> tuple[list, float]:
    events: list[tuple[float, str, dict]] = []
    stream = engine.open(
        StreamConfig(connection_id=name, conversation_id=name), lambda t, d: events.append((time.monotonic(), t, d))
    )
    t0 = time.monotonic()
    for i in range(0, len(pcm), CHUNK):
        stream.feed(pcm[i : i + CHUNK])
        if realtime:
            delay = t0 + (i + CHUNK) / 2 / RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    stream.finish()
    stream.close()
    return events, t0


def texts_per_clip(events: list, spans: list[tuple[float, float]]) -> list[str]:
    out = [[] for _ in spans]
    for _, t, d in events:
        if t == "transcript_response" and d["isFinal"] and d["punctuated"]["transcript"]:
            mid = d["duration"]["timeOffset"] + d["duration"]["duration"] / 2
            k = min(range(len(spans)), key=lambda j: abs((spans[j][0] + spans[j][1]) / 2 - mid))
            out[k].append(d["punctuated"]["transcript"])
    return [" ".join(x) for x in out]


def accuracy(engine: LocalEngine, clips: list[realspeech.Clip]) -> None:
    print("| copy | plain WER | engine WER | plain RTF, per clip | plain RTF, one file | engine RTF (fast feed) "
          "| ratio to per clip | ratio to one file |")
    print("|---|---|---|---|---|---|---|---|")
    refs = [c.text for c in clips]
    for kind in realspeech.VARIANTS:
        audio = [realspeech.variant(c.audio, kind, seed=n) for n, c in enumerate(clips)]
        speech_s = sum(len(a) for a in audio) / RATE
        t0 = time.perf_counter()
        plain_hyps = [plain(engine, a) for a in audio]
        plain_rtf = (time.perf_counter() - t0) / speech_s
        pcm, spans = layout(audio)
        t0 = time.perf_counter()
        plain(engine, np.frombuffer(pcm, "<i2").astype(np.float32) / 32768)  # the whole stream as one file
        file_rtf = (time.perf_counter() - t0) / speech_s
        t0 = time.perf_counter()
        events, _ = run_stream(engine, f"fast-{kind}", pcm, realtime=False)
        engine_rtf = (time.perf_counter() - t0) / speech_s
        engine_hyps = texts_per_clip(events, spans)
        print(
            f"| {kind} | {wer(refs, plain_hyps):.1%} | {wer(refs, engine_hyps):.1%} | {plain_rtf:.3f} "
            f"| {file_rtf:.3f} | {engine_rtf:.3f} | {engine_rtf / plain_rtf:.2f}x | {engine_rtf / file_rtf:.2f}x |"
        )


def floor(engine: LocalEngine, clips: list[realspeech.Clip]) -> list[float]:
    """Endpoint silence + the idle decode time of each clip's utterance."""
    endpoint = float(engine.config.get("endpoint_silence_ms", 350)) / 1000
    out = []
    for c in clips:
        s, e = realspeech.speech_bounds(c.audio)
        audio = c.audio[max(0, int((s - 0.5) * RATE)) : int((e + 0.1) * RATE)]
        t0 = time.perf_counter()
        engine.recognizer.transcribe(audio, final=True)
        out.append(endpoint + time.perf_counter() - t0)
    return out


def live(engine: LocalEngine, clips: list[realspeech.Clip], streams: int) -> None:
    pcm, spans = layout([c.audio for c in clips])
    results: dict[int, tuple[list, float]] = {}

    def worker(k: int) -> None:
        time.sleep(0.7 * k)  # staggered, as sessions start in real life
        results[k] = run_stream(engine, f"rt{streams}-{k}", pcm, realtime=True)

    cpu0, wall0 = time.process_time(), time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0)
    lat, first_interim, hyps = [], [], []
    for events, t0 in results.values():
        hyps.append(texts_per_clip(events, spans))
        seen: set[int] = set()
        for when, t, d in events:
            if t != "transcript_response" or not d["punctuated"]["transcript"]:
                continue
            mid = d["duration"]["timeOffset"] + d["duration"]["duration"] / 2
            k = min(range(len(spans)), key=lambda j: abs((spans[j][0] + spans[j][1]) / 2 - mid))
            if not d["isFinal"] and k not in seen:
                seen.add(k)
                first_interim.append(when - (t0 + spans[k][0]))
            end = d["duration"]["timeOffset"] + d["duration"]["duration"]
            if d["isFinal"] and abs(end - spans[k][1]) < 0.6:  # the final that closes the clip
                lat.append(when - (t0 + spans[k][1]))
    refs = [c.text for c in clips]
    kept_up = bool(lat) and max(lat) < 2.0
    print(
        f"| {streams} | {pct(lat, 50):.3f} | {pct(lat, 95):.3f} | {pct(first_interim, 50):.3f} "
        f"| {np.mean([wer(refs, h) for h in hyps]):.1%} | {cpu:.2f} | {'yes' if kept_up else 'no'} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, nargs="*", default=[1, 4])
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    clips = realspeech.clips()
    speech = sum(len(c.audio) for c in clips) / RATE
    print(f"audio: {len(clips)} real recordings, {speech:.1f} s, {sum(len(c.text.split()) for c in clips)} words")
    engine = LocalEngine({"model": args.model, "num_workers": args.workers, "cpu_threads": 1})
    engine.load()
    print(f"engine: model {engine.describe()['model']}, {args.workers} workers; load {engine.load_seconds:.2f} s")
    plain(engine, clips[0].audio)  # warm-up
    accuracy(engine, clips)
    fl = floor(engine, clips)
    print(f"\nfloor (endpoint + idle decode of the utterance): p50 {pct(fl, 50):.3f} s  p95 {pct(fl, 95):.3f} s\n")
    print(
        "| live streams | speech end -> final p50 (s) | p95 (s) | onset -> first interim p50 (s) | WER "
        "| CPU cores | kept up |"
    )
    print("|---|---|---|---|---|---|---|")
    for n in args.streams:
        live(engine, clips, n)
    engine.close()


if __name__ == "__main__":
    main()
