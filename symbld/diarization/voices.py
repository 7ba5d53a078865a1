"""Known voices: voice prints enrolled by name, kept in ``<state_dir>/voices/voices.json`` (0600).

A print is the community-1 embedding of the speech in an enrolment recording (Silero VAD keeps
only the frames with voice; no audio is kept). In a diarized connection a speaker whose centroid
matches an enrolled print (cosine ≥ ``ACCEPT``, and ahead of the next voice by ``MARGIN``) is
named: ``from.name`` = the name, ``from.userId`` = its userId. A stranger stays "Speaker N":
naming a stranger is worse than not naming a known voice, so both bars are set high (the same
reader's clips score 0.60–0.81, different people at most 0.39: docs/diarization.md).

The file is replaced atomically (written beside, fsync'ed, renamed): a failed add or remove
leaves it as it was.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from symbld.errors import ControlError

ACCEPT = 0.6
MARGIN = 0.1
MAX_NAME = 200
MAX_VOICES = 500
MIN_SPEECH_SECONDS = 1.0
_NS = uuid.UUID("3c7e9b7a-2f0d-4d0e-8a63-6a1d8f2e9b11")
_lock = threading.Lock()


def book_path(state_dir: Path) -> Path:
    return state_dir / "voices" / "voices.json"


def load(state_dir: Path) -> dict[str, dict[str, Any]]:
    """name → {"userId", "print", "speechSeconds", "addedAt"}; empty when none are enrolled."""
    try:
        data = json.loads(book_path(state_dir).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):  # unreadable: diarize without names rather than refuse to start
        return {}
    return data if isinstance(data, dict) else {}


def _save(state_dir: Path, book: dict[str, dict[str, Any]]) -> None:
    path = book_path(state_dir)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".voices-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp makes it 0600
            json.dump(book, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        raise ControlError("bad_request", f"name must be 1 to {MAX_NAME} printable characters",
                           {"argument": "name"})
    return name


def summary(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "userId": entry.get("userId"), "speechSeconds": entry.get("speechSeconds"),
            "addedAt": entry.get("addedAt")}


def speech_of(path: str) -> np.ndarray:
    """The voiced frames of an audio file (16 kHz float), or a bad_request naming what is wrong."""
    from symbld.audio.base import SourceError
    from symbld.audio.file import FileSource
    from symbld.engines.local.vad import FRAME, SileroModel

    try:
        pcm = b"".join(FileSource(path, realtime=False).frames())
    except SourceError as e:
        raise ControlError(e.code, e.message, {**e.details, "argument": "path"}) from None
    audio = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.float32) / 32768
    vad = SileroModel().new_state()
    frames = [audio[i : i + FRAME] for i in range(0, len(audio) - FRAME + 1, FRAME)]
    voiced = [f for f in frames if vad(f) >= 0.5]
    seconds = len(voiced) * FRAME / 16000
    if seconds < MIN_SPEECH_SECONDS:
        raise ControlError("bad_request", f"{path}: {seconds:.1f} s of speech; a voice needs at least "
                           f"{MIN_SPEECH_SECONDS:.0f} s", {"argument": "path", "speechSeconds": round(seconds, 2)})
    return np.concatenate(voiced)


def add(state_dir: Path, name: str, user_id: str | None, path: str) -> dict[str, Any]:
    """Enrol ``name`` from a recording of that person alone."""
    from symbld.diarization import embedder  # the [diarize] extra

    name = check_name(name)
    speech = speech_of(path)
    vec = embedder.embed(speech)
    if vec is None:
        raise ControlError("bad_request", f"{path}: no voice print could be taken", {"argument": "path"})
    return add_print(state_dir, name, user_id, vec, len(speech) / 16000)


def add_kept(state_dir: Path, name: str, user_id: str | None, kept: dict[str, Any]) -> dict[str, Any]:
    """Enrol ``name`` from a past speaker's kept print (diarization/speaker_prints.py)."""
    name = check_name(name)
    seconds = float(kept.get("speechSeconds") or 0.0)
    vec = np.asarray(kept.get("print") or [], dtype=np.float32)
    if seconds < MIN_SPEECH_SECONDS or vec.ndim != 1 or not vec.size or not np.isfinite(vec).all():
        raise ControlError("bad_request", f"speaker {kept.get('name')!r} has {seconds:.1f} s of speech; a voice "
                           f"needs at least {MIN_SPEECH_SECONDS:.0f} s", {"argument": "speaker",
                                                                          "speechSeconds": seconds})
    return add_print(state_dir, name, user_id, vec / max(float(np.linalg.norm(vec)), 1e-9), seconds)


def add_print(state_dir: Path, name: str, user_id: str | None, vec: np.ndarray, seconds: float) -> dict[str, Any]:
    with _lock:
        book = load(state_dir)
        if name in book:
            raise ControlError("bad_request", f"a voice named {name!r} is enrolled already; remove it first",
                               {"argument": "name", "name": name})
        if len(book) >= MAX_VOICES:
            raise ControlError("limit_exceeded", f"at most {MAX_VOICES} voices", {"limit": MAX_VOICES})
        book[name] = {"userId": user_id or name, "print": [round(float(x), 6) for x in vec],
                      "speechSeconds": round(seconds, 2),
                      "addedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        _save(state_dir, book)
    return summary(name, book[name])


def remove(state_dir: Path, name: str) -> dict[str, Any]:
    with _lock:
        book = load(state_dir)
        if name not in book:
            raise ControlError("bad_request", f"no voice named {name!r}", {"argument": "name", "name": name})
        gone = book.pop(name)
        _save(state_dir, book)
    return summary(name, gone)


class Matcher:
    """Names a speaker's centroid after the enrolled voice it clearly is, or not at all."""

    def __init__(self, book: dict[str, dict[str, Any]]) -> None:
        self.names = list(book)
        self.users = [book[n].get("userId") or n for n in self.names]
        prints = [np.asarray(book[n]["print"], dtype=np.float32) for n in self.names]
        self.prints = np.stack([p / max(float(np.linalg.norm(p)), 1e-9) for p in prints]) if prints else None

    def match(self, centroid: np.ndarray) -> dict[str, Any] | None:
        if self.prints is None:
            return None
        scores = self.prints @ centroid
        order = np.argsort(scores)[::-1]
        best = float(scores[order[0]])
        second = float(scores[order[1]]) if len(order) > 1 else -1.0
        if best < ACCEPT or best - second < MARGIN:
            return None
        i = int(order[0])
        return {"id": str(uuid.uuid5(_NS, f"{self.names[i]}/{self.users[i]}")), "name": self.names[i],
                "userId": self.users[i]}
