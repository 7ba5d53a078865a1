"""The community-1 speaker-embedding network, extracted from ``libmoonshine.so``.

``moonshine-voice==0.1.0`` is the one registry package that carries pyannote's community-1
networks: they are compiled into its native library as ORT flatbuffers
(``cppannote::embedded_community1::embedding_ort_data``). Later versions download them instead,
so the version is pinned and the bytes are checked against the SHA-256 below before onnxruntime
sees them. Extraction reads the ELF symbol table (pyelftools); the library itself is never loaded.
Nothing is written to disk: the 7 MB are read once per process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from pathlib import Path
from typing import Any

from symbld.diarization import EXTRA

PACKAGE = "moonshine-voice==0.1.0"
_SYMBOL = "_ZN9cppannote19embedded_community118embedding_ort_dataE"  # embedded_community1::embedding_ort_data
EMBEDDING_SHA256 = "6e4af7d49562e6e7042672e444d6394935cb2c23c3a7dd4919da45922b91735b"
EMBEDDING_DIM = 256


class ModelError(RuntimeError):
    """The speaker model cannot be had: one line saying why and what to install."""


def library_path() -> Path:
    spec = importlib.util.find_spec("moonshine_voice")
    if spec is None or spec.origin is None:
        raise ModelError(f"speaker diarization needs the [{EXTRA}] extra ({PACKAGE}): pip install 'symbld[{EXTRA}]'")
    lib = Path(spec.origin).parent / "libmoonshine.so"
    if not lib.is_file():
        raise ModelError(f"{lib} is missing: reinstall {PACKAGE}")
    return lib


def read_symbol(lib: Path, name: str) -> bytes:
    """The bytes of one defined symbol of an ELF shared library (its section's file offset)."""
    from elftools.elf.elffile import ELFFile

    with lib.open("rb") as f:
        elf = ELFFile(f)
        for table in (".symtab", ".dynsym"):
            section: Any = elf.get_section_by_name(table)  # a SymbolTableSection
            if section is None:
                continue
            for sym in section.get_symbol_by_name(name) or []:
                if not isinstance(sym["st_shndx"], int) or sym["st_size"] == 0:
                    continue
                holder = elf.get_section(sym["st_shndx"])
                f.seek(holder["sh_offset"] + sym["st_value"] - holder["sh_addr"])
                return f.read(sym["st_size"])
    raise ModelError(f"{lib} has no symbol {name}: the installed moonshine-voice is not {PACKAGE}")


def embedding_model_bytes() -> bytes:
    blob = read_symbol(library_path(), _SYMBOL)
    digest = hashlib.sha256(blob).hexdigest()
    if digest != EMBEDDING_SHA256:
        raise ModelError(f"the speaker model in {library_path()} has SHA-256 {digest}, expected {EMBEDDING_SHA256} "
                         f"(install {PACKAGE})")
    return blob


_lock = threading.Lock()
_session: Any = None


def embedding_session() -> Any:
    """One onnxruntime session per process, shared by every connection (``run`` is thread-safe).
    One intra-op thread: several streams diarize at once on two cores."""
    global _session
    with _lock:
        if _session is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            # Each print's input is as long as its speech: onnxruntime's arena keeps the largest it has seen
            # for good and grew the daemon's RSS whenever a longer one came (a leak to a soak test). Without
            # the arena the buffers go back each time; no slower (0.470 against 0.489 CPU-s a print, 2-12 s).
            opts.enable_cpu_mem_arena = False
            _session = ort.InferenceSession(embedding_model_bytes(), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        return _session
