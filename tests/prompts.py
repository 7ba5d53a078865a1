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

Two sets per language, both chosen by rules on the published texts before any decode was seen:

- ``dev_set``: the 8 prompts the feature was built and tuned on (``DEV``; the tests use them too);
- ``tune_set``: 40 other eligible prompts (below), neither dev nor held out: a larger development set;
- ``eval_set``: the held-out set, ``HELD_OUT`` prompts drawn with a fixed seed from every prompt of the
  voice's main folder that says at least ``MIN_WORDS`` words, at most ``MAX_SECONDS`` long, whose text
  has no digit (the model may write a numeral), no bracket (stage directions such as "(beep)",
  "[tentativo di]" are not said) and, in Italian, no "?" (the published file writes accented
  letters as "?"), leaving out the dev prompts.

Other Debian packages of prompts read by people were looked at and not used: asterisk-prompt-es-co,
asterisk-prompt-fr-armelle and asterisk-prompt-it-menardi ship no text of what their prompts say.
"""

from __future__ import annotations

import gzip
import random
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

# The development set: 8 prompts per language, full sentences of 2 s or more (no digits, letters or
# one-word prompts, whose text the model may write as a numeral or spell differently). Chosen by
# length and content before any decode was seen, the same names in every language where they exist.
# The feature was built and checked on these; figures come from the held-out eval_set.
DEV = {
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


def dev_set(language: str) -> list[Clip]:
    known = texts(language)
    voice = SOUNDS / VOICES[language]
    return [clip(language, n) for n in DEV[language] if n in known and (voice / f"{n}.wav").is_file()]


# The held-out set's rules (module docstring); fixed before any decode of it was seen.
HELD_OUT = 30
MIN_WORDS = 6
MAX_SECONDS = 15.0
SEED = 25


def _eligible(language: str, name: str, text: str) -> bool:
    path = SOUNDS / VOICES[language] / f"{name}.wav"
    if name in DEV[language] or not path.is_file() or len(normalise(text).split()) < MIN_WORDS:
        return False
    if re.search(r"[0-9\[\]()<>]", text) or (language == "it" and "?" in text):
        return False
    return bool(sf.info(path).duration <= MAX_SECONDS)


def eval_set(language: str, size: int = HELD_OUT) -> list[Clip]:
    """The held-out set: ``size`` prompts drawn with a fixed seed from the eligible ones."""
    known = texts(language)
    eligible = sorted(n for n, t in known.items() if _eligible(language, n, t))
    return [clip(language, n) for n in random.Random(SEED).sample(eligible, min(size, len(eligible)))]


def tune_set(language: str, size: int = 40) -> list[Clip]:
    """Eligible prompts that are not held out (nor dev): a second development set, for checking a change
    on more clips than the dev set's 8 without looking at the held-out set. ``size`` drawn with a
    seed of its own."""
    known = texts(language)
    held = {c.name for c in eval_set(language)}
    pool = sorted(n for n, t in known.items() if _eligible(language, n, t) and n not in held)
    return [clip(language, n) for n in random.Random(7).sample(pool, min(size, len(pool)))]


def normalise(text: str) -> str:
    """Lower case, accents folded (the published texts drop some), punctuation and "?" dropped."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))
    folded = folded.replace("ё", "е")
    return " ".join(re.sub(r"[^\w\s]", " ", folded).split())


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
