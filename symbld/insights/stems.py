"""A tiny suffix stemmer: enough to make "pricing", "prices" and "priced" meet at "pric".

Trackers and topics need inflections to match, not linguistic roots; a Porter stemmer or a
lemmatiser (spaCy, 126 MB) would be heavier than the job. Irregular forms are not handled.
"""

from __future__ import annotations

from functools import lru_cache

_VOWELS = set("aeiouy")


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    w = word.lower().replace("\u2019", "'")
    if w.endswith("'s"):
        w = w[:-2]
    w = w.replace("'", "")
    if len(w) <= 3:
        return w
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith("sses"):
        w = w[:-2]
    elif w.endswith("ing") and len(w) > 5 and set(w[:-3]) & _VOWELS:
        w = w[:-3]
        if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsz":
            w = w[:-1]  # running → run
    elif w.endswith("ed") and len(w) > 4 and set(w[:-2]) & _VOWELS:
        w = w[:-2]
        if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsz":
            w = w[:-1]  # planned → plan
        elif w.endswith("i"):
            w = w[:-1] + "y"  # applied → apply
    elif w.endswith(("ches", "shes", "xes", "zes")):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    if w.endswith("e") and len(w) > 3:
        w = w[:-1]  # price / pricing / priced → pric
    return w
