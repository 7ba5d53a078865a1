"""Benchmark the offline insights: quality table and cost per message.

    python bench/bench_insights.py [--rounds 5]

Prints (markdown) precision/recall/F1 per insight type on tests/data/insights_eval.jsonl
(per split, and recogniser-style vs punctuated rows), then ms per message p50/p99 for the
whole analysis (insights + topics + trackers, on the calling thread and through the
Analyzer's worker), the cost with Symbl's maximum tracker load (500 x 50 terms) and of a
10,000-word message, and the peak memory. No assertions: figures only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
import uuid
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from symbld.engines.base import StreamConfig
from symbld.insights import Analyzer
from symbld.insights.evaluation import TYPES, load, score

EVAL = Path(__file__).resolve().parent.parent / "tests" / "data" / "insights_eval.jsonl"
TRACKERS = [
    {"name": "Pricing", "vocabulary": ["price increase", "discount", "pricing", "cost"]},
    {"name": "Hiring", "vocabulary": ["hire engineers", "headcount", "new hires"]},
    {"name": "Legal", "vocabulary": ["contract", "lawyers", "legal"]},
]


def message(text: str) -> dict:
    return {"id": str(uuid.uuid4()), "from": {"id": "u1", "name": "Jane", "userId": "jane@example.com"},
            "payload": {"content": text, "contentType": "text/plain"}}


def quality_table(rows: list[dict]) -> None:
    typed = [r for r in rows if not r["split"].startswith("recognised")]
    groups = [
        ("dev (rules written against it)", [r for r in rows if r["split"] == "dev"]),
        ("held-out", [r for r in rows if r["split"] == "heldout"]),
        ("stress (written after; see docs)", [r for r in rows if r["split"] == "stress"]),
        ("research §2 sentences (another author)", [r for r in rows if r["split"] == "research"]),
        ("typed, recogniser style (lower case, no punctuation)", [r for r in typed if r["asr"]]),
        ("typed, punctuated", [r for r in typed if not r["asr"]]),
        ("typed, all", typed),
        ("espeak-ng -> whisper output (held-out+stress+research)", [r for r in rows if r["split"] == "recognised"]),
        ("same, lower-cased without punctuation", [r for r in rows if r["split"] == "recognised_norm"]),
    ]
    print("| set | n | " + " | ".join(f"{t} P / R / F1" for t in TYPES) + " |")
    print("|---|---|" + "---|" * len(TYPES))
    for name, subset in groups:
        s = score(subset)
        cells = [f"{s[t]['p']:.2f} / {s[t]['r']:.2f} / {s[t]['f1']:.2f}" for t in TYPES]
        print(f"| {name} | {len(subset)} | " + " | ".join(cells) + " |")


def percentiles(samples: list[float]) -> str:
    samples = sorted(samples)
    p50 = statistics.median(samples)
    p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
    return f"p50 {p50:.3f} ms, p99 {p99:.3f} ms, max {samples[-1]:.3f} ms (n={len(samples)})"


def config(trackers: list[dict]) -> StreamConfig:
    return StreamConfig(connection_id="bench", conversation_id="bench", trackers=trackers,
                        timezone_offset_minutes=0, started_at=time.time())


def per_message_direct(texts: list[str], trackers: list[dict], rounds: int) -> list[float]:
    """The analysis itself, timed on this thread (the worker's code path, without the hop)."""
    a = Analyzer(config(trackers), lambda t, d: None)
    samples = []
    try:
        for _ in range(rounds):
            for text in texts:
                m = [message(text)]
                t0 = time.perf_counter()
                a._analyse_messages(m)  # the worker's unit of work
                samples.append((time.perf_counter() - t0) * 1000)
    finally:
        a.close()
    return samples


def per_message_worker(texts: list[str], trackers: list[dict]) -> list[float]:
    """From on_messages() to everything emitted (flush), through the worker thread."""
    a = Analyzer(config(trackers), lambda t, d: None)
    samples = []
    try:
        for text in texts:
            t0 = time.perf_counter()
            a.on_messages([message(text)])
            a.flush(10.0)
            samples.append((time.perf_counter() - t0) * 1000)
    finally:
        a.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rows = load(EVAL)
    texts = [r["text"] for r in rows if not r["split"].startswith("recognised")]
    print(f"## Quality on {EVAL.name} ({len(rows)} utterances, threshold 0.5)\n")
    quality_table(rows)

    print("\n## Cost per message (insights + topics + trackers)\n")
    direct = per_message_direct(texts, TRACKERS, args.rounds)
    print(f"- analysis, 3 trackers: {percentiles(direct)}")
    print(f"- on_messages -> flush through the worker, 3 trackers: {percentiles(per_message_worker(texts, TRACKERS))}")
    conversation = [texts[i % len(texts)] + f" Item {i // len(texts)} of the plan." for i in range(1000)]
    long_call = per_message_direct(conversation, TRACKERS, 1)
    print(f"- a 1,000-message conversation, last 200 messages: {percentiles(long_call[-200:])}")
    big = [{"name": f"tracker {i}", "vocabulary": [f"term{i} word{j}" for j in range(49)] + [f"budget {i}"]}
           for i in range(500)]
    t1 = time.perf_counter()
    Analyzer(config(big), lambda t, d: None).close()
    print(f"- 500 trackers x 50 terms: setup {(time.perf_counter() - t1) * 1000:.1f} ms; "
          f"analysis {percentiles(per_message_direct(texts, big, 1))}")
    huge = " ".join(["please", "send", "the", "report", "i", "will", "tomorrow", "asdf"] * 1250)
    print(f"- a 10,000-word message: {percentiles(per_message_direct([huge], TRACKERS, 5))}")

    print("\n## Memory\n")
    rss0 = psutil.Process().memory_info().rss
    tracemalloc.start()
    per_message_direct(conversation, TRACKERS, 1)
    per_message_direct(texts, big, 1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = psutil.Process().memory_info().rss
    print(f"- peak Python allocations (1,000-message call, then 500x50 trackers): {peak / 1e6:.1f} MB; "
          f"process RSS {rss1 / 1e6:.0f} MB (+{(rss1 - rss0) / 1e6:.1f} MB during that run)")


if __name__ == "__main__":
    main()
