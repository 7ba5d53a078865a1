"""Who said which words: the diarization of a live stream, on conversations of real people joined with known turns.

    python bench/bench_diarization.py          # every set, fed as fast as the engine takes it
    python bench/bench_diarization.py --live   # also the first set fed in real time

The sets (tests/voices.py; every recording is a real person, from Debian packages, nothing
synthesised) are built by joining single-speaker recordings of different people with a 1 s
pause, so each word's true speaker is known from where its time falls:

- ``2p-reader-amateur``: the LibriVox reader of pocketsphinx-testdata (5 clips) alternating with
  radio amateur ve9qrp (codec2-examples ``wav/ve9qrp.wav``, 7 s slices);
- ``2p-cards-vk5qi``: pocketsphinx-testdata's card reader (5 short clips, 1-3.5 s) alternating
  with radio amateur vk5qi (codec2-examples ``wav/vk5qi.wav``, 2.6 s slices): short turns both sides;
- ``4p-round``: four people in turn, three rounds: the LibriVox reader, ve9qrp, vk5qi
  (``wav/vk5qi.wav``) and the card reader.

Caveats: these are read or radio speech with no overlap, not meetings; the codec2 samples are
8 kHz (telephone band) while the pocketsphinx ones are 16 kHz, which makes voices easier to tell
apart than in one room; the clustering thresholds were chosen on prints of these recordings
(docs/diarization.md), so these figures are not from an unseen set.

The stream runs through the local engine (tiny.en, VAD) and the same ``Labeller`` a session uses
(symbld/diarization/labeller.py), with its ``speaker_revision`` events applied as the Conversation
API applies them. Figures: words (from the messages' word times) and messages attributed to the
right speaker under the best one-to-one mapping of labels to people; the speaker count found; DER
(diarization error rate, pyannote.metrics, no collar, overlap scored) with its parts, the reference
being each joined clip as one turn of its person and the hypothesis each message's span under its
label (so silence inside a clip the recogniser left out counts as missed speech: the confusion part
is what diarization itself gets wrong); the diarization's CPU time per second of audio (one stream),
against the engine's own CPU for the same stream. Baseline in the same run: every word given one
label (what symbld said before: ``from: {}``, i.e. one undivided stream), for words and for DER. DER
needs ``pyannote.metrics`` (the ``bench`` extra: pure Python, no torch). Known voices: the 4-person
set again with two of its people enrolled from clips it does not hold: their words named right, and
the two strangers' words given an enrolled name (must be none). Asserts nothing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import voices  # noqa: E402

from symbld.core import speakers  # noqa: E402
from symbld.diarization import options  # noqa: E402
from symbld.diarization.labeller import Labeller  # noqa: E402
from symbld.engines.base import StreamConfig  # noqa: E402
from symbld.engines.local import LocalEngine  # noqa: E402

RATE = voices.RATE
CHUNK = 640  # 20 ms


def reader(n: str) -> np.ndarray:
    return voices.load(voices.SPHINX / "librivox" / f"sense_and_sensibility_01_austen_64kb-{n}.wav")


def cards(n: int) -> np.ndarray:
    return voices.load(voices.SPHINX / "cards" / f"{n:03d}.wav")


def codec2(name: str, seconds: float, k: int) -> np.ndarray:
    return voices.load(voices.CODEC2 / "wav" / f"{name}.wav", seconds=seconds, offset=k * seconds)


READS = ("0870", "0880", "0890", "0920", "0930")


def sets() -> dict[str, list[tuple[str, np.ndarray]]]:
    two_a = [p for i, r in enumerate(READS) for p in (("reader", reader(r)), ("ve9qrp", codec2("ve9qrp", 7.0, i)))]
    two_b = [p for i in range(5) for p in (("cards", cards(i + 1)), ("vk5qi", codec2("vk5qi", 2.6, i)))]
    four = [p for i in range(3) for p in (("reader", reader(READS[i])), ("ve9qrp", codec2("ve9qrp", 7.0, 5 + i)),
                                          ("vk5qi", codec2("vk5qi", 4.0, i)), ("cards", cards(i + 1)))]
    return {"2p-reader-amateur": two_a, "2p-cards-vk5qi": two_b, "4p-round": four}


class Run:
    """One stream: the engine's events through a Labeller, as Session.emit does."""

    def __init__(self, engine: LocalEngine, name: str, known: dict[str, dict[str, Any]] | None = None,
                 diarize: bool = True) -> None:
        self.diarize = diarize
        self.finals: list[tuple[float, float]] = []  # (middle of the final's audio, monotonic time published)
        self.events: list[dict[str, Any]] = []
        self.cpu = 0.0
        self.delays: list[float] = []  # wall seconds the labels added to each final (its transcript + messages)
        self._lock = threading.Lock()
        settings = options.resolve({}, {}, "file", {})
        assert settings is not None, "diarization unavailable: install symbld[diarize]"
        self.labeller = Labeller(name, settings, known)
        config = StreamConfig(connection_id=name, conversation_id=name, started_at=1.79e9,
                              extra={"on_utterance": self.labeller.prefetch} if diarize else {})  # as Session does
        self.stream = engine.open(config, self.emit)

    def emit(self, etype: str, data: dict[str, Any]) -> None:
        t, w = time.thread_time(), time.perf_counter()
        data, revisions = self.labeller.label(etype, data) if self.diarize else (data, [])
        if etype == "transcript_response" and data.get("isFinal"):
            d = data["duration"]
            self.finals.append((d["timeOffset"] + d["duration"] / 2, time.monotonic()))
        with self._lock:
            self.cpu += time.thread_time() - t  # clustering here; prints on any thread: labeller.cpu_seconds
            if etype == "transcript_response" and data.get("isFinal"):
                self.delays.append(time.perf_counter() - w)
            elif etype == "message_response" and self.delays:
                self.delays[-1] += time.perf_counter() - w
            for e, d in ((etype, data), *((speakers.REVISION, r) for r in revisions)):
                self.events.append({"type": e, "data": json.loads(json.dumps(d))})

    def feed(self, pcm: bytes, live: bool) -> None:
        self.t0 = t0 = time.monotonic()
        for i in range(0, len(pcm), CHUNK):
            self.labeller.feed(pcm[i : i + CHUNK])
            self.stream.feed(pcm[i : i + CHUNK])
            if live:
                ahead = (i + CHUNK) / 2 / RATE - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        self.stream.finish()
        self.stream.close()


def words_of(events: list[dict[str, Any]]) -> list[tuple[float, str, str]]:
    """(middle time, label id, message id) per word, revisions applied as the Conversation API does."""
    out = []
    history = [{"type": "connection_started", "connectionId": "x", "data": {}}, *events]
    for e in speakers.attribute_history(history):
        if e["type"] != "message_response":
            continue
        for m in e["data"]["messages"]:
            label = (m.get("from") or {}).get("id", "")
            for w in json.loads(m["metadata"]["words"]):
                mid = (_secs(w["startTime"]) + _secs(w["endTime"])) / 2
                out.append((mid, label, m["id"]))
    return out


def spans_of(events: list[dict[str, Any]]) -> list[tuple[float, float, str]]:
    """(start, end, label id) of every message, revisions applied."""
    history = [{"type": "connection_started", "connectionId": "x", "data": {}}, *events]
    return [(m["duration"]["timeOffset"], m["duration"]["timeOffset"] + m["duration"]["duration"],
             (m.get("from") or {}).get("id", ""))
            for e in speakers.attribute_history(history) if e["type"] == "message_response"
            for m in e["data"]["messages"]]


def der(turns: list[voices.Turn], spans: list[tuple[float, float, str]]) -> dict[str, float]:
    """pyannote.metrics' DER (no collar, overlap scored) and its parts, as fractions of reference speech."""
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    reference, hypothesis = Annotation(), Annotation()
    end = max([turns[-1].end + 1.0, *(b for _, b, _ in spans)])  # the whole audio (voices.join's last pause)
    uem = Timeline([Segment(0.0, end)])
    for u in turns:
        reference[Segment(u.start, u.end)] = u.speaker
    for i, (start, end, label) in enumerate(spans):
        if end > start:
            hypothesis[Segment(start, end), str(i)] = label
    parts = DiarizationErrorRate(collar=0.0, skip_overlap=False)(reference, hypothesis, uem=uem, detailed=True)
    total = parts["total"] or 1.0
    return {"der": parts["diarization error rate"], "confusion": parts["confusion"] / total,
            "missed": parts["missed detection"] / total, "falseAlarm": parts["false alarm"] / total}


def _secs(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() - 1.79e9


def truth(turns: list[voices.Turn], t: float) -> str:
    return min(turns, key=lambda u: 0 if u.start <= t <= u.end else min(abs(t - u.start), abs(t - u.end))).speaker


def best_mapping(pairs: list[tuple[str, str]]) -> tuple[int, dict[str, str]]:
    """Most (label, person) pairs right under a one-to-one map of labels to people (brute force:
    a handful of speakers)."""
    labels = sorted({h for h, _ in pairs})
    people = sorted({r for _, r in pairs})
    best, best_map = -1, {}
    slots = people + [""] * max(0, len(labels) - len(people))
    for perm in itertools.permutations(slots, len(labels)):
        mapping = dict(zip(labels, perm, strict=True))
        right = sum(1 for h, r in pairs if mapping[h] == r)
        if right > best:
            best, best_map = right, mapping
    return best, best_map


def score(events: list[dict[str, Any]], turns: list[voices.Turn]) -> dict[str, Any]:
    words = words_of(events)
    pairs = [(label, truth(turns, t)) for t, label, _ in words]
    right, mapping = best_mapping(pairs)
    by_message: dict[str, tuple[str, list[str]]] = {}
    for t, label, mid in words:
        by_message.setdefault(mid, (label, []))[1].append(truth(turns, t))
    msg_right = sum(1 for label, people in by_message.values()
                    if mapping.get(label) == max(set(people), key=people.count))
    baseline, _ = best_mapping([("one", r) for _, r in pairs])
    spans = spans_of(events)
    rates = der(turns, spans)
    rates["baseline"] = der(turns, [(a, b, "one") for a, b, _ in spans])["der"]
    return {"der": rates, "words": len(pairs), "right": right, "baseline": baseline, "messages": len(by_message),
            "messagesRight": msg_right, "found": len({h for h, _ in pairs}), "people": len({r for _, r in pairs}),
            "revisions": sum(1 for e in events if e["type"] == speakers.REVISION)}


def run_set(engine: LocalEngine, name: str, parts: list[tuple[str, np.ndarray]], live: bool) -> None:
    audio, turns = voices.join(parts)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    run = Run(engine, name)
    cpu0, t0 = time.process_time(), time.monotonic()
    run.feed(pcm, live)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    run.cpu = run.labeller.cpu_seconds + run.cpu  # prints (whichever thread took them) + clustering
    s = score(run.events, turns)
    seconds = len(audio) / RATE
    pct = 100 * s["right"] / max(s["words"], 1)
    base = 100 * s["baseline"] / max(s["words"], 1)
    print(f"{name:18} {'live' if live else 'fast':4}  {seconds:6.1f} s audio  words {s['words']:4}  "
          f"right {pct:5.1f} % (one-label baseline {base:5.1f} %, x{pct / max(base, 1e-9):.2f})  "
          f"messages {s['messagesRight']}/{s['messages']}  speakers found {s['found']} of {s['people']}  "
          f"revisions {s['revisions']}")
    print(f"{'':18} {'':4}  diarization CPU {run.cpu:.2f} s = {run.cpu / seconds:.3f} core-s per audio s  "
          f"(whole stream CPU {cpu:.2f} s, diarization share x{run.cpu / max(cpu, 1e-9):.2f}; wall {wall:.1f} s)")
    r = s["der"]
    print(f"{'':18} {'':4}  DER {100 * r['der']:.1f} % (confusion {100 * r['confusion']:.1f} %, missed "
          f"{100 * r['missed']:.1f} %, false alarm {100 * r['falseAlarm']:.1f} %; one-label baseline "
          f"{100 * r['baseline']:.1f} %, x{r['der'] / max(r['baseline'], 1e-9):.2f})")
    d = sorted(run.delays)
    print(f"{'':18} {'':4}  added to each final: p50 {1000 * float(np.percentile(d, 50)):.0f} ms  "
          f"p95 {1000 * float(np.percentile(d, 95)):.0f} ms  ({len(d)} finals)")


def known_voices(engine: LocalEngine) -> None:
    """Two of the four people enrolled from clips the set does not hold; the other two are strangers.
    Figures: each enrolled person's words given their name, and strangers' words given any enrolled name."""
    from symbld.diarization import embedder

    book = {}
    for name, audio in (("reader", np.concatenate([reader("0920"), reader("0930")])),
                        ("cards", np.concatenate([cards(4), cards(5)]))):
        vec = embedder.embed(audio)
        assert vec is not None
        book[name] = {"userId": name, "print": vec.tolist()}
    parts = sets()["4p-round"]
    audio, turns = voices.join(parts)
    run = Run(engine, "known", book)
    run.feed((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes(), live=False)
    history = [{"type": "connection_started", "connectionId": "x", "data": {}}, *run.events]
    named: dict[str, list[str]] = {}
    for e in speakers.attribute_history(history):
        if e["type"] == "message_response":
            for m in e["data"]["messages"]:
                for w in json.loads(m["metadata"]["words"]):
                    person = truth(turns, (_secs(w["startTime"]) + _secs(w["endTime"])) / 2)
                    named.setdefault(person, []).append((m.get("from") or {}).get("name", ""))
    for person, names in sorted(named.items()):
        if person in book:
            print(f"known voices  {person:8} enrolled: {names.count(person)}/{len(names)} words named right "
                  f"({100 * names.count(person) / len(names):.0f} %)")
        else:
            wrong = sum(1 for n in names if n in book)
            print(f"known voices  {person:8} stranger: {wrong}/{len(names)} words given an enrolled name")


def live_streams(engine: LocalEngine, count: int, diarize: bool) -> None:
    """``count`` copies of the first set fed in real time at once (1 s apart), as many connections on
    one daemon: speech end → final published, p50/p95 over every turn of every stream."""
    name, parts = next(iter(sets().items()))
    audio, turns = voices.join(parts)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    runs = [Run(engine, f"{name}-{i}", diarize=diarize) for i in range(count)]
    threads = []
    for i, run in enumerate(runs):
        threads.append(threading.Thread(target=run.feed, args=(pcm, True)))
        threads[-1].start()
        if i + 1 < count:
            time.sleep(1.0)  # staggered, as people do not all start talking at once
    for th in threads:
        th.join()
    lags = []
    for run in runs:
        for turn in turns:
            published = [at for mid, at in run.finals if turn.start <= mid <= turn.end]
            if published:
                lags.append(max(published) - (run.t0 + turn.end))
    lags.sort()
    p50, p95 = (float(np.percentile(lags, q)) for q in (50, 95))
    print(f"{count} live streams, diarization {'on ' if diarize else 'off'}: speech end -> final p50 {p50:.2f} s  "
          f"p95 {p95:.2f} s  max {lags[-1]:.2f} s  ({len(lags)} turns; kept up: {'yes' if p95 <= 1.0 else 'no'})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--live", action="store_true", help="also feed the first set in real time")
    ap.add_argument("--quick", action="store_true", help="only the first set")
    ap.add_argument("--streams", type=int, nargs="*", default=[],
                    help="also N live streams at once, with and without diarization (e.g. --streams 4 8)")
    args = ap.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    if not voices.available():
        print("needs pocketsphinx-testdata and codec2-examples (scripts/install-deps.sh)")
        return
    engine = LocalEngine({"num_workers": 2, "cpu_threads": 1})
    engine.load()
    from symbld.diarization import embedder

    t = time.process_time()
    embedder.embed(np.zeros(RATE, np.float32) + 1e-3)  # the model loads once per process
    print(f"speaker model load {time.process_time() - t:.2f} s CPU; 2 decode workers, tiny.en\n")
    chosen = sets()
    if args.quick:
        chosen = dict(list(chosen.items())[:1])
    for name, parts in chosen.items():
        run_set(engine, name, parts, live=False)
    if not args.quick:
        known_voices(engine)
    if args.live:
        name, parts = next(iter(chosen.items()))
        run_set(engine, name, parts, live=True)
    for count in args.streams:
        for diarize in (False, True):
            live_streams(engine, count, diarize)
    engine.close()


if __name__ == "__main__":
    main()
