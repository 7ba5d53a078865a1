"""Rule-based classification of one sentence: question, action item, follow-up.

Why rules: on 2 shared cores with no model download allowed, hand-written rules over
tokens cost ~0.05 ms per sentence, need no data files and measured F1 >= 0.9 on a labelled
meeting set (docs/insights.md). The rules read both punctuated text ("Can you send it by
Friday?") and recogniser text ("can you send it by friday").

Each rule gives a confidence; the caller drops what is under the connection's threshold.
Confidence is a calibrated-by-hand guess of how often that rule is right on the set:
strong signals (a question mark, "I will", "let's", "please") ~0.9, weaker ones (a bare
imperative, "we should") 0.7-0.8, hedged or run-on text below 0.5 so the default
threshold drops it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from symbld.insights.text import MAX_SENTENCE_WORDS, Sentence, looks_english, wordset

# Words a sentence may open with that carry no meaning for the rules.
DISCOURSE = wordset("""so and okay ok um uh umm erm er yeah yes alright oh hey hi also now then but anyway
    right great cool thanks sorry sure perfect awesome""")
# Two-word openers: "thank you, I'll…", "sounds good, let's…".
OPENER_PAIRS = (["thank", "you"], ["sounds", "good"], ["got", "it"], ["all", "right"], ["no", "problem"])
WH = wordset("what what's how how's when where where's who who's why which whose")
AUX = wordset("""do does did is are was were can could would will should shall have has had may might
    isn't aren't wasn't weren't don't doesn't didn't can't couldn't won't wouldn't shouldn't
    haven't hasn't""")
SUBJECT_WORDS = wordset("""i you we they he she it there this that the a an anyone anybody someone somebody
    everyone everybody our your my his her their these those all any we're you're they're""")
REQUEST_SUBJECTS = wordset("you someone somebody anyone anybody we u everyone")
# Verbs after "can you" that ask about perception or opinion, not for a task.
NON_TASK_VERBS = wordset("hear see believe imagine think guess agree like prefer say be feel remember understand")
# After "will" / "going to" these predict or describe a state, not a task ("they're going to
# love this", "you'll need a VPN").
STATE_VERBS = NON_TASK_VERBS | wordset("love hate enjoy want need know notice find appreciate")
PERSONAL = wordset("i we you they he she")
# "I'll" etc. carry subject and modal in one token.
SUBJECT_MODAL = {
    "i'll": "self", "we'll": "self", "you'll": "you", "they'll": "other", "he'll": "other",
    "she'll": "other",
}
SUBJECT_GOING = {"i'm": "self", "we're": "self", "you're": "you", "they're": "other"}
SUBJECT_HAVE = {"i've": "self", "we've": "self", "you've": "you", "they've": "other"}
NEGATIVE_SUBJECTS = wordset("nobody no-one none nothing")
SELF = frozenset({"i", "we"})
PRONOUN_KIND = {"i": "self", "we": "self", "you": "you", "they": "other", "he": "other", "she": "other",
                "someone": "someone", "somebody": "someone", "everyone": "someone", "everybody": "someone"}

OPINION_VERBS = wordset("think guess feel believe suppose mean reckon")
HEDGES = wordset("probably maybe perhaps possibly might")
ADVERBS = wordset("also just quickly definitely then still really actually first go ahead and try to")

# Whole-utterance fillers: tag questions and rhetorical asides that end with "?" but ask nothing.
RHETORICAL = frozenset((
    "right", "you know", "isn't it", "is it", "know what i mean", "you know what i mean", "can you believe it",
    "how about that", "yeah right", "really", "huh", "eh", "sure", "ok", "okay", "no way", "seriously",
    "am i right", "see what i mean", "don't you think", "you see", "who knows", "who cares", "why not",
    "what else is new", "guess what", "make sense", "you know what", "isn't that something", "go figure",
    "so what", "what the heck", "whatever", "come on", "hmm", "oh really", "is that right", "right right",
))
_EXCLAMATORY = re.compile(r"^(?:what an? |how (?:cool|great|nice|awesome|crazy|funny|weird|amazing|sad|"
                          r"lucky|bad|good|interesting|annoying) (?:is|was) (?:that|this)\b)")

OPEN_QUESTION_NOUNS = wordset("""update updates news questions question thoughts comments progress luck idea
    ideas objections concerns feedback blockers""")

# First words that make a sentence an instruction. Kept to verbs that are rarely a
# sentence-opening noun in meetings; the ambiguous ones are checked against the next word.
IMPERATIVE_VERBS = wordset("""send update review add check fix schedule set book call email forward share
    prepare finalize submit write create draft put move take get follow reach ping ask tell confirm merge
    deploy ship file sign invite organize organise document clean test run start finish complete plan
    loop keep remind notify circulate upload pay order make remember go bring reply respond
    escalate assign close open grab pull push double-check investigate look talk find
    contact print compile summarize summarise cancel postpone reschedule coordinate arrange
    verify validate rerun rewrite refactor install configure approve double""")
# ...followed by one of these, the first word is a noun or a verb in another mood ("Update on the
# audit", "Check is done", "Call was fine").
_NOT_IMPERATIVE_NEXT = wordset("on is was were's are for from of has had went by")

_MODALS = (
    ("will", 0.88), ("shall", 0.85), ("must", 0.85), ("should", 0.72), ("gonna", 0.8),
)
_OBLIGATION = ("need to", "needs to", "have to", "has to", "got to", "gotta", "ought to")

_FOLLOW_UP = re.compile(
    r"\bfollow(?:ing)? up\b|\bget(?:ting)? back to\b|\bcircle back\b|\btouch base\b|\bcheck in with\b"
    r"|\bcheck back\b|\breach out\b|\breconnect\b|\breconvene\b|\bregroup\b|\bsync (?:up|again|back)\b"
    r"|\bsync (?:on|next|tomorrow|later|monday|tuesday|wednesday|thursday|friday)\b"
    r"|\bping (?:you|me|him|her|them|us)\b|\bmeet (?:again|up)\b|\bcatch up\b|\bloop back\b"
    r"|\btalk (?:again|later)\b|\b(?:talk|speak) (?:to|with) (?:you|them|him|her|us) (?:again|later)\b"
    r"|\bcall (?:you|them|him|her|me) back\b"
    r"|\b(?:schedule|set up|setup|book|arrange|plan|organi[sz]e|have|put) (?:a |an |another |the |some )?"
    r"(?:quick |short |brief |follow up |separate |second |new |)(?:call|meeting|sync|chat|check in|"
    r"session|catch up|time)\b(?! room)"
)


@dataclass
class Classification:
    question: float = 0.0
    action: float = 0.0
    follow_up: float = 0.0
    # Who the action is on: "self" (I/we/let's), "you", "someone", "other", "name".
    subject_kind: str | None = None
    subject_name: str | None = None  # a named person in the subject or vocative slot
    reasons: list[str] = field(default_factory=list)


def _strip_openers(words: list[str]) -> int:
    i = 0
    while i < len(words) - 1:
        if words[i] in DISCOURSE:
            i += 1
        elif words[i : i + 2] in OPENER_PAIRS and i + 2 < len(words):
            i += 2
        else:
            break
    return i


def _is_name_token(sentence: Sentence, i: int) -> bool:
    """A plausible person name at token i: not a known function/verb word. In punctuated text
    it must be capitalised; in lower-case recogniser text any unknown word may be one."""
    tok = sentence.tokens[i]
    w = tok.norm
    if w in SUBJECT_WORDS or w in AUX or w in WH or w in DISCOURSE or w in IMPERATIVE_VERBS:
        return False
    if w in PRONOUN_KIND or w in SUBJECT_MODAL or w in SUBJECT_GOING or "'" in w or not w.isalpha():
        return False
    if w in {"let", "let's", "please", "thanks", "thank", "team", "not", "never", "always", "maybe"}:
        return False
    has_upper = any(t.text[:1].isupper() for t in sentence.tokens[i + 1 :]) or i > 0
    if has_upper and not tok.text[:1].isupper():
        return False
    return len(w) >= 2


def _modal_after(words: list[str], j: int) -> tuple[float, int] | None:
    """If words[j:] starts a present/future commitment ("will", "need to", "are going to",
    "'ll have to"), return (confidence, index of the word after it)."""
    if j >= len(words):
        return None
    w = words[j]
    nxt = " ".join(words[j : j + 2])
    for phrase in _OBLIGATION:
        if nxt == phrase or (phrase.count(" ") == 0 and w == phrase):
            return 0.85, j + phrase.count(" ") + 1
    if w in ("am", "is", "are") and words[j + 1 : j + 3] == ["going", "to"]:
        return 0.85, j + 3
    if w in ("am", "is", "are") and words[j + 1 : j + 2] == ["gonna"]:
        return 0.8, j + 2
    for modal, conf in _MODALS:
        if w == modal:
            # "will need to", "should have to" chain into the obligation.
            chained = _modal_after(words, j + 1)
            if chained and modal != "should":
                return max(conf, chained[0]), chained[1]
            return conf, j + 1
    return None


def _verb_follows(words: list[str], k: int) -> tuple[bool, bool]:
    """(is there a task verb at k after optional adverbs, was a hedge seen)."""
    hedged = False
    while k < len(words) and (words[k] in ADVERBS or words[k] in HEDGES):
        hedged = hedged or words[k] in HEDGES
        k += 1
    if k >= len(words):
        return False, hedged
    w = words[k]
    if w in ("not", "never", "be") and not (w == "be" and k + 1 < len(words) and words[k + 1].endswith("ing")):
        return False, hedged
    if w in SUBJECT_WORDS and w not in ("all",):
        return False, hedged
    return True, hedged


def _subject_and_modal(
    sentence: Sentence, words: list[str], i: int
) -> tuple[str | None, str | None, tuple[float, int] | None]:
    """(kind, name, (confidence, index after the modal)) of a subject + modal at position i."""
    w = words[i]
    j = i + 1
    if w in SUBJECT_MODAL:
        return SUBJECT_MODAL[w], None, _modal_after(words, j) or (0.88, j)
    if w in SUBJECT_GOING:
        if words[j : j + 2] == ["going", "to"]:
            return SUBJECT_GOING[w], None, (0.85, j + 2)
        return SUBJECT_GOING[w], None, (0.8, j + 1) if words[j : j + 1] == ["gonna"] else None
    if w in SUBJECT_HAVE:
        return SUBJECT_HAVE[w], None, (0.85, j + 2) if words[j : j + 2] == ["got", "to"] else None
    if w in PRONOUN_KIND:
        return PRONOUN_KIND[w], None, _modal_after(words, j)
    if w in ("the", "our", "your") and i + 2 < len(words) and words[i + 1] in ("team", "group", "owner"):
        return "other", None, _modal_after(words, i + 2)
    if _is_name_token(sentence, i):
        modal = _modal_after(words, j)
        if modal:
            return "name", sentence.tokens[i].text, modal
    return None, None, None


_KIND_CAP = {"someone": 0.75, "other": 0.7, "name": 0.82}


def _commitment(sentence: Sentence, words: list[str], i: int, c: Classification) -> float:
    """<subject> <modal> <verb> at position i: "I will…", "Mike needs to…", "we're going to…"."""
    if i >= len(words):
        return 0.0
    kind, name, modal = _subject_and_modal(sentence, words, i)
    if not modal or kind is None:
        return 0.0
    conf, k = modal
    has_verb, hedged = _verb_follows(words, k)
    if not has_verb or (k < len(words) and words[k] in STATE_VERBS and words[k + 1 : k + 2] != ["to"]):
        return 0.0  # "you should see the dashboard now" reports, it does not assign
    conf = min(conf, _KIND_CAP.get(kind, 1.0))
    if hedged:
        conf = 0.4
    c.subject_kind, c.subject_name = kind, name
    c.reasons.append("commitment")
    return conf


_CLAUSE_SUBJECTS = frozenset({"i", "we", *SUBJECT_MODAL, *SUBJECT_GOING})


def _comma_before(sentence: Sentence, j: int) -> bool:
    prev = sentence.tokens[j - 1]
    return "," in sentence.text[prev.start + len(prev.text) : sentence.tokens[j].start]


def _commitment_after_clause(sentence: Sentence, words: list[str], i: int, c: Classification) -> float:
    """A commitment after a comma: "That one is on me, I will send it." / "If it breaks, I'll fix it"."""
    for j in range(i + 1, len(words) - 1):
        if words[j] in _CLAUSE_SUBJECTS and _comma_before(sentence, j):
            conf = _commitment(sentence, words, j, c)
            if conf:
                return min(conf, 0.85)
    return 0.0


def _wh_question(first: str, second: str) -> bool:
    # "what's the status" yes; "what a mess" (exclamation) and "when we launch" (a clause) no
    clause = (  # "what i'm saying is", "when it's done, ..."
        second in PERSONAL or second in SUBJECT_MODAL or second in SUBJECT_GOING or second in ("it's", "there's")
    )
    return first in WH and second not in ("a", "an") and not (clause and first != "how")


def _aux_question(first: str, second: str) -> bool:
    # "do we have", "is the server up", "can you send"; "do it now" is an instruction
    if first not in AUX or not (second in SUBJECT_WORDS or second in REQUEST_SUBJECTS):
        return False
    return not (first == "do" and second in ("it", "this", "that"))


# Questions asked as statements: "I was wondering whether…", "I'd like to know why…", "not sure if…".
_INDIRECT_QUESTION = re.compile(
    r"^(?:(?:i was|i'm|i am|we were|we're) )?wondering (?:if|whether|what|why|how|when|who|where)\b"
    r"|^i wonder (?:if|whether|what|why|how|when|who|where)\b"
    r"|^(?:i'd|i would|we'd|we would) (?:like|love|want) to (?:know|understand|hear|find out) "
    r"(?:if|whether|what|why|how|when|who|where)\b"
    r"|^(?:i'm|i am|we're|we are) curious (?:if|whether|what|why|how|when|who|where|about)\b"
    r"|^(?:(?:i'm|i am|we're|we are) )?not (?:sure|certain|clear) (?:if|whether|what|why|how|when|who|where)\b"
)


def _question(sentence: Sentence, words: list[str], i: int, core: list[str], ends_q: bool) -> float:
    first = core[0]
    second = core[1] if len(core) > 1 else ""
    if ends_q:
        return 0.92 if len(words) >= 2 else 0.7
    if _wh_question(first, second) or _aux_question(first, second):
        return 0.82
    if first in AUX and second and _is_name_token(sentence, i + 1) and first not in ("will", "shall"):
        return 0.7
    if first in ("any", "anything", "anyone", "anybody") and (
        second in OPEN_QUESTION_NOUNS or second in ("else", "know", "have", "seen", "want", "other")
    ):
        return 0.78
    if (
        len(core) >= 4
        and core[-1] in ("right", "correct")
        and core[-2] not in ("it", "that", "this", "all", "out", "turn", "go", "get", "got", "exactly", "just")
    ):
        return 0.6  # a recogniser's tag question: "the launch is friday right"
    if core[:2] == ["how", "about"] or _INDIRECT_QUESTION.match(" ".join(core)):
        return 0.72
    return 0.0


def classify(sentence: Sentence) -> Classification:
    c = Classification()
    words = sentence.words
    if not words or not looks_english(sentence.text, words):
        return c
    joined = " ".join(words)
    if joined in RHETORICAL or _EXCLAMATORY.match(joined):
        return c
    ends_q = sentence.text.rstrip().endswith("?")
    i = _strip_openers(words)
    core = words[i:]
    core_joined = " ".join(core)
    if core_joined in RHETORICAL:
        return c

    # A vocative name before a request: "John, can you…" / "tom can you…".
    vocative = None
    if (
        len(core) >= 3
        and core[1] in AUX
        and core[2] in REQUEST_SUBJECTS
        and _is_name_token(sentence, i)
    ):
        vocative = sentence.tokens[i].text
        i += 1
        core = words[i:]

    # ---- question ----
    first = core[0]
    second = core[1] if len(core) > 1 else ""
    opinion = (first in SELF and second in OPINION_VERBS) or core[:3] == ["i", "feel", "like"]
    c.question = _question(sentence, words, i, core, ends_q)
    if c.question:
        c.reasons.append("question")

    # ---- action item ----
    said = any(w in ("said", "told", "mentioned", "promised", "already", "yesterday") for w in core)
    vetoed = opinion or core[:3] == ["in", "my", "opinion"] or "honestly" in core[:2]
    if vetoed or said or first in NEGATIVE_SUBJECTS or core[:2] == ["no", "one"]:
        action = 0.0
    else:
        action = _action(sentence, words, i, core, c)
    if vocative and action:
        c.subject_kind, c.subject_name = "name", vocative
    c.action = action

    if action and _FOLLOW_UP.search(joined):
        c.follow_up = min(0.92, action + 0.02)
        c.reasons.append("follow_up")

    if len(words) > MAX_SENTENCE_WORDS:
        # A run-on of this length is a recogniser that never paused or pasted text: the
        # rules saw a fragment of it, so never claim it with confidence.
        c.question = min(c.question, 0.3)
        c.action = min(c.action, 0.3)
        c.follow_up = min(c.follow_up, 0.3)
    return c


def _action_item_label(core: list[str], c: Classification) -> float:
    """ "action item for me: update the forecast" """
    if "action" not in core:
        return 0.0
    k = core.index("action")
    if core[k + 1 : k + 2] not in (["item"], ["items"]):
        return 0.0
    after = core[k + 2 :]
    if after[:2] in (["for", "me"], ["for", "us"]):
        c.subject_kind = "self"
    if len(after) >= 2:
        c.reasons.append("action item")
        return 0.85
    return 0.0


def _lets(core: list[str], c: Classification) -> float | None:
    """let's / let us / let me <verb>; None when the sentence is not a "let's" at all."""
    first = core[0]
    if not (first in ("let's", "lets") or core[:2] in (["let", "us"], ["let", "me"])):
        return None
    rest = core[1:] if first in ("let's", "lets") else core[2:]
    cheer = rest == ["go"]  # "Let's go!" cheers, it does not assign
    if rest and not cheer and rest[0] not in ("see", "say", "think", "be", "hope", "not") and rest[:2] != [
        "just", "say",
    ]:
        c.subject_kind = "self"
        c.reasons.append("lets")
        return 0.9
    return 0.0


def _please(core: list[str], c: Classification) -> float:
    """please <verb> ... / <verb> ... please / can you ... please"""
    if "please" not in core or len(core) < 3:
        return 0.0
    first, second = core[0], core[1]
    if first == "please":
        c.reasons.append("please")
        c.subject_kind = c.subject_kind or "you"
        return 0.9
    if first in IMPERATIVE_VERBS or (first in AUX and second in REQUEST_SUBJECTS):
        c.reasons.append("please")
        return 0.9
    return 0.0


def _reminder(core: list[str], c: Classification) -> float:
    """make sure / remember to / don't forget to / be sure to / go ahead and"""
    if core[:2] in (["make", "sure"], ["remember", "to"], ["be", "sure"], ["go", "ahead"]) or core[:3] == [
        "don't", "forget", "to",
    ]:
        c.subject_kind = c.subject_kind or "you"
        c.reasons.append("imperative")
        return 0.88
    return 0.0


def _request(core: list[str], c: Classification) -> float | None:
    """can/could/would/will you|someone|we <verb>; None when the sentence is not such a request."""
    first, second = core[0], core[1] if len(core) > 1 else ""
    if first not in ("can", "could", "would", "will") or second not in REQUEST_SUBJECTS:
        return None
    k = 2
    while k < len(core) and core[k] in ADVERBS | {"please", "maybe", "possibly"}:
        k += 1
    if k < len(core) and core[k] not in NON_TASK_VERBS and core[k] not in SUBJECT_WORDS | {"not"}:
        c.subject_kind = c.subject_kind or ("self" if second == "we" else "you")
        c.reasons.append("request")
        return 0.85
    return 0.0


# "It would be great if you could…", "next step is to…", "the contract needs to be signed".
_WISH = re.compile(
    r"^(?:it would|it'd|that would|that'd) be (?:great|nice|helpful|good|awesome|ideal|lovely|amazing) "
    r"if (you|someone|somebody|anyone|anybody|we|\w+) (?:could|can|would) (?!not\b)\w+"
)
_NEXT_STEP = re.compile(r"^(?:the |our |my |a )?next steps? (?:is|are|will be|would be) to (?!be\b)\w+")
_PASSIVE_OBLIGATION = re.compile(r"\b(?:has|have|needs|need|must|got) (?:to )?be (\w+)\b")
# Participles after "has to be" that describe, not assign ("it has to be said").
_NOT_TASK_PARTICIPLES = wordset("said noted expected seen known used allowed called considered mentioned")
_IRREGULAR_PARTICIPLES = wordset("""done sent written signed built made paid set put sold shipped shown taken given
    redone rewritten rerun run bought cut kept held read told sorted""")


def _phrased_request(core: list[str], c: Classification) -> float:
    """Requests and duties phrased as wishes, plans or passives."""
    joined = " ".join(core)
    m = _WISH.match(joined)
    if m:
        c.subject_kind = c.subject_kind or ("self" if m.group(1) == "we" else "you")
        c.reasons.append("wish")
        return 0.8
    if _NEXT_STEP.match(joined):
        c.subject_kind = c.subject_kind or "someone"
        c.reasons.append("next step")
        return 0.82
    m = _PASSIVE_OBLIGATION.search(joined)
    if m and core[0] not in PERSONAL:
        part = m.group(1)
        if part not in _NOT_TASK_PARTICIPLES and (part in _IRREGULAR_PARTICIPLES or part.endswith(("ed", "en"))):
            c.subject_kind = c.subject_kind or "someone"
            c.reasons.append("passive obligation")
            return 0.78
    return 0.0


def _imperative(core: list[str], c: Classification) -> float:
    """A bare imperative: the first word is a task verb."""
    first, second = core[0], core[1] if len(core) > 1 else ""
    if first not in IMPERATIVE_VERBS or second in _NOT_IMPERATIVE_NEXT or len(core) < 2:
        return 0.0
    if first == "look" and second not in ("into", "at", "over"):
        return 0.0
    if first == "set" and second not in ("up",):
        return 0.0
    if (first == "open" and second.startswith(("question", "issue", "item"))) or core[:3] == ["keep", "up", "the"]:
        return 0.0  # "Open question: …", "Keep up the good work"
    c.subject_kind = c.subject_kind or "you"
    c.reasons.append("imperative")
    return 0.8


def _action(sentence: Sentence, words: list[str], i: int, core: list[str], c: Classification) -> float:
    """The first rule that recognises an action item decides; a "let's" or a request decides even at 0."""
    conf = _action_item_label(core, c)
    if conf:
        return conf
    lets = _lets(core, c)
    if lets is not None:
        return lets
    conf = _please(core, c) or _reminder(core, c)
    if conf:
        return conf
    request = _request(core, c)
    if request is not None:
        return request
    return (
        _commitment(sentence, words, i, c)
        or _phrased_request(core, c)
        or _imperative(core, c)
        or _commitment_after_clause(sentence, words, i, c)
    )
