"""Questions in Spanish, French, German, Italian and Portuguese: the rules that honestly work there.

The English rules (``classify``) read English grammar; in another language they see no English
function words and say nothing. A question is what the recogniser punctuated as one (Whisper writes
"?" and Spanish "¿") or a sentence that opens with an interrogative that cannot start a statement
in that language ("¿Por qué...", "Pourquoi", "Warum", "Perché"...: the ambiguous ones, Spanish
"que"/"como" or French "quand", count only with a "?"). Tag questions alone ("¿verdad?",
"n'est-ce pas ?", "oder?") ask nothing and are skipped. Action items and follow-ups stay English:
their phrase rules have no counterpart here yet (docs/languages.md).
"""

from __future__ import annotations

import re

from symbld.insights.text import wordset
from symbld.languages import QUESTION_LANGUAGES

_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")

# Sentence openers that make a question in each language (lower case, as written with accents).
_INTERROGATIVES: dict[str, frozenset[str]] = {
    "es": wordset("qué quién quiénes cuál cuáles cuándo dónde adónde cómo cuánto cuánta cuántos cuántas "
                    "por_qué para_qué acaso"),
    "fr": wordset("qui que quoi quand où comment pourquoi combien quel quelle quels quelles lequel laquelle "
                    "lesquels lesquelles est-ce qu'est-ce"),
    "de": wordset("wer wen wem wessen was wann wo woher wohin warum wieso weshalb wie welche welcher welches "
                    "welchen welchem wozu womit worüber"),
    "it": wordset("chi che cosa quando dove perché come quanto quanta quanti quante quale quali "
                    "che_cosa"),
    "pt": wordset("quem que quando onde porque como quanto quanta quantos quantas qual quais o_que "
                    "por_que"),
}
# ... of which these start a question without any "?" (never the opening of a statement).
_UNAMBIGUOUS: dict[str, frozenset[str]] = {
    "es": wordset("qué quién quiénes cuál cuáles cuándo dónde adónde cómo cuántos cuántas por_qué"),
    "fr": wordset("pourquoi combien est-ce qu'est-ce lequel laquelle"),
    "de": wordset("warum wieso weshalb wann woher wohin"),
    "it": wordset("perché dove quale quali"),
    "pt": wordset("onde quais por_que"),
}
# Verb-subject inversion with a hyphen: "Pouvez-vous ...", "Avez-vous ...", "Est-il ...".
_FRENCH_INVERSION = re.compile(r"^\w+-(?:t-)?(?:vous|tu|il|elle|on|ils|elles|je|nous)\b", re.IGNORECASE)
# German yes/no questions open with a finite verb before its subject: "Kannst du ...", "Haben Sie ...".
_GERMAN_VERB_FIRST = re.compile(
    r"^(?:kannst|kann|können|könnten|könntest|hast|haben|hat|hattest|bist|sind|ist|seid|wird|werden|wirst|"
    r"willst|wollen|sollen|soll|darf|dürfen|musst|müssen|gibt|gehst|machst|weißt|wissen)\s+"
    r"(?:du|sie|ihr|wir|er|es|man|ich)\b", re.IGNORECASE)
# Tag questions and one-word checks: a "?" that asks nothing on its own.
_TAGS = wordset("verdad no sí si vale eh cierto n'est-ce_pas hein non oui d'accord oder nicht ja gell ne "
                  "vero giusto né não certo não_é")


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _opener(words: list[str]) -> tuple[str, str]:
    """The first word and the first two joined by "_" ("por_qué", "o_que")."""
    first = words[0] if words else ""
    return first, "_".join(words[:2])


def question_confidence(sentence: str, language: str) -> float:
    """How surely ``sentence`` (in ``language``, a Whisper code) asks a question; 0 when it does not."""
    if language not in QUESTION_LANGUAGES or language == "en":
        return 0.0
    text = sentence.strip()
    words = _words(text)
    if len(words) < 2 or "_".join(words) in _TAGS:
        return 0.0
    first, pair = _opener(words)
    interrogative = first in _INTERROGATIVES[language] or pair in _INTERROGATIVES[language]
    asked = text.rstrip("»\"')”").endswith(("?", "？")) or text.startswith("¿")
    if asked:
        return 0.85 if interrogative or _inverted(text, language) else 0.75
    if len(words) >= 3 and (first in _UNAMBIGUOUS[language] or pair in _UNAMBIGUOUS[language]
                            or _inverted(text, language)):
        return 0.6
    return 0.0


def _inverted(text: str, language: str) -> bool:
    stripped = text.lstrip("¿¡\"'«“ ")
    if language == "fr":
        return bool(_FRENCH_INVERSION.match(stripped))
    if language == "de":
        return bool(_GERMAN_VERB_FIRST.match(stripped))
    return False
