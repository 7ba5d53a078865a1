"""Languages: the engine against the plain multilingual model on real speech in es, fr, it and ru.

    python bench/bench_languages.py           # WER per language, language ID in auto, memory
    python bench/bench_languages.py --live    # + the four languages streamed live at once
    python bench/bench_languages.py --parts wer --languages it,fr --clips --set tune
        # every clip the engine hears differently from the plain model, on prompts neither dev nor held out

The audio is tests/prompts.py's held-out set: 30 telephone prompts per language read by people
(Debian's asterisk-core-sounds-{es,fr,it,ru}, their published texts; nothing synthesised), drawn by
fixed rules and seed from the prompts the feature was not built on (``--set dev``: the 8 it was). In
one process:

1. memory: RSS before and after loading tiny.en (the English model) and Whisper base (the
   multilingual one), both loaded at once as the daemon holds them;
2. per language, with the language given: the plain model (faster-whisper, Whisper base, beam 5,
   T=0) decoding each whole clip, against the engine fed the same clips as one stream (1.5 s gaps)
   as fast as it takes them, and with ``--live`` in real time (the four languages side by side);
   WER on accent-folded, punctuation-free words (the published texts drop some accents), the
   difference in points, and CPU seconds per audio second;
3. languageCode ``auto``: each clip in a stream of its own (no conversation language to keep to),
   the engine's reported language against the clip's, beside the plain model's ``detect_language``
   (Whisper's language token alone, on the whole clip);
4. English: tiny.en through the engine with languageCode en-US, against the plain tiny.en, on the
   LibriVox sentences of tests/realspeech.py (unchanged by this feature: the same model and calls).

Prints figures and differences; asserts nothing. On a shared machine all figures include its load.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import jiwer
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import prompts  # noqa: E402
import realspeech  # noqa: E402
from speechgen import wer as english_wer  # noqa: E402

from symbld import languages  # noqa: E402
from symbld.engines.base import StreamConfig  # noqa: E402
from symbld.engines.local import LocalEngine  # noqa: E402

RATE = prompts.RATE
GAP_S = 1.5
CHUNK = 640  # 20 ms


def wer(refs: list[str], hyps: list[str]) -> float:
    return float(jiwer.wer([prompts.normalise(r) for r in refs], [prompts.normalise(h) for h in hyps]))


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def cpu_s() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


def plain(model: object, audio: np.ndarray, language: str) -> str:
    segs, _ = model.transcribe(  # type: ignore[attr-defined]
        audio, language=language, beam_size=5, temperature=0.0, condition_on_previous_text=False, vad_filter=False
    )
    return " ".join(s.text.strip() for s in segs)


def layout(clips: list[np.ndarray]) -> tuple[bytes, list[tuple[float, float]]]:
    gap = np.zeros(int(GAP_S * RATE), np.float32)
    parts, spans, pos = [], [], 0.0
    for a in clips:
        spans.append((pos + GAP_S, pos + GAP_S + len(a) / RATE))
        parts += [gap, a]
        pos += GAP_S + len(a) / RATE
    parts.append(gap)
    return prompts.pcm16(np.concatenate(parts)), spans


def run_stream(engine: LocalEngine, name: str, pcm: bytes, code: str, realtime: bool = False) -> list[dict]:
    messages: list[dict] = []
    stream = engine.open(StreamConfig(connection_id=name, conversation_id=name, language_code=code),
                         lambda t, d: messages.extend(d["messages"]) if t == "message_response" else None)
    t0 = time.monotonic()
    for i in range(0, len(pcm), CHUNK if realtime else len(pcm)):
        stream.feed(pcm[i : i + (CHUNK if realtime else len(pcm))])
        if realtime:
            delay = t0 + (i + CHUNK) / 2 / RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    # A loaded shared machine can take minutes to decode a language's clips fed at once; a timed-out
    # finish would drop the pending finals and count their words as deletions.
    stream.finish(timeout=1800)
    stream.close()
    return messages


def per_clip_messages(messages: list[dict], spans: list[tuple[float, float]]) -> list[list[str]]:
    """Each clip's messages (the engine's sentences), by the clip whose audio is nearest to the middle of each
    (0 inside it). Not the nearest clip *middle*: the last sentence of a long clip followed by a short one is
    nearer the short one's middle, and was counted as its words (deletions in one clip, insertions in the next)."""
    out: list[list[str]] = [[] for _ in spans]
    for m in messages:
        mid = m["duration"]["timeOffset"] + m["duration"]["duration"] / 2
        k = min(range(len(spans)), key=lambda j: max(spans[j][0] - mid, 0.0, mid - spans[j][1]))
        out[k].append(m["payload"]["content"])
    return out


def per_clip(messages: list[dict], spans: list[tuple[float, float]]) -> list[str]:
    return [" ".join(x) for x in per_clip_messages(messages, spans)]


def print_clip_diffs(clips: list[prompts.Clip], refs: list[str], plain_h: list[str],
                     engine_parts: list[list[str]]) -> None:
    """Every clip whose engine words differ from the plain model's: both hypotheses (the engine's utterances
    split by " | ") and each one's word errors."""
    for c, r, p, parts in zip(clips, refs, plain_h, engine_parts, strict=True):
        e = " ".join(parts)
        if prompts.normalise(p) == prompts.normalise(e):
            continue
        n = len(prompts.normalise(r).split())
        errors = [round(jiwer.wer(prompts.normalise(r), prompts.normalise(h) or "-") * n) for h in (p, e)]
        print(f"    {c.name}: plain {errors[0]} errors, engine {errors[1]} ({errors[1] - errors[0]:+d})\n"
              f"      ref    {r}\n      plain  {p}\n      engine {' | '.join(parts)}")


def accuracy(engine: LocalEngine, base: object, sets: dict[str, list[prompts.Clip]], live: bool,
             clip_diffs: bool = False) -> None:
    print("\n## WER with the language given (languageCode es-ES, fr-FR, it-IT, ru-RU)\n")
    cols = "| language | clips | audio s | plain WER | engine WER (fast) | points |"
    cols += " engine WER (live) | points |" if live else ""
    print(cols + " plain CPU s/audio s | engine CPU s/audio s |")
    print("|---" * (cols.count("|") + 1) + "|")
    live_results: dict[str, list[dict]] = {}
    layouts = {lang: layout([c.load() for c in clips]) for lang, clips in sets.items()}
    if live:
        threads = [threading.Thread(target=lambda lang=lang: live_results.__setitem__(
            lang, run_stream(engine, f"live-{lang}", layouts[lang][0], prompts.TAGS[lang], realtime=True)))
            for lang in sets]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for lang, clips in sets.items():
        refs = [c.text for c in clips]
        audio_s = sum(len(c.load()) for c in clips) / RATE
        c0 = cpu_s()
        plain_h = [plain(base, c.load(), lang) for c in clips]
        plain_cpu = (cpu_s() - c0) / audio_s
        pcm, spans = layouts[lang]
        c0 = cpu_s()
        fast_parts = per_clip_messages(run_stream(engine, f"fast-{lang}", pcm, prompts.TAGS[lang]), spans)
        fast_h = [" ".join(x) for x in fast_parts]
        fast_cpu = (cpu_s() - c0) / audio_s
        p, f = wer(refs, plain_h), wer(refs, fast_h)
        row = f"| {lang} | {len(clips)} | {audio_s:.1f} | {p:.1%} | {f:.1%} | {100 * (f - p):+.1f} |"
        live_parts = per_clip_messages(live_results[lang], spans) if live else []
        if live:
            lv = wer(refs, [" ".join(x) for x in live_parts])
            row += f" {lv:.1%} | {100 * (lv - p):+.1f} |"
        print(row + f" {plain_cpu:.3f} | {fast_cpu:.3f} |")
        if clip_diffs:
            print("  fed fast:")
            print_clip_diffs(clips, refs, plain_h, fast_parts)
            if live:
                print("  live:")
                print_clip_diffs(clips, refs, plain_h, live_parts)


def language_id(engine: LocalEngine, base: object, sets: dict[str, list[prompts.Clip]]) -> None:
    print("\n## languageCode auto: the language reported, each clip in a stream of its own\n")
    print("| language | clips | engine right | plain detect_language right | engine WER (auto) "
          "| engine CPU s/audio s (auto) |")
    print("|---|---|---|---|---|---|")
    total = right_total = 0
    for lang, clips in sets.items():
        engine_right = plain_right = 0
        hyps = []
        cpu = 0.0
        for n, c in enumerate(clips):
            audio = c.load()
            pcm, _ = layout([audio])
            c0 = cpu_s()
            msgs = run_stream(engine, f"auto-{lang}-{n}", pcm, "auto")
            cpu += cpu_s() - c0
            reported = {languages.primary(m["metadata"].get("language")) for m in msgs}
            engine_right += reported == {lang}
            hyps.append(" ".join(m["payload"]["content"] for m in msgs))
            detected, _p, _all = base.detect_language(audio)  # type: ignore[attr-defined]
            plain_right += detected == lang
        total += len(clips)
        right_total += engine_right
        audio_s = sum(len(c.load()) for c in clips) / RATE
        print(f"| {lang} | {len(clips)} | {engine_right} | {plain_right} | {wer([c.text for c in clips], hyps):.1%} "
              f"| {cpu / audio_s:.3f} |")
    print(f"\nauto reported the right language for {right_total} of {total} clips")


def english(engine: LocalEngine) -> None:
    if not realspeech.available():
        print("\n(English: pocketsphinx-testdata not installed)")
        return
    clips = realspeech.clips()[:10]
    refs = [c.text for c in clips]
    model = engine.recognizer._model  # type: ignore[attr-defined]
    plain_h = [plain(model, c.audio, "en") for c in clips]
    pcm, spans = layout([c.audio for c in clips])
    eng_h = per_clip(run_stream(engine, "en", pcm, "en-US"), spans)
    p, e = english_wer(refs, plain_h), english_wer(refs, eng_h)
    print(f"\n## English (tiny.en, languageCode en-US, {len(clips)} LibriVox sentences)\n")
    print(f"plain tiny.en WER {p:.1%}, engine WER {e:.1%} ({100 * (e - p):+.1f} points)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--live", action="store_true", help="also stream the four languages live, side by side")
    ap.add_argument("--parts", default="wer,auto,english", help="which parts to run (default: all three)")
    ap.add_argument("--languages", default=",".join(prompts.VOICES), help="which languages (default: es,fr,it,ru)")
    ap.add_argument("--clips", action="store_true",
                    help="print every clip the engine hears differently from the plain model (fed fast, and live)")
    ap.add_argument("--set", choices=("eval", "dev", "tune"), default="eval",
                    help="eval: the held-out prompts (default); dev: the 8 per language the feature was built on; "
                         "tune: 40 other eligible prompts, neither dev nor held out, to check a change on")
    ns = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pick = {"eval": prompts.eval_set, "dev": prompts.dev_set, "tune": prompts.tune_set}[ns.set]
    wanted = ns.languages.split(",")
    sets = {lang: pick(lang) for lang in prompts.VOICES if lang in wanted and prompts.available(lang)}
    if not sets:
        sys.exit("install Debian's asterisk-core-sounds-{es,fr,it,ru}-wav and -{es,fr,it,ru} (scripts/install-deps.sh)")
    r0 = rss_mb()
    engine = LocalEngine({"num_workers": 2, "multilingual_load": "start"})
    engine.recognizer.load()
    r1 = rss_mb()
    engine.load()  # + Whisper base (multilingual_load = "start")
    r2 = rss_mb()
    print(f"# bench_languages ({ns.set} set, load average {os.getloadavg()[0]:.1f} at the start)\n")
    print(f"RSS: {r0:.0f} MB before, +{r1 - r0:.0f} MB tiny.en, "
          f"+{r2 - r1:.0f} MB Whisper base and the VAD, {r2:.0f} MB with both models loaded")
    base = engine._multilingual._model  # type: ignore[union-attr]
    try:
        parts = set(ns.parts.split(","))
        if "wer" in parts:
            accuracy(engine, base, sets, ns.live, ns.clips)
        if "auto" in parts:
            language_id(engine, base, sets)
        if "english" in parts:
            english(engine)
        print(f"\nRSS at the end: {rss_mb():.0f} MB; load average {os.getloadavg()[0]:.1f} at the end")
    finally:
        engine.close()


if __name__ == "__main__":
    main()
