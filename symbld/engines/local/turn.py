"""Semantic end of turn: at a short pause, a model judges from the audio whether the speaker has finished.

The model is Smart Turn v3.2 (BSD-2, 8.7 MB ONNX, 23 languages), the file ``smart-turn-v3.2-cpu.onnx``
inside the PyPI wheel ``pipecat-ai==1.14.0`` (the extra ``symbld[turn]``, installed with ``--no-deps``:
only the model file is used; pipecat itself is never imported). The file is checked against a pinned
SHA-256 before it is loaded. It runs on the onnxruntime that faster-whisper already brings, on the
last 8 s of 16 kHz audio as Whisper log-mel features (80 × 800), computed by faster-whisper's own
feature extractor after the zero-mean, unit-variance normalisation the model was trained with.
Its output is the probability that the turn is complete.

One :class:`TurnJudge` thread per engine runs every stream's judgments, oldest first (about 0.1 s of
one core each on this project's machine), so a judgment never takes a decode worker.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import queue
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import structlog

from symbld.engines.base import EngineError

log = structlog.get_logger(__name__)

EXTRA = "symbld[turn]"
INSTALL_HINT = f"pip install '{EXTRA}' (pipecat-ai==1.14.0, installed with --no-deps: only its model file is used)"
DISTRIBUTION = "pipecat-ai"
MODEL_FILE = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
MODEL_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
MODEL_NAME = "smart-turn-v3.2-cpu"
SAMPLE_RATE = 16000
WINDOW = 8 * SAMPLE_RATE  # the model hears the last 8 s of the turn


def model_path() -> Path | None:
    """The model file inside the installed pipecat-ai wheel, or None when the extra is not installed.

    Found through the distribution's metadata, never by importing ``pipecat`` (its ``__init__`` needs
    dependencies that ``--no-deps`` leaves out)."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(MODEL_FILE)))
    return path if path.is_file() else None


def unavailable(field: str) -> EngineError:
    """The one error for semantic end of turn asked for without the extra."""
    return EngineError(f"{field} = \"semantic\" needs the turn model: {INSTALL_HINT}",
                       {"field": field, "extra": EXTRA}, code="bad_request")


class TurnModel:
    """The checked ONNX session; ``probability`` is thread-safe."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort
        from faster_whisper.feature_extractor import FeatureExtractor

        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != MODEL_SHA256:
            raise EngineError(f"{path}: SHA-256 {digest} is not the pinned {MODEL_SHA256}; reinstall {EXTRA}",
                              {"path": str(path), "sha256": digest})
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1  # decodes use the other core; more threads only contend
        so.inter_op_num_threads = 1
        so.log_severity_level = 4
        self.path = path
        self.session = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
        self._features = FeatureExtractor(feature_size=80, sampling_rate=SAMPLE_RATE, chunk_length=8)

    def probability(self, audio: np.ndarray) -> float:
        """P(the turn is complete) for float32 16 kHz audio that ends at the pause."""
        x = np.asarray(audio[-WINDOW:], dtype=np.float32)
        x = np.pad(x, (WINDOW - len(x), 0))  # shorter turns: silence in front, as the model was trained
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        features = self._features(x, padding=0)[:, : WINDOW // 160]
        out = self.session.run(None, {"input_features": features[None].astype(np.float32)})
        return float(np.ravel(out[0])[0])


def load_model() -> TurnModel | None:
    """The turn model, or None when the extra is not installed."""
    path = model_path()
    return TurnModel(path) if path is not None else None


class TurnJudge:
    """One thread that runs every stream's judgments in the order they were asked for."""

    def __init__(self, model: TurnModel) -> None:
        self.model = model
        self._q: queue.SimpleQueue[tuple[np.ndarray, Callable[[float | None], None]] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0  # judgments asked for and not answered
        self._thread = threading.Thread(target=self._run, name="symbld-turn", daemon=True)
        self._thread.start()

    def submit(self, audio: np.ndarray, done: Callable[[float | None], None]) -> None:
        """Judge ``audio`` (a copy the caller no longer touches); ``done(probability)`` runs on the judge
        thread (None if the model failed: the caller falls back to the fixed endpoint)."""
        with self._lock:
            self._pending += 1
        self._q.put((audio, done))

    def busy(self, limit: int = 2) -> bool:
        """``limit`` judgments already wait or run: a new one would answer after its pause mattered
        (about 0.1 s each on one thread)."""
        return self._pending >= limit

    def _run(self) -> None:
        while (item := self._q.get()) is not None:
            audio, done = item
            try:
                p: float | None = self.model.probability(audio)
            except Exception:
                log.exception("turn model failed")
                p = None
            with self._lock:
                self._pending -= 1
            try:
                done(p)
            except Exception:
                log.exception("turn callback failed")

    def close(self, timeout: float = 5.0) -> None:
        self._q.put(None)
        self._thread.join(timeout)
