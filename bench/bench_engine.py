"""Benchmark the local engine against a plain faster-whisper decode of the same espeak audio.

    python bench/bench_engine.py                 # 15 sentences, all three runs
    python bench/bench_engine.py -n 8 --streams 4 --no-baseline

Runs, in one process:
1. baseline: plain ``WhisperModel.transcribe`` per sentence (beam 5, T=0, word timestamps,
   2 threads): decode time / audio time, WER;
2. engine, fed as fast as possible (20 ms chunks, 1 s gaps): wall time / audio time, WER;
3. engine, fed in real time by ``--streams`` concurrent streams: speech end -> final latency
   (p50 / p99 / max; includes the endpoint silence), interims per utterance, WER.
Prints figures and ratios; asserts nothing.
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

from speechgen import SENTENCES, pcm16, silence, synth, wer  # noqa: E402

from symbld.engines.base import StreamConfig  # noqa: E402
from symbld.engines.local import LocalEngine  # noqa: E402
from symbld.engines.local.recognizer import default_whisper_model_dir  # noqa: E402

RATE = 16000
CHUNK = 640
PAD = 0.3  # speechgen's silence at each end of a sentence


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def baseline(sentences: list[str]) -> tuple[float, float]:
    from faster_whisper import WhisperModel

    model = WhisperModel(
        str(default_whisper_model_dir()), device="cpu", compute_type="int8", cpu_threads=2, local_files_only=True
    )
    audios = [np.frombuffer(pcm16(synth(s)), "<i2").astype(np.float32) / 32768 for s in sentences]

    def decode(a: np.ndarray) -> str:
        segs, _ = model.transcribe(
            a,
            language="en",
            beam_size=5,
            temperature=0.0,
            vad_filter=False,
            condition_on_previous_text=False,
            word_timestamps=True,
        )
        return " ".join(s.text.strip() for s in segs)

    decode(audios[0])  # warm-up
    t0 = time.perf_counter()
    hyps = [decode(a) for a in audios]
    elapsed = time.perf_counter() - t0
    audio_s = sum(len(a) for a in audios) / RATE
    return elapsed / audio_s, wer(sentences, hyps)


def stream_audio(sentences: list[str], gap: float) -> tuple[bytes, list[float]]:
    """The sentences with gaps; returns pcm and each sentence's speech-end time (s)."""
    parts, ends, pos = [], [], 0
    for s in sentences:
        p = pcm16(synth(s)) + silence(gap)
        ends.append((pos + len(p)) / 2 / RATE - gap - PAD)
        parts.append(p)
        pos += len(p)
    return b"".join(parts), ends


def run_stream(engine: LocalEngine, name: str, pcm: bytes, realtime: bool) -> tuple[list, float, float]:
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
    return events, t0, time.monotonic() - t0


def finals(events: list) -> list[dict]:
    return [(w, d) for w, t, d in events if t == "transcript_response" and d["isFinal"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--sentences", type=int, default=15)
    ap.add_argument("--streams", type=int, default=1, help="concurrent real-time streams")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="cpu_threads per decode")
    ap.add_argument("--gap", type=float, default=1.0)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--no-realtime", action="store_true")
    args = ap.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    sentences = (SENTENCES * 2)[: args.sentences]
    pcm, ends = stream_audio(sentences, args.gap)
    audio_s = len(pcm) / 2 / RATE
    speech_s = sum(len(pcm16(synth(s))) / 2 / RATE for s in sentences)
    print(f"audio: {len(sentences)} espeak sentences, {speech_s:.1f} s of clips, stream {audio_s:.1f} s")

    base_rtf = float("nan")
    if not args.no_baseline:
        base_rtf, base_wer = baseline(sentences)
        print(f"baseline faster-whisper (beam 5, words, 2 threads): RTF {base_rtf:.3f}  WER {base_wer:.1%}")

    engine = LocalEngine({"num_workers": args.workers, "cpu_threads": args.threads})
    t0 = time.perf_counter()
    engine.load()
    print(f"engine load: {time.perf_counter() - t0:.2f} s  {engine.describe()}")
    run_stream(engine, "warmup", pcm16(synth(sentences[0])) + silence(0.5), realtime=False)

    events, _, wall = run_stream(engine, "fast", pcm, realtime=False)
    hyps = [d["punctuated"]["transcript"] for _, d in finals(events)]
    rtf_stream = wall / audio_s
    rtf_speech = wall / speech_s
    print(
        f"engine fast feed: wall {wall:.2f} s  RTF {rtf_stream:.3f} (of stream) / {rtf_speech:.3f} (of clips)"
        f"  WER {wer(' '.join(sentences), ' '.join(hyps)):.1%}  finals {len(hyps)}"
    )
    if base_rtf == base_rtf:
        print(f"ratio engine/baseline RTF (clip time): {rtf_speech / base_rtf:.2f}x")

    if args.no_realtime:
        engine.close()
        return
    results: dict[int, tuple[list, float]] = {}

    def worker(k: int) -> None:
        time.sleep(0.8 * k)  # staggered, as sessions start in real life
        ev, start, _ = run_stream(engine, f"rt{k}", pcm, realtime=True)
        results[k] = (ev, start)

    print(f"engine real-time feed, {args.streams} stream(s), ~{audio_s:.0f} s ...", flush=True)
    cpu0 = time.process_time()
    wall0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0)
    lat, interims, all_hyps = [], [], []
    for ev, start in results.values():
        fin = finals(ev)
        all_hyps.append(" ".join(d["punctuated"]["transcript"] for _, d in fin))
        for w, d in fin:
            end = d["duration"]["timeOffset"] + d["duration"]["duration"]
            speech_end = min(ends, key=lambda e, end=end: abs(e - end))  # the sentence this final closes
            lat.append(w - (start + speech_end))
            interims.append(
                sum(1 for _, t, x in ev if t == "transcript_response" and not x["isFinal"] and x["id"] == d["id"])
            )
    print(
        f"speech end -> final: p50 {pct(lat, 50):.3f} s  p99 {pct(lat, 99):.3f} s  max {max(lat):.3f} s"
        f"  (includes {engine.config.get('endpoint_silence_ms', 350)} ms endpoint silence)"
    )
    print(
        f"interims per utterance: mean {np.mean(interims):.2f}  finals {len(lat)}  "
        f"WER {wer([' '.join(sentences)] * len(all_hyps), all_hyps):.1%}  CPU {cpu:.2f} cores"
    )
    engine.close()


if __name__ == "__main__":
    main()
