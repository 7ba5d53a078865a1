"""Word stems for trackers and topics: "pricing", "prices" and "priced" meet at one stem.

The English (Porter 2) Snowball stemmer from the ``snowballstemmer`` package: a well-kept
implementation instead of hand-written suffix rules. Possessives and curly apostrophes are
normalised first so "client's" and "client’s" stem like "client".
"""

from __future__ import annotations

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
