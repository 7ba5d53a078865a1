"""Text helpers shared by the insight rules: sentence split, tokens, limits, language check.

Everything here is plain standard library so the analytics need no model download and
cost microseconds per sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Work caps: a message can be arbitrarily long (a recogniser that never found a pause, a
# pasted document). Rules only look at this much, so one message never stalls the worker.
MAX_CHARS = 4000
MAX_SENTENCES = 24
MAX_SENTENCE_WORDS = 60  # longer "sentences" are run-ons: classified, but with low confidence

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
_TOKEN = re.compile(r"[A-Za-z0-9]+(?:['\u2019][A-Za-z]+)?")

# Apostrophe-less contractions as recognisers (and lower-cased transcripts) write them,
# mapped to the spelled form the rules understand. Only the unambiguous ones: "well"
# (we'll) and "id" (I'd) are left alone on purpose.
_CONTRACTIONS = {
    "ill": "i'll",
    "im": "i'm",
    "ive": "i've",
    "lets": "let's",
    "youll": "you'll",
    "theyll": "they'll",
    "dont": "don't",
    "didnt": "didn't",
    "isnt": "isn't",
    "arent": "aren't",
    "cant": "can't",
    "wont": "won't",
    "whats": "what's",
    "hows": "how's",
    "wheres": "where's",
    "whos": "who's",
}

def wordset(text: str) -> frozenset[str]:
    """A set of whitespace-separated words (keeps long word lists readable)."""
    return frozenset(text.split())


# Frequent English function words: a sentence with none of them is not English (or is
# garbage), and the rules do not guess on it.
ENGLISH_FUNCTION_WORDS = wordset("""a an the and or but if of to in on at by for with from about into over after before
    i you he she it we they me him her us them my your our their this that these those
    is are was were be been am do does did have has had will would can could shall should
    may might must not no yes what who when where why how which there here let's i'll i'm
    we'll you'll don't it's that's what's so just please why any all up out""")


@dataclass(frozen=True)
class Token:
    text: str  # as written (case kept)
    norm: str  # lower case, contractions spelled out, curly apostrophe made straight
    start: int  # character offset in the sentence


@dataclass(frozen=True)
class Sentence:
    text: str
    offset: int  # character offset in the message content
    tokens: tuple[Token, ...]

    @property
    def words(self) -> list[str]:
        return [t.norm for t in self.tokens]


def tokenize(text: str) -> tuple[Token, ...]:
    out = []
    for m in _TOKEN.finditer(text):
        raw = m.group(0)
        norm = raw.lower().replace("\u2019", "'")
        norm = _CONTRACTIONS.get(norm, norm)
        out.append(Token(raw, norm, m.start()))
    return tuple(out)


def split_sentences(content: str) -> list[Sentence]:
    """Sentences of a message with their offsets; capped in characters and count."""
    content = content[:MAX_CHARS]
    sentences: list[Sentence] = []
    pos = 0
    for part in _SENTENCE_END.split(content):
        start = content.find(part, pos)
        pos = start + len(part)
        stripped = part.strip()
        if not stripped:
            continue
        start += len(part) - len(part.lstrip())
        sentences.append(Sentence(stripped, start, tokenize(stripped)))
        if len(sentences) >= MAX_SENTENCES:
            break
    return sentences


def english_ratio(words: list[str]) -> float:
    """Share of words that are common English function words (0 for an empty list)."""
    if not words:
        return 0.0
    return sum(w in ENGLISH_FUNCTION_WORDS for w in words) / len(words)


def looks_english(text: str, words: list[str]) -> bool:
    """Cheap guard against non-English and garbage: mostly ASCII letters and at least one
    common English function word (short utterances) or a fair share of them (long ones)."""
    if not words:
        return False
    letters = [c for c in text if c.isalpha()]
    if letters and sum(c.isascii() for c in letters) / len(letters) < 0.9:
        return False
    hits = sum(w in ENGLISH_FUNCTION_WORDS for w in words)
    if len(words) <= 3:
        return hits >= 1  # "Send it?" yes, "asdf qwer?" no
    return hits >= 1 and hits / len(words) >= 0.12
