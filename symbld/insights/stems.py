"""Word stems for trackers and topics: "pricing", "prices" and "priced" meet at one stem.

The English (Porter 2) Snowball stemmer from the ``snowballstemmer`` package: a well-kept
implementation instead of hand-written suffix rules. Possessives and curly apostrophes are
normalised first so "client's" and "client’s" stem like "client".
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import snowballstemmer

_STEMMER = snowballstemmer.stemmer("english")


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    w = word.lower().replace("\u2019", "'")
    if w.endswith("'s"):
        w = w[:-2]
    stemmed: str = _STEMMER.stemWord(w.replace("'", ""))  # snowballstemmer ships no type hints
    return stemmed


# Whisper language -> Snowball algorithm (the languages both speak).
SNOWBALL = {"en": "english", "es": "spanish", "fr": "french", "de": "german", "it": "italian", "pt": "portuguese",
            "nl": "dutch", "ru": "russian", "sv": "swedish", "da": "danish", "no": "norwegian", "fi": "finnish",
            "ca": "catalan", "cs": "czech", "el": "greek", "hu": "hungarian", "id": "indonesian", "lt": "lithuanian",
            "ro": "romanian", "tr": "turkish", "ar": "arabic", "hy": "armenian", "eu": "basque", "ta": "tamil",
            "ne": "nepali", "sr": "serbian", "yi": "yiddish", "hi": "hindi", "fa": "persian", "pl": "polish"}


@lru_cache(maxsize=64)
def stemmer_for(language: str) -> Callable[[str], str]:
    """The stem function of a language (a Whisper code): English's is :func:`stem`; another
    language's Snowball stemmer where there is one (lower case only where there is none)."""
    if language == "en":
        return stem
    algorithm = SNOWBALL.get(language)
    if algorithm is None or algorithm not in snowballstemmer.algorithms():
        return str.lower
    stemmer = snowballstemmer.stemmer(algorithm)

    @lru_cache(maxsize=65536)
    def stem_word(word: str) -> str:
        stemmed: str = stemmer.stemWord(word.lower().replace("\u2019", "'"))  # no type hints in snowballstemmer
        return stemmed

    return stem_word
