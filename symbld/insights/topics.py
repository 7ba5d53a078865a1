"""Running key phrases of a conversation (``topic_response``), RAKE-style, standard library only.

Candidate phrases are runs of 1-3 content words between stopwords and punctuation (RAKE,
Rose et al. 2010). A phrase's weight grows with how often it and its words come back over
the conversation, and longer phrases weigh more than their single words. Scores are
normalised so the top topic is 1.0. Why not yake (measured in research/asr-engines.md §7):
it is LGPL/GPL-classified, pulls networkx/jellyfish/segtok, favours early positions (so it
needs windowing for a live call), and surfaced recogniser garbage as readily as this does.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from symbld.insights.stems import stemmer_for
from symbld.insights.text import MAX_CHARS, wordset
from symbld.languages import STEMMED_LANGUAGES

MAX_TOPICS = 10  # per topic_response
MAX_PHRASES = 5000  # tracked per conversation; the weakest are pruned beyond this
MAX_REFS = 20  # messageReferences kept per topic (the latest)
_LEN_WEIGHT = {1: 1.0, 2: 1.7, 3: 2.1}

STOPWORDS = wordset("""a about above after again against all almost also although always am among an and another
    any anybody anyone anything anyway anywhere are aren't around as at away back be became because become been before
    being below best better between both but by can can't cannot could couldn't did didn't do does doesn't
    doing don't done down during each either else enough etc even ever every everybody everyone everything
    few first for from further get gets getting go goes going gone gonna good got gotta great had hadn't has
    hasn't have haven't having he he'd he'll he's her here here's hers herself him himself his how how's
    however i i'd i'll i'm i've if in into is isn't it it's its itself just keep kind know known last later
    least less let let's lets like likely lot lots made make makes making many may maybe me mean might mine
    more most much must my myself need needs never new next no nobody none nor not nothing now of off oh ok
    okay on once one only onto or other others otherwise our ours ourselves out over own perhaps please
    pretty probably put quite rather really right said same say says see seem seems set shall she she'd
    she'll she's should shouldn't since so some somebody someone something sometimes somewhere soon sorry
    still such sure take taking talk talked tell than thank thanks that that's the their theirs them
    themselves then there there's these they they'd they'll they're they've thing things think this those
    though through thus to today together tomorrow too toward towards try um uh umm under until up upon us
    use used using very via want wanted wants was wasn't way we we'd we'll we're we've well went were weren't
    what what's whatever when where where's whether which while who who's whole whom whose why will with
    within without won't would wouldn't yeah yes yet you you'd you'll you're you've your yours yourself
    yourselves week weeks month months day days year years time times morning afternoon evening tonight
    yesterday monday tuesday wednesday thursday friday saturday sunday hi hey hello bye alright cool gonna
    wanna guess feel believe thought looks look looking sounds sound stuff bit little big able actually
    basically literally honestly totally definitely absolutely exactly anyway anyways send sent call called
    check update give gave told ask asked done doing does did send start started let's everyone everybody
    mr mrs ms dr two three four five six seven eight nine ten hundred thousand already again ago
    follow followed following reach reached circle touch base ping pinged sync meet met discuss discussed
    mention mentioned spoke speak spoken went came come comes bring brought share shared review reviewed
    finish finished fix fixed add added move moved handle handled prepare prepared write wrote written
    work worked working happen happened happens agree agreed decide decided remember forget forgot help
    helped leave left show showed shown find found keep kept seen saw happy glad nice fine awesome
    interesting quick quickly easy hard""")
_FRAGMENT = re.compile(r"[.,;:!?()\[\]\"“”\n\t-]+")
_WORD = re.compile(r"[A-Za-z][A-Za-z']*")
_LETTERS = re.compile(r"[^\W\d_]+")  # another language's words: any script, split at apostrophes ("l'ouverture")


def stopwords_for(language: str) -> frozenset[str] | None:
    """A language's stop words: ours for English, the ``stop-words`` package's for the others that
    have a Snowball stemmer too (symbld.languages.STEMMED_LANGUAGES); None where there is no list."""
    if language == "en":
        return STOPWORDS
    if language not in STEMMED_LANGUAGES:
        return None
    from stop_words import get_stop_words  # data only: imported when a conversation is in that language

    return frozenset(w.lower() for w in get_stop_words("nb" if language == "no" else language))


@dataclass
class _Phrase:
    key: tuple[str, ...]
    surfaces: Counter[str] = field(default_factory=Counter)
    count: int = 0
    refs: list[str] = field(default_factory=list)


def candidates(text: str, stopwords: frozenset[str] = STOPWORDS, word: re.Pattern[str] = _WORD,
               ) -> list[tuple[str, ...]]:
    """Runs of content words (lower-cased surface words), at most 3 long (the last 3 kept:
    English phrases end in their head noun)."""
    out = []
    for fragment in _FRAGMENT.split(text[:MAX_CHARS]):
        run: list[str] = []
        for raw in [*word.findall(fragment), ""]:
            w = raw.lower().replace("\u2019", "'")
            if w and w not in stopwords and len(w) >= 3 and "'" not in w:
                run.append(w)
                continue
            if run:
                out.append(tuple(run[-3:]))
            run = []
    return out


class TopicModel:
    """Accumulates phrases message by message; ``top()`` gives the current topics."""

    def __init__(self, conversation_id: str, language: str = "en") -> None:
        """``language``: the Whisper code of the text; one without a stop-word list gets no topics
        (its every word would be one)."""
        self._stopwords = stopwords_for(language)
        self._word = _WORD if language == "en" else _LETTERS
        self._stem = stemmer_for(language)
        self._namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"symbld:topics:{conversation_id}")
        self._phrases: dict[tuple[str, ...], _Phrase] = {}
        self._word_freq: Counter[str] = Counter()

    def add(self, message_id: str | None, text: str) -> None:
        if self._stopwords is None:
            return
        for run in candidates(text, self._stopwords, self._word):
            self._word_freq.update(self._stem(w) for w in run)
            # every 1-3 word piece of a run counts, so "marketing budget" recurs inside
            # "marketing budget approved"
            for n in range(1, len(run) + 1):
                for i in range(len(run) - n + 1):
                    self._count(message_id, run[i : i + n])
        if len(self._phrases) > MAX_PHRASES:
            keep = sorted(self._phrases.values(), key=self._raw, reverse=True)[: MAX_PHRASES // 2]
            self._phrases = {p.key: p for p in keep}

    def _count(self, message_id: str | None, words: tuple[str, ...]) -> None:
        key = tuple(self._stem(w) for w in words)
        phrase = self._phrases.get(key)
        if phrase is None:
            phrase = self._phrases[key] = _Phrase(key)
        phrase.surfaces[" ".join(words)] += 1
        phrase.count += 1
        if message_id and message_id not in phrase.refs:
            phrase.refs.append(message_id)
            del phrase.refs[:-MAX_REFS]

    def _raw(self, p: _Phrase) -> float:
        # the phrase's own repeats, plus how much its words recur elsewhere in the call
        echo = sum(self._word_freq[w] - p.count for w in p.key) / len(p.key)
        return _LEN_WEIGHT.get(len(p.key), 2.1) * (p.count + 0.5 * echo)

    def top(self, limit: int = MAX_TOPICS) -> list[dict[str, Any]]:
        """Topics in Symbl's shape, best first. A phrase qualifies once it recurs (count or
        its words) or has two or more words: one stray word is not a topic yet."""
        scored = []
        for p in self._phrases.values():
            raw = self._raw(p)
            if len(p.key) == 1 and raw < 2.0:
                continue
            scored.append((raw, p))
        scored.sort(key=lambda item: (-item[0], item[1].key))
        chosen: list[tuple[float, _Phrase]] = []
        for raw, p in scored:
            words = set(p.key)
            # one topic per idea: skip "budget" once "marketing budget" is in, and vice versa
            if any(words <= set(q.key) or set(q.key) <= words for _, q in chosen):
                continue
            chosen.append((raw, p))
            if len(chosen) == limit:
                break
        scored = chosen
        if not scored:
            return []
        best = scored[0][0]
        topics = []
        for raw, p in scored:
            surface = p.surfaces.most_common(1)[0][0]
            topics.append({
                "id": str(uuid.uuid5(self._namespace, " ".join(p.key))),
                "messageReferences": [{"id": ref, "relation": "text instance"} for ref in p.refs],
                "phrases": surface,
                "rootWords": [{"text": w} for w in surface.split()],
                "score": round(raw / best, 2),
                "type": "topic",
            })
        return topics
