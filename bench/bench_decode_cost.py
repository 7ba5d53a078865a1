"""Where one decode's CPU goes, in CPU-seconds, split by step (load-independent).

    python bench/bench_decode_cost.py                 # finals and interims of the real-speech clips, default settings
    python bench/bench_decode_cost.py --repeat 5      # more decodes per clip (medians are steadier)
    python bench/bench_decode_cost.py --packed --copies clean noise phone   # packed finals, beam 5 against greedy

Each real-speech clip (tests/realspeech.py: recordings of people) trimmed to its speech as bench_latency.py feeds
it, with the 1 s pre-roll and 0.1 s post-roll a final decodes, is decoded by the recogniser alone on an idle
engine (one decode at a time, so the process's CPU is that decode's): as a **final** (beam 5, timestamps, word
alignment) and as an **interim** (greedy, no timestamps), and the final's variants: beam 1, no word alignment
(``word_timestamps`` off), and without timestamp tokens. Each step is timed with ``time.process_time`` around
faster-whisper's calls (CTranslate2 computes on its own threads, which process time counts):

- **features**: the log-mel spectrogram (numpy);
- **encoder**: CTranslate2's encoder over the decode's window (16 s for these clips);
- **decoder**: ``generate`` (beam search or greedy), each call; **align**: the word-timestamp pass (``align``,
  a forward pass of the decoder over the text with cross-attention) and its Python post-processing;
- **other**: the rest of the call (tokenizer, segment loop, our guards): Python overhead.

And what a final costs when it is stopped before its search or its alignment (a speculative final whose
speech resumed: ``DecodeCancelled``).

Also counted: encoder and decoder calls per decode (a second window is a second encoder pass), and the words
each variant writes against the final's (the WER of the variant's text against the final's text: 0 means the
words did not change). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import realspeech  # noqa: E402
from bench_latency import timeline  # noqa: E402
from speechgen import wer  # noqa: E402

from symbld.engines.local import streaming as st  # noqa: E402
from symbld.engines.local.recognizer import DecodeCancelled, WhisperRecognizer  # noqa: E402

STEPS: dict[str, float] = defaultdict(float)
CALLS: dict[str, int] = defaultdict(int)


def timed(step: str, fn: Any) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        c0 = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            STEPS[step] += time.process_time() - c0
            CALLS[step] += 1
    return call


class TimedCT2:
    """The CTranslate2 Whisper model with its encode/generate/align calls timed."""

    def __init__(self, model: Any) -> None:
        self._m = model
        self.encode = timed("encoder", model.encode)
        self.generate = timed("decoder", model.generate)
        self.align = timed("align (native)", model.align)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._m, name)


def instrument(rec: WhisperRecognizer) -> None:
    wm = rec._model
    wm.model = TimedCT2(wm.model)
    fe = wm.feature_extractor
    wm.feature_extractor = type("TimedFE", (), {
        "__call__": lambda self, *a, **k: timed("features", fe.__call__)(*a, **k),
        "__getattr__": lambda self, name: getattr(fe, name)})()
    wm.add_word_timestamps = timed("align (all)", wm.add_word_timestamps)


VARIANTS: dict[str, dict[str, Any]] = {
    "final (beam 5, timestamps, words)": {"final": True},
    "final, beam 1": {"final": True, "beam_size": 1},
    "final, no word alignment": {"final": True, "word_timestamps": False},
    "final, no timestamps, no words": {"final": True, "word_timestamps": False, "without_timestamps": True},
    "interim (greedy, no timestamps)": {"final": False},
    # What a speculative final costs when its speech resumed during a pass (streaming.py, SYMBLD_SCHEDULE cancel):
    # it stops before the next one.
    "final stopped before its search": {"final": True, "stop_before": "search"},
    "final stopped before its alignment": {"final": True, "stop_before": "alignment"},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    ap.add_argument("--copies", nargs="*", default=["clean"], choices=realspeech.VARIANTS,
                    help="which copies of the clips (tests/realspeech.py): as recorded, 10 dB noise, telephone band")
    ap.add_argument("--packed", action="store_true",
                    help="instead: the clips packed as a stream behind packs its finals (streaming.py _take_pack: "
                         "consecutive utterances up to pack_window_s with 0.5 s of silence between), each pack "
                         "decoded with the full beam and with behind_beam_size (1): CPU per clip and WER")
    args = ap.parse_args()
    tl = timeline(realspeech.clips())
    pre, post = np.zeros(16000, np.float32), np.zeros(1600, np.float32)
    audios = [realspeech.variant(np.concatenate([pre, a, post]), kind) for kind in args.copies for a in tl.trimmed]
    refs = [c.text for _ in args.copies for c in realspeech.clips()]
    rec = WhisperRecognizer({})
    rec.load()
    instrument(rec)
    rec.transcribe(audios[0], final=True)  # warm-up
    if args.packed:
        return packed(rec, audios, refs)
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()}; {len(audios)} clips {'+'.join(args.copies)} "
          f"({np.mean([len(a) for a in audios]) / 16000:.1f} s mean with pre/post-roll), x{args.repeat}")
    base_texts: list[str] = []
    for name in args.variants:
        opts = dict(VARIANTS[name])
        final = opts.pop("final")
        per_step: dict[str, list[float]] = defaultdict(list)
        texts = []
        for a in audios:
            for r in range(args.repeat):
                STEPS.clear()
                CALLS.clear()
                c0 = time.process_time()
                out = decode(rec, a, final, opts)
                total = time.process_time() - c0
                if r == 0:
                    texts.append(out)
                per_step["total"].append(total)
                for k in ("features", "encoder", "decoder", "align (native)", "align (all)"):
                    per_step[k].append(STEPS.get(k, 0.0))
                per_step["encoder calls"].append(CALLS.get("encoder", 0))
                per_step["decoder calls"].append(CALLS.get("decoder", 0))
        if not base_texts:
            base_texts = texts
        m = {k: float(np.mean(v)) for k, v in per_step.items()}
        known = m["features"] + m["encoder"] + m["decoder"] + m["align (all)"]
        print(f"\n## {name}: {m['total']:.4f} CPU-s per decode (mean)")
        for k in ("features", "encoder", "decoder", "align (native)", "align (all)"):
            print(f"  {k:22s} {m[k]:.4f}  {m[k] / m['total']:6.1%}")
        print(f"  {'other (Python)':22s} {m['total'] - known:.4f}  {(m['total'] - known) / m['total']:6.1%}")
        print(f"  encoder calls {m['encoder calls']:.2f}, decoder calls {m['decoder calls']:.2f} per decode")
        print(f"  words against the final's: WER {wer(base_texts, texts):.1%}; "
              f"against the transcripts: {wer(refs, texts):.1%}")


def packed(rec: WhisperRecognizer, audios: list[np.ndarray], refs: list[str]) -> None:
    """The clips in packs as LocalStream._take_pack builds them, decoded with beam 5 and with the behind beam."""
    gap, limit = st._PACK_GAP, int(st.StreamSettings().pack_window_s * realspeech.RATE)
    packs: list[list[int]] = [[]]
    total = 0
    for k, a in enumerate(audios):
        if packs[-1] and total + gap + len(a) > limit:
            packs.append([])
        total = len(a) if not packs[-1] else total + gap + len(a)
        packs[-1].append(k)
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()}; {len(audios)} clips in {len(packs)} packs "
          f"of up to {limit / realspeech.RATE:.0f} s")
    for behind in (False, True):
        texts = [""] * len(audios)
        c0 = time.process_time()
        for pack in packs:
            pieces, starts, pos = [], [], 0
            for k in pack:
                pieces += [audios[k], np.zeros(gap, np.float32)]
                starts.append(pos)
                pos += len(audios[k]) + gap
            out = rec.transcribe(np.concatenate(pieces), final=True, behind=behind)
            for w in out.words:  # by its start, as _run_packed gives words back
                j = max([0] + [i for i, a in enumerate(starts) if a <= w.start * realspeech.RATE])
                texts[pack[j]] += w.text
        cpu = time.process_time() - c0
        beam = rec.behind_beam_size if behind else rec.beam_size
        print(f"  beam {beam}: {cpu / len(audios):.4f} CPU-s per clip; WER {wer(refs, texts):.1%}")


def decode(rec: WhisperRecognizer, audio: np.ndarray, final: bool, opts: dict[str, Any]) -> str:
    """One decode through the recogniser, with faster-whisper options overridden for the variant."""
    if "stop_before" in opts:
        passes = {"search": 1, "alignment": 2}[opts["stop_before"]]
        asked: list[int] = []
        try:
            return rec.transcribe(audio, final=final, cancelled=lambda: asked.append(1) or len(asked) > passes).text
        except DecodeCancelled:
            return ""
    if not opts:
        return rec.transcribe(audio, final=final).text
    wm = rec._model
    orig = wm.transcribe

    said: list[str] = []

    def patched(*a: Any, **k: Any) -> Any:
        segments, info = orig(*a, **{**k, **opts})
        segments = list(segments)  # decoded here, inside the timing
        said.extend(s.text.strip() for s in segments)
        return segments, info

    wm.transcribe = patched
    try:
        text = rec.transcribe(audio, final=final).text
    finally:
        del wm.transcribe
    return text or " ".join(said)  # without word alignment a final's text is its segments' (no words)


if __name__ == "__main__":
    main()
