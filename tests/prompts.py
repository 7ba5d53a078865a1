"""Recordings of people speaking Spanish, French, Italian and Russian, with their published texts.

Debian's Asterisk core sounds (installed by scripts/install-deps.sh) are telephone prompts read by
professional voice talent, each with the text it reads in the package's ``core-sounds-<lang>.txt``:

| language | package (audio / texts)                                      | speaker                       |
|----------|--------------------------------------------------------------|-------------------------------|
| es-MX    | asterisk-core-sounds-es-wav / asterisk-core-sounds-es 1.6.1  | es_MX_f_Allison (a woman)     |
| fr-CA    | asterisk-core-sounds-fr-wav / asterisk-core-sounds-fr 1.6.1  | fr_CA_f_June (a woman)        |
| it-IT    | asterisk-core-sounds-it-wav / asterisk-core-sounds-it 1.6.1  | it_IT_m_Carlo (a man)         |
| ru-RU    | asterisk-core-sounds-ru-wav / asterisk-core-sounds-ru 1.6.1  | ru_RU_f_IvrvoiceRU (a woman)  |

Nothing here is synthesised. The WAVs are 8 kHz mono (telephone prompts); :func:`load` brings
them to 16 kHz. Texts are published with some accents dropped ("numero", "contrasena") and, in the
Italian file, accented letters written as "?"; :func:`normalise` folds accents and punctuation on
both sides before words are compared.
"""

from __future__ import annotations

import gzip
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SOUNDS = Path("/usr/share/asterisk/sounds")
DOCS = Path("/usr/share/doc")
RATE = 16000
VOICES = {"es": "es_MX_f_Allison", "fr": "fr_CA_f_June", "it": "it_IT_m_Carlo", "ru": "ru_RU_f_IvrvoiceRU"}
TAGS = {"es": "es-ES", "fr": "fr-FR", "it": "it-IT", "ru": "ru-RU"}  # what a caller would ask for

# The evaluation set: 8 prompts per language, full sentences of 2 s or more (no digits, letters or
# one-word prompts, whose text the model may write as a numeral or spell differently). Chosen by
# length and content before any decode was seen, the same names in every language where they exist.
EVAL = {
    "es": ("conf-invalid", "conf-kicked", "conf-leaderhasleft", "agent-newlocation", "conf-getpin",
           "vm-savefolder", "auth-incorrect", "conf-getchannel"),
    "fr": ("conf-invalid", "conf-kicked", "conf-leaderhasleft", "agent-newlocation", "conf-getpin",
           "vm-savefolder", "auth-incorrect", "conf-getchannel"),
    "it": ("conf-invalid", "conf-kicked", "conf-leaderhasleft", "agent-newlocation", "conf-getpin",
           "vm-savefolder", "auth-incorrect", "conf-getchannel"),
    "ru": ("conf-invalid", "conf-kicked", "conf-leaderhasleft", "agent-newlocation", "conf-getpin",
           "vm-savefolder", "auth-incorrect", "conf-getchannel"),
}


@dataclass(frozen=True)
class Clip:
    language: str  # Whisper code: es, fr, it, ru
    name: str
    text: str
    path: Path

    def load(self) -> np.ndarray:
        """float32 mono at 16 kHz."""
        audio, rate = sf.read(self.path, dtype="float32", always_2d=True)
        mono = audio.mean(axis=1)
        return soxr.resample(mono, rate, RATE).astype(np.float32) if rate != RATE else mono


def available(language: str) -> bool:
    return (SOUNDS / VOICES[language]).is_dir() and _texts_path(language).is_file()


def _texts_path(language: str) -> Path:
    return DOCS / f"asterisk-core-sounds-{language}" / f"core-sounds-{language}.txt.gz"


def texts(language: str) -> dict[str, str]:
    """prompt name -> the text it reads, from the package's published list."""
    out: dict[str, str] = {}
    with gzip.open(_texts_path(language), "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            if ":" in line and not line.startswith(";"):
                name, text = line.split(":", 1)
                out[name.strip()] = text.strip()
    return out


def clip(language: str, name: str) -> Clip:
    return Clip(language, name, texts(language)[name], SOUNDS / VOICES[language] / f"{name}.wav")


def eval_set(language: str) -> list[Clip]:
    known = texts(language)
    voice = SOUNDS / VOICES[language]
    return [clip(language, n) for n in EVAL[language] if n in known and (voice / f"{n}.wav").is_file()]


def normalise(text: str) -> str:
    """Lower case, accents folded (the published texts drop some), punctuation and "?" dropped."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))
    folded = folded.replace("ё", "е")
    return " ".join(re.sub(r"[^\w\s]", " ", folded).split())


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
