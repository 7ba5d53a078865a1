"""What the lead-in before a clip does to the recogniser: each clip decoded alone, many ways, against the plain model.

    python bench/bench_lead_in.py it,fr 40 plain,engine,none,z0.15,n1@60 tune

Arguments: languages, clips per language, variants, set (tune: prompts.tune_set, neither dev nor held out;
dev; eval: the held-out set). Variants:

- ``plain``: faster-whisper with Whisper base on the whole clip (beam 5, T=0, 30 s window), as bench_languages;
- ``engine``: the recogniser's own ``transcribe`` on the clip after 1 s of digital zeros (its run-up rule);
- ``none``: the recogniser's decode of the clip alone; ``zS``: after S s of zeros; ``nS@D``: after S s of
  seeded white noise at -D dBFS; a ``_w30`` suffix: with a 30 s encoder window instead of the engine's 16 s.

Everything but ``plain`` gets the clip as s16le gives it. Prints word errors per variant and every clip on
which the variants differ. Asserts nothing (docs/benchmarks.md#languages has the figures).
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jiwer
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import prompts  # noqa: E402

from symbld.engines.local import LocalEngine  # noqa: E402

R = prompts.RATE


def noise(seconds: float, dbfs: float) -> np.ndarray:
    return (np.random.default_rng(0).standard_normal(int(seconds * R)) * 10 ** (-dbfs / 20)).astype(np.float32)


def as_s16le(a: np.ndarray) -> np.ndarray:
    return (np.clip(a, -1, 1) * 32767).astype("<i2").astype(np.float32) / 32768.0


def decode(rec: object, variant: str, audio: np.ndarray, lang: str) -> str:
    if variant == "plain":
        segs, _ = rec._model.transcribe(audio, language=lang, beam_size=5, temperature=0.0,  # type: ignore[attr-defined]
                                        condition_on_previous_text=False, vad_filter=False)
        return " ".join(s.text.strip() for s in segs)
    a = as_s16le(audio)
    if variant == "engine":
        return rec.transcribe(np.concatenate([np.zeros(R, np.float32), a]), final=True,  # type: ignore[attr-defined]
                              language=lang).text
    window = 30.0 if variant.endswith("_w30") else rec.min_window_s  # type: ignore[attr-defined]
    variant = variant.removesuffix("_w30")
    if variant.startswith("z"):
        a = np.concatenate([np.zeros(int(float(variant[1:]) * R), np.float32), a])
    elif variant.startswith("n"):
        seconds, dbfs = variant[1:].split("@")
        a = np.concatenate([noise(float(seconds), float(dbfs)), a])
    elif variant != "none":
        sys.exit(f"unknown variant {variant!r}")
    old, rec.min_window_s = rec.min_window_s, window  # type: ignore[attr-defined]
    try:
        return rec._decode(a, final=True, hotwords=None, prompt=None,  # type: ignore[attr-defined]
                           language=lang, task="transcribe").text
    finally:
        rec.min_window_s = old  # type: ignore[attr-defined]


def errors(ref: str, hyp: str) -> int:
    r = prompts.normalise(ref)
    return round(jiwer.wer(r, prompts.normalise(hyp) or "-") * len(r.split()))


def pick(which: str, lang: str, size: int) -> list[prompts.Clip]:
    if which == "tune":
        return prompts.tune_set(lang, size)
    return prompts.dev_set(lang) if which == "dev" else prompts.eval_set(lang)


def main() -> None:
    langs, size, variants = sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3].split(",")
    which = sys.argv[4] if len(sys.argv) > 4 else "tune"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    engine = LocalEngine({"num_workers": 2, "multilingual_load": "start"})
    engine.load()
    rec = engine._multilingual
    for lang in langs:
        clips = pick(which, lang, size)
        audio = [c.load() for c in clips]
        words = sum(len(prompts.normalise(c.text).split()) for c in clips)
        hyps: dict[str, list[str]] = {}
        with ThreadPoolExecutor(2) as ex:
            for v in variants:
                t = time.time()
                hyps[v] = list(ex.map(decode, [rec] * len(audio), [v] * len(audio), audio, [lang] * len(audio)))
                e = sum(errors(c.text, h) for c, h in zip(clips, hyps[v], strict=True))
                print(f"{lang} {v:14s} errors {e:4d} / {words} words  WER {100 * e / words:5.1f}%  "
                      f"({time.time() - t:.0f} s)", flush=True)
        for i, c in enumerate(clips):
            if len({prompts.normalise(hyps[v][i]) for v in variants}) > 1:
                print(f"  {c.name}: ref {c.text}")
                for v in variants:
                    print(f"     {v:14s} {errors(c.text, hyps[v][i])} {hyps[v][i]}")
    engine.close()


if __name__ == "__main__":
    main()
