"""Who said which words: the diarization of a live stream, on conversations of real people joined with known turns.

    python bench/bench_diarization.py          # every set, fed as fast as the engine takes it
    python bench/bench_diarization.py --live   # also the first set fed in real time
    python bench/bench_diarization.py --heldout-only [--live | --live-only]   # the held-out sets (below)
    python bench/bench_diarization.py --quick --streams 8       # 8 live streams at once, diarization off then on

The sets (tests/voices.py; every recording is a real person, from Debian packages, nothing
synthesised) are built by joining single-speaker recordings of different people with a 1 s
pause, so each word's true speaker is known from where its time falls:

- ``2p-reader-amateur``: the LibriVox reader of pocketsphinx-testdata (5 clips) alternating with
  radio amateur ve9qrp (codec2-examples ``wav/ve9qrp.wav``, 7 s slices);
- ``2p-cards-vk5qi``: pocketsphinx-testdata's card reader (5 short clips, 1-3.5 s) alternating
  with radio amateur vk5qi (codec2-examples ``wav/vk5qi.wav``, 2.6 s slices): short turns both sides;
- ``4p-round``: four people in turn, three rounds: the LibriVox reader, ve9qrp, vk5qi
  (``wav/vk5qi.wav``) and the card reader.
- ``2p-quick-turns`` and ``4p-overlap`` (``quick_sets``): the first set with 0.1 s between turns, and
  the four people each starting 0.5 s before the last ends: a speaker changes inside an utterance.

Held-out sets (``--heldout``; bench/heldout_voices.py documents each source): real conversations with
reference turns (RTTM) from the pyannote.audio 4.0.7 sdist on PyPI: a two-person telephone call and
fourteen 30 s AMI meeting excerpts (2-4 people, overlapping speech), excerpts of one meeting joined;
and unseen voices joined, four of them overlapping. None was used to choose a threshold. With
overlapping speech a word is right when its label maps to anyone speaking at its time.

Caveats of the first three sets: they are read or radio speech with no overlap, not meetings; the codec2 samples are
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

from symblctl import protocol  # noqa: E402
from symblctl.revisions import REVISION  # noqa: E402
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


def quick_sets() -> dict[str, tuple[np.ndarray, list[voices.Turn]]]:
    """The same people with no pause the recogniser ends an utterance at (development sets too): the
    first set with 0.1 s between turns, and the four people each starting 0.5 s before the last one ends
    (the recordings added there), so a speaker changes inside an utterance, as in real conversation."""
    import heldout_voices

    s = sets()
    return {"2p-quick-turns": voices.join(s["2p-reader-amateur"], pause=0.1),
            "4p-overlap": heldout_voices.mix(s["4p-round"], overlap=0.5)}


class Run:
    """One stream: the engine's events through a Labeller, as Session.emit does."""

    def __init__(self, engine: LocalEngine, name: str, known: dict[str, dict[str, Any]] | None = None,
                 diarize: bool = True) -> None:
        self.diarize = diarize
        self.finals: list[tuple[float, float]] = []  # (middle of the final's audio, monotonic time published)
        self.events: list[dict[str, Any]] = []
        self.cpu = 0.0
        self.delays: list[float] = []  # wall seconds the labels added to each final (its transcript + messages)
        self.live = False  # fed in real time (finals wait at most 100 ms for their prints), set by feed()
        self._lock = threading.Lock()
        settings = options.resolve(protocol.Start(), "file", {})
        assert settings is not None, "diarization unavailable: install symbld[diarize]"
        self.labeller = Labeller(name, settings, known)
        self.labeller.on_ready = self.settle  # late prints' revisions, as Session does
        config = StreamConfig(connection_id=name, conversation_id=name, started_at=1.79e9,
                              extra={"on_utterance": self.labeller.prefetch} if diarize else {})  # as Session does
        self.stream = engine.open(config, self.emit)

    def emit(self, etype: str, data: dict[str, Any]) -> None:
        t, w = time.thread_time(), time.perf_counter()
        if self.diarize and etype == "transcript_response" and data.get("isFinal"):
            self.labeller.await_prints(data, self.live)  # live: at most 100 ms (Session.emit)
        with self._lock:  # a result and its revisions in order, as Session's lock keeps them
            data, revisions = self.labeller.label(etype, data) if self.diarize else (data, [])
            if etype == "transcript_response" and data.get("isFinal"):
                d = data["duration"]
                self.finals.append((d["timeOffset"] + d["duration"] / 2, time.monotonic()))
            self.cpu += time.thread_time() - t  # clustering here; prints on any thread: labeller.cpu_seconds
            if etype == "transcript_response" and data.get("isFinal"):
                self.delays.append(time.perf_counter() - w)
            elif etype == "message_response" and self.delays:
                self.delays[-1] += time.perf_counter() - w
            for e, d in ((etype, data), *((REVISION, r) for r in revisions)):
                self.events.append({"type": e, "data": json.loads(json.dumps(d))})

    def settle(self) -> None:
        """Late prints came: their revisions (Session._settle_speakers)."""
        with self._lock:
            t = time.thread_time()
            for r in self.labeller.settle():
                self.events.append({"type": REVISION, "data": json.loads(json.dumps(r))})
            self.cpu += time.thread_time() - t

    def feed(self, pcm: bytes, live: bool) -> None:
        self.live = live
        self.t0 = t0 = time.monotonic()
        for i in range(0, len(pcm), CHUNK):
            self.labeller.feed(pcm[i : i + CHUNK])
            self.stream.feed(pcm[i : i + CHUNK])
            if live:
                ahead = (i + CHUNK) / 2 / RATE - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        self.stream.finish()
        if self.diarize:
            self.labeller.wait_pending()
            self.settle()
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


def der(turns: list[voices.Turn], spans: list[tuple[float, float, str]], end: float | None = None) -> dict[str, float]:
    """pyannote.metrics' DER (no collar, overlap scored) and its parts, as fractions of reference speech;
    evaluated over the whole audio (``end``: its length, by default voices.join's last pause)."""
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    reference, hypothesis = Annotation(), Annotation()
    end = max([end or turns[-1].end + 1.0, *(b for _, b, _ in spans)])
    uem = Timeline([Segment(0.0, end)])
    for i, u in enumerate(turns):
        reference[Segment(u.start, u.end), f"r{i}"] = u.speaker
    reference = reference.support()  # one person's overlapping turns (real RTTM has some) as one
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


def truths(turns: list[voices.Turn], t: float) -> frozenset[str]:
    """Everyone speaking at ``t`` (two or more in overlapping speech), else the nearest turn's speaker."""
    return frozenset(u.speaker for u in turns if u.start <= t <= u.end) or frozenset({truth(turns, t)})


def best_mapping(pairs: list[tuple[str, frozenset[str]]]) -> tuple[int, dict[str, str]]:
    """Most (label, people speaking) pairs right under a one-to-one map of labels to people: a word
    is right when its label maps to someone speaking then (brute force: a handful of speakers)."""
    labels = sorted({h for h, _ in pairs})
    people = sorted({p for _, r in pairs for p in r})
    best, best_map = -1, {}
    slots = people + [""] * max(0, len(labels) - len(people))
    for perm in itertools.permutations(slots, len(labels)):
        mapping = dict(zip(labels, perm, strict=True))
        right = sum(1 for h, r in pairs if mapping[h] in r)
        if right > best:
            best, best_map = right, mapping
    return best, best_map


def max_one(pairs: list[tuple[str, frozenset[str]]]) -> str:
    """The person the one-label baseline maps its label to (the best one)."""
    _, mapping = best_mapping([("one", r) for _, r in pairs])
    return mapping.get("one", "")


def score(events: list[dict[str, Any]], turns: list[voices.Turn], end: float | None = None) -> dict[str, Any]:
    words = words_of(events)
    pairs = [(label, truths(turns, t)) for t, label, _ in words]
    right, mapping = best_mapping(pairs)
    by_message: dict[str, tuple[str, list[str]]] = {}
    for t, label, mid in words:
        by_message.setdefault(mid, (label, []))[1].append(truth(turns, t))
    msg_right = sum(1 for label, people in by_message.values()
                    if mapping.get(label) == max(set(people), key=people.count))
    baseline, _ = best_mapping([("one", r) for _, r in pairs])
    # as published, before any speaker_revision (what a live subscriber saw first), under its own best map
    published, _ = best_mapping([(label, truths(turns, t)) for t, label, _ in
                                 words_of([e for e in events if e["type"] != REVISION])])
    spans = spans_of(events)
    rates = der(turns, spans, end)
    rates["baseline"] = der(turns, [(a, b, "one") for a, b, _ in spans], end)["der"]
    return {"der": rates, "words": len(pairs), "right": right, "published": published, "baseline": baseline,
            "messages": len(by_message),
            "messagesRight": msg_right, "found": len({h for h, _ in pairs}),
            "people": len({u.speaker for u in turns}), "overlapWords": sum(1 for _, r in pairs if len(r) > 1),
            "soloRight": sum(1 for h, r in pairs if len(r) == 1 and mapping[h] in r),  # one person speaking
            "soloBaseline": sum(1 for _, r in pairs if len(r) == 1 and max_one(pairs) in r),
            "revisions": sum(1 for e in events if e["type"] == REVISION)}


def run_set(engine: LocalEngine, name: str, audio: np.ndarray, turns: list[voices.Turn], live: bool,
            end: float | None = None) -> dict[str, Any]:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    run = Run(engine, name)
    cpu0, t0 = time.process_time(), time.monotonic()
    run.feed(pcm, live)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    run.cpu = run.labeller.cpu_seconds + run.cpu  # prints (whichever thread took them) + clustering
    s = score(run.events, turns, end)
    seconds = len(audio) / RATE
    pct = 100 * s["right"] / max(s["words"], 1)
    base = 100 * s["baseline"] / max(s["words"], 1)
    print(f"{name:18} {'live' if live else 'fast':4}  {seconds:6.1f} s audio  words {s['words']:4}  "
          f"right {pct:5.1f} % (one-label baseline {base:5.1f} %, x{pct / max(base, 1e-9):.2f})  "
          f"messages {s['messagesRight']}/{s['messages']}  speakers found {s['found']} of {s['people']}  "
          f"revisions {s['revisions']}  words in overlap {s['overlapWords']}")
    if s["revisions"]:
        print(f"{'':18} {'':4}  at publication (before revisions): right {s['published']}/{s['words']} = "
              f"{100 * s['published'] / max(s['words'], 1):.1f} %")
    solo = s["words"] - s["overlapWords"]
    if s["overlapWords"]:
        print(f"{'':18} {'':4}  words said by one person alone: right {s['soloRight']}/{solo} = "
              f"{100 * s['soloRight'] / max(solo, 1):.1f} % (one-label baseline "
              f"{100 * s['soloBaseline'] / max(solo, 1):.1f} %)")
    print(f"{'':18} {'':4}  diarization CPU {run.cpu:.2f} s = {run.cpu / seconds:.3f} core-s per audio s  "
          f"(whole stream CPU {cpu:.2f} s, diarization share x{run.cpu / max(cpu, 1e-9):.2f}; wall {wall:.1f} s)")
    r = s["der"]
    print(f"{'':18} {'':4}  DER {100 * r['der']:.1f} % (confusion {100 * r['confusion']:.1f} %, missed "
          f"{100 * r['missed']:.1f} %, false alarm {100 * r['falseAlarm']:.1f} %; one-label baseline "
          f"{100 * r['baseline']:.1f} %, x{r['der'] / max(r['baseline'], 1e-9):.2f})")
    d = sorted(run.delays)
    if d:
        print(f"{'':18} {'':4}  added to each final: p50 {1000 * float(np.percentile(d, 50)):.0f} ms  "
              f"p95 {1000 * float(np.percentile(d, 95)):.0f} ms  ({len(d)} finals)  prints: {work_line(run)}")
    return {**s, "seconds": seconds, "cpu": run.cpu}


def work_line(*runs: Run) -> str:
    """How the prints kept up (Labeller.work, summed over ``runs``)."""
    keys = ("provisionalFinals", "lateRevisedMessages", "tailPrints", "skippedPrints")
    total = {k: sum(r.labeller.work()[k] for r in runs) for k in keys}
    return ", ".join(f"{k} {v}" for k, v in total.items())


def pooled(title: str, results: list[dict[str, Any]]) -> None:
    """Several sets' words and DER together (DER weighted by each set's reference speech, approximated
    by its audio length)."""
    if not results:
        return
    words = sum(r["words"] for r in results)
    right = sum(r["right"] for r in results)
    published = sum(r["published"] for r in results)
    base = sum(r["baseline"] for r in results)
    secs = sum(r["seconds"] for r in results)
    der_ = sum(r["der"]["der"] * r["seconds"] for r in results) / secs
    conf = sum(r["der"]["confusion"] * r["seconds"] for r in results) / secs
    solo = sum(r["words"] - r["overlapWords"] for r in results)
    solo_right = sum(r["soloRight"] for r in results)
    solo_base = sum(r["soloBaseline"] for r in results)
    print(f"== {title}: {len(results)} sets, {secs:.0f} s: words right {right}/{words} = "
          f"{100 * right / max(words, 1):.1f} % (at publication {100 * published / max(words, 1):.1f} %; one-label "
          f"baseline {100 * base / max(words, 1):.1f} %); "
          f"said alone {solo_right}/{solo} = {100 * solo_right / max(solo, 1):.1f} % "
          f"(baseline {100 * solo_base / max(solo, 1):.1f} %)  "
          f"DER {100 * der_:.1f} % (confusion {100 * conf:.1f} %)  diarization CPU "
          f"{sum(r['cpu'] for r in results) / secs:.3f} core-s per audio s")


def heldout(engine: LocalEngine, live: bool, fast: bool = True) -> None:
    """The held-out sets (bench/heldout_voices.py), thresholds as shipped: real conversations with
    reference turns, then joined unseen voices (``fast``: fed fast, with known voices; ``live``: three
    of them fed in real time)."""
    import heldout_voices

    if fast:
        heldout_fast(engine)
    if live:
        sets = {**heldout_voices.real_sets(), **heldout_voices.joined_sets()}
        for name in ("phone-2p", "ami-4p-tst", "unseen-4p-overlap"):
            if name in sets:
                audio, turns = sets[name]
                run_set(engine, name, audio, turns, live=True, end=len(audio) / RATE)


def heldout_fast(engine: LocalEngine) -> None:
    import heldout_voices

    results: dict[str, dict[str, Any]] = {}
    for name, (audio, turns) in {**heldout_voices.real_sets(), **heldout_voices.joined_sets()}.items():
        results[name] = run_set(engine, name, audio, turns, live=False, end=len(audio) / RATE)
    people = {name: r["people"] for name, r in results.items()}
    pooled("real, 2 people", [r for n, r in results.items() if not n.startswith("unseen") and people[n] == 2])
    pooled("real, 3 people", [r for n, r in results.items() if not n.startswith("unseen") and people[n] == 3])
    pooled("real, 4 people (overlap)", [r for n, r in results.items()
                                       if not n.startswith("unseen") and people[n] == 4])
    from symbld.diarization import embedder

    joined = heldout_voices.joined_sets()
    if joined:  # known voices: two of the four enrolled from prompts the set does not hold
        book = {}
        for who, talent in (("carlo", "it_IT_m_Carlo"), ("june", "fr_CA_f_June")):
            vec = embedder.embed(heldout_voices.prompts(talent, 10.0, 300))
            assert vec is not None
            book[who] = {"userId": who, "print": vec.tolist()}
        named_right(engine, book, *joined["unseen-4p-overlap"])


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
    named_right(engine, book, *voices.join(sets()["4p-round"]))


def named_right(engine: LocalEngine, book: dict[str, dict[str, Any]], audio: np.ndarray,
                turns: list[voices.Turn]) -> None:
    run = Run(engine, "known", book)
    run.feed((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes(), live=False)
    history = [{"type": "connection_started", "connectionId": "x", "data": {}}, *run.events]
    named: dict[str, list[str]] = {}
    both: list[tuple[frozenset[str], str]] = []  # words said while two people spoke: scored apart
    by_label: dict[str, list[str]] = {}  # label name → who said each of its words (said alone)
    for e in speakers.attribute_history(history):
        if e["type"] == "message_response":
            for m in e["data"]["messages"]:
                for w in json.loads(m["metadata"]["words"]):
                    people = truths(turns, (_secs(w["startTime"]) + _secs(w["endTime"])) / 2)
                    name = (m.get("from") or {}).get("name", "")
                    if len(people) > 1:
                        both.append((people, name))
                    else:
                        named.setdefault(next(iter(people)), []).append(name)
                        by_label.setdefault(name, []).append(next(iter(people)))
    if both:
        wrong = sum(1 for people, n in both if n in book and n not in people)
        print(f"known voices  (overlap) {len(both)} words said while two spoke: {wrong} given an enrolled name "
              f"of neither")
    strangers_named = 0
    for label, people in sorted(by_label.items()):  # a stranger's own label named, or confusion?
        most = max(set(people), key=people.count)
        if label in book and most not in book:
            strangers_named += 1
            print(f"known voices  label {label!r}: a stranger's label named ({people.count(most)}/{len(people)} "
                  f"of its words are {most}'s)")
    if not strangers_named:
        print("known voices  no label whose words are mostly a stranger's was given an enrolled name")
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
    load0, cpu0, wall0 = os.getloadavg()[0], time.process_time(), time.monotonic()
    threads = []
    for i, run in enumerate(runs):
        threads.append(threading.Thread(target=run.feed, args=(pcm, True)))
        threads[-1].start()
        if i + 1 < count:
            time.sleep(1.0)  # staggered, as people do not all start talking at once
    for th in threads:
        th.join()
    cpu, wall, load1 = time.process_time() - cpu0, time.monotonic() - wall0, os.getloadavg()[0]
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
    diar = sum(r.labeller.cpu_seconds + r.cpu for r in runs) if diarize else 0.0
    per = count * len(audio) / RATE  # audio seconds of all streams
    print(f"{'':30}CPU {cpu:.1f} s in {wall:.1f} s wall = {cpu / wall:.2f} cores, {cpu / per:.3f} "
          f"core-s per audio s per stream (diarization {diar / per:.3f}); "
          f"load average {load0:.1f} -> {load1:.1f} on {os.cpu_count()} CPUs")
    if diarize:
        print(f"{'':30}prints: {work_line(*runs)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--live", action="store_true", help="also feed the first set in real time")
    ap.add_argument("--quick", action="store_true", help="only the first set")
    ap.add_argument("--heldout", action="store_true",
                    help="also the held-out sets (bench/heldout_voices.py; fetches pyannote.audio's sdist once)")
    ap.add_argument("--heldout-only", action="store_true", help="only the held-out sets")
    ap.add_argument("--live-only", action="store_true", help="with --heldout-only: only the live held-out runs")
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
    chosen = {} if args.heldout_only else sets()
    if args.quick:
        chosen = dict(list(chosen.items())[:1])
    for name, parts in chosen.items():
        run_set(engine, name, *voices.join(parts), live=False)
    if chosen and not args.quick:
        for name, (audio, turns) in quick_sets().items():
            run_set(engine, name, audio, turns, live=False, end=len(audio) / RATE)
    if chosen and not args.quick:
        known_voices(engine)
    if args.live and chosen:
        name, parts = next(iter(chosen.items()))
        run_set(engine, name, *voices.join(parts), live=True)
    if args.heldout or args.heldout_only:
        heldout(engine, args.live or args.live_only, fast=not args.live_only)
    for count in args.streams:
        for diarize in (False, True):
            live_streams(engine, count, diarize)
    engine.close()


if __name__ == "__main__":
    main()
