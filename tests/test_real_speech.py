"""Real recorded speech (Debian's pocketsphinx-testdata): the engine is as accurate as its model.

The same tiny.en decodes each whole clip directly (the plain model) and through the engine's
streaming layer (VAD, speculative finals, prompts, cuts); the engine may lose at most
``MARGIN`` of WER against the plain model, on clean, 10 dB noise and 8 kHz telephone copies, and
no final may carry a sentence nobody said ("Thank you for watching").
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import realspeech
from speechgen import wer
from test_local_engine import engine  # noqa: F401  (the module-scoped engine fixture)

from symbld.engines.base import StreamConfig
from symbld.engines.local import LocalEngine
from symbld.engines.local.recognizer import HALLUCINATIONS, _norm

pytestmark = [
    # One worker runs the cpu-heavy group, one test after another: decodes the real-speech set twice (plain and
    # engine): CPU-heavy.
    pytest.mark.xdist_group("cpu-heavy"),
    pytest.mark.speech,
    pytest.mark.timeout(600),
]

MARGIN = 0.03  # 3 words in the 96 of the set
CHUNK = 640


def plain(eng: LocalEngine, audio: np.ndarray) -> str:
    """The model alone on the whole clip (what faster-whisper users get)."""
    segments, _ = eng.recognizer._model.transcribe(
        audio, language="en", beam_size=5, temperature=0.0, condition_on_previous_text=False
    )
    return " ".join(s.text.strip() for s in segments)


def through_engine(eng: LocalEngine, clips: list[np.ndarray], name: str) -> list[list[str]]:
    """Each clip's finals, the clips fed one after another to one stream with pauses between."""
    events: list[tuple[str, dict]] = []
    lock = threading.Lock()

    def emit(t: str, d: dict) -> None:
        with lock:
            events.append((t, json.loads(json.dumps(d))))

    stream = eng.open(StreamConfig(connection_id=name, conversation_id=name, started_at=1.79e9), emit)
    gap = np.zeros(realspeech.RATE, np.float32)
    bounds = []
    t = 0.0
    for audio in clips:
        pcm = realspeech.pcm16(np.concatenate([gap, audio]))
        for i in range(0, len(pcm), CHUNK):
            stream.feed(pcm[i : i + CHUNK])
        bounds.append((t + 1.0, t + 1.0 + len(audio) / realspeech.RATE))
        t = bounds[-1][1]
    stream.feed(realspeech.pcm16(gap))
    stream.finish()
    stream.close()
    out: list[list[str]] = [[] for _ in clips]
    for typ, d in events:
        if typ == "transcript_response" and d["isFinal"] and d["punctuated"]["transcript"]:
            mid = d["duration"]["timeOffset"] + d["duration"]["duration"] / 2
            k = min(range(len(bounds)), key=lambda j: 0 if bounds[j][0] <= mid <= bounds[j][1] else 1e9)
            out[k].append(d["punctuated"]["transcript"])
    return out


@pytest.mark.parametrize("kind", realspeech.VARIANTS)
def test_engine_is_as_accurate_as_the_plain_model(engine, kind):  # noqa: F811  (the fixture)
    clips = realspeech.clips()
    audio = [realspeech.variant(c.audio, kind, seed=n) for n, c in enumerate(clips)]
    refs = [c.text for c in clips]
    plain_hyps = [plain(engine, a) for a in audio]
    engine_finals = through_engine(engine, audio, f"real-{kind}")
    engine_hyps = [" ".join(f) for f in engine_finals]
    plain_wer, engine_wer = wer(refs, plain_hyps), wer(refs, engine_hyps)
    detail = list(zip(refs, plain_hyps, engine_hyps, strict=True))
    assert engine_wer <= plain_wer + MARGIN, (kind, plain_wer, engine_wer, detail)
    for final in (f for finals in engine_finals for f in finals):
        for phrase in HALLUCINATIONS:
            if len(phrase.split()) >= 3:
                assert phrase not in _norm(final), (kind, final)
