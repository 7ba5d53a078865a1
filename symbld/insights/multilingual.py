"""Questions in Spanish, French, German, Italian and Portuguese: the rules that honestly work there.

The English rules (``classify``) read English grammar; in another language they see no English
function words and say nothing. A question is what the recogniser punctuated as one (Whisper writes
"?" and Spanish "¿") or a sentence that opens with an interrogative that cannot start a statement
in that language ("¿Por qué...", "Pourquoi", "Warum", "Perché"...: the ambiguous ones, Spanish
"que"/"como" or French "quand", count only with a "?"). Tag questions alone ("¿verdad?",
"n'est-ce pas ?", "oder?") ask nothing and are skipped.

Action items and follow-ups: the two shapes of a commitment that rules read honestly in these
languages. A speaker's first-person future with a verb ("voy a enviar", "vamos a preparar", "je vais
envoyer", "on va", "ich werde ... schicken", "wir werden", "vou enviar", Italian "invierò", "manderò")
or taking a task on ("me encargo", "je m'en occupe", "ich kümmere mich", "me ne occupo", "eu cuido");
and a request to the listener ("¿puedes enviarme...?", "pouvez-vous...", "kannst du...", "puoi...",
"você pode...", "por favor" and "bitte" with a verb). A commitment to contact someone later
("te llamo", "je vous rappelle", "ich melde mich", "ti faccio sapere", "te retorno") is a follow-up.
What they miss: commitments in the plain present ("mañana te lo mando"), the conditional, and
anything without these openers; "voy a ver" / "je vais voir" (thinking aloud) are not tasks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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


# --- action items and follow-ups -------------------------------------------------------------------

# Infinitives, optionally with clitic pronouns ("enviarte", "mandárselo", "inviarti").
_INF = {
    "es": r"[^\W\d_]+(?:ar|er|ir|ár|ér|ír)(?:me|te|se|le|lo|la|nos|os|les|los|las)*",
    "fr": r"[^\W\d_]+(?:er|ir|re|oir)",
    "it": r"[^\W\d_]+(?:are|ere|ire|ar|er|ir|r)(?:mi|ti|si|ci|vi|lo|la|li|le|gli|ne|glielo)*",
    "pt": r"[^\W\d_]+(?:ar|er|ir|or|ôr)(?:-(?:me|te|lhe|lo|la|los|las|nos|vos|lhes))?",
}
_CLITIC = {"es": r"(?:(?:me|te|se|le|lo|la|nos|os|les|los|las)\s+){0,2}",
           "fr": r"(?:(?:me|m'|te|t'|se|s'|le|la|les|l'|lui|leur|vous|nous|y|en)\s*){0,2}",
           "pt": r"(?:(?:me|te|lhe|o|a|os|as|nos|vos|lhes)\s+){0,2}",
           "it": r"(?:(?:mi|ti|ci|vi|gli|lo|la|li|le|ne|te|me)\s+){0,2}"}

# The speaker commits: first-person future / "going to" + a verb, or taking the task on.
_SELF = {
    "es": rf"\b(?:yo\s+)?(?:voy|vamos)\s+a\s+{_CLITIC['es']}(?P<verb>{_INF['es']})\b"
          r"|\b(?:yo\s+)?me\s+(?:encargo|ocupo)\b|\byo\s+me\s+lo\s+(?:llevo|quedo)\b"
          r"|\b[^\W\d_]+(?:aré|eré|iré|aremos|eremos|iremos)\b",
    "fr": rf"\b(?:je|j'|nous|on)\s*(?:vais|allons|va)\s+{_CLITIC['fr']}(?P<verb>{_INF['fr']})\b"
          r"|\bje\s+m'en\s+occupe\b|\bje\s+m'occupe\s+de\b|\bje\s+me\s+charge\s+de\b"
          r"|\b(?:je|j')\s*[^\W\d_]+(?:erai|irai|rai)\b",
    "de": r"\b(?:ich|wir)\s+werden?\b(?!\s+(?:sehen|schauen|gucken|überlegen|nachdenken)\b)"
          r"|\b(?:ich|wir)\s+kümmern?\s+(?:mich|uns)\b|\bich\s+übernehme\b|\b(?:mache|erledige)\s+ich\b",
    "it": r"\b(?:io\s+)?[^\W\d_]+(?:erò|irò|arò)\b|\b(?:io\s+)?(?:farò|darò|starò)\b"
          r"|\b(?:me\s+ne|mi)\s+occupo\b|\bci\s+penso\s+io\b",
    "pt": rf"\b(?:eu\s+)?(?:vou|vamos)\s+{_CLITIC['pt']}(?P<verb>{_INF['pt']})\b"
          r"|\b(?:eu\s+)?(?:cuido|me\s+encarrego)\b|\b[^\W\d_]+(?:arei|erei|irei|aremos|eremos|iremos)\b",
}
# The listener is asked: "can you ...", "could you ...", "please" + a verb.
_REQUEST = {
    "es": rf"\b(?:puedes|podrías|puede|podría|pueden|podrían)\s+(?:usted\s+)?{_CLITIC['es']}(?P<verb>{_INF['es']})\b"
          r"|\bpor\s+favor\s*,?\s+[^\W\d_]{2,}[ae](?:me|nos|lo|la|le|los|las)*\b"
          r"|\bnecesito\s+que\s+(?:me\s+|nos\s+)?[^\W\d_]+\b",
    "fr": r"\b(?:pouvez|pourriez|peux|pourrais)-(?:vous|tu)\b|\b(?:tu|vous)\s+(?:peux|pouvez|pourrais|pourriez)\s+"
          rf"{_CLITIC['fr']}(?P<verb>{_INF['fr']})\b|\bmerci\s+de\s+(?:me\s+|nous\s+)?[^\W\d_]+(?:er|ir|re)\b"
          r"|\best-ce\s+que\s+(?:tu|vous)\s+(?:peux|pouvez|pourrais|pourriez)\b",
    "de": r"\b(?:kannst|könntest)\s+du\b|\b(?:können|könnten)\s+sie\b|\bbitte\s+(?:schick|send|mach|ruf|schreib|"
          r"prüf|überprüf|bereite|gib|leite|trag|setz|aktualisier|teil|buch|plan|kümmer)[^\W\d_]*\b",
    "it": rf"\b(?:puoi|potresti|può|potrebbe|potete|potreste)\s+{_CLITIC['it']}(?P<verb>{_INF['it']})\b"
          r"|\bper\s+favore\s*,?\s+[^\W\d_]{2,}[ai](?:mi|ci|lo|la|li|le)?\b",
    "pt": rf"\b(?:você|vocês|tu)?\s*(?:pode|podes|poderia|podem|poderiam)\s+{_CLITIC['pt']}(?P<verb>{_INF['pt']})\b"
          r"|\bpor\s+favor\s*,?\s+[^\W\d_]{2,}[ae](?:-me)?\b",
}
# Verbs that make "voy a ..." thinking aloud or an announcement, not a task.
_NOT_TASKS = wordset("ver decir pensar mirar hablar explicar empezar comenzar ser estar tener "
                     "voir dire penser regarder parler expliquer commencer être avoir "
                     "vedere dire pensare parlare essere avere "
                     "ver dizer pensar olhar falar explicar começar ser estar ter")
# Contact later: follow-ups, whoever says them.
_CONTACT = {
    "es": r"\b(?:te|le|les|os)\s+(?:llamo|llamaré|escribo|escribiré|aviso|avisaré|contacto|contesto|respondo|"
          r"confirmo)\b|\b(?:llamarte|llamarle|escribirte|avisarte|contactarte|contactarle|responderte|"
          r"ponerme\s+en\s+contacto|volver\s+a\s+(?:llamar|hablar|escribir))\b|\bseguimiento\b",
    "fr": r"\b(?:je|on)\s+(?:te|vous)\s+(?:rappelle|rappellerai|recontacte|écris|écrirai|tiens\s+au\s+courant|"
          r"redis|dirai)\b|\brevenir\s+vers\s+(?:toi|vous)\b|\b(?:te|vous)\s+(?:rappeler|recontacter|écrire|"
          r"tenir\s+au\s+courant)\b|\breviens\s+vers\s+(?:toi|vous)\b|\bfaire\s+un\s+suivi\b",
    "de": r"\bmelde\s+mich\b|\bmelden\s+uns\b|\b(?:rufe|schreibe)\s+(?:dich|sie|euch|dir|ihnen|euch)\b"
          r"|\b(?:zurückrufen|anrufen|melden|nachhaken)\b|\bsage\s+(?:dir|ihnen|euch)\s+bescheid\b",
    "it": r"\b(?:ti|vi|la|le)\s+(?:richiamo|richiamerò|chiamo|chiamerò|scrivo|scriverò|ricontatto|faccio\s+sapere|"
          r"farò\s+sapere|aggiorno|aggiornerò)\b|\b(?:richiamarti|ricontattarti|farti\s+sapere|aggiornarti)\b",
    "pt": r"\b(?:te|lhe|vos)\s+(?:ligo|ligarei|retorno|aviso|avisarei|escrevo|contato|mando\s+notícias)\b"
          r"|\b(?:ligar|retornar|avisar|contatar)\s+(?:para\s+)?(?:você|vocês|te|-te)\b|\bdar\s+um\s+retorno\b",
}
_COMPILED = {kind: {lang: re.compile(rx, re.IGNORECASE) for lang, rx in table.items()}
             for kind, table in (("self", _SELF), ("request", _REQUEST), ("contact", _CONTACT))}
_NOT_FUTURE = wordset("seré sarò serei será estaré starò darò avrò potrò vorrò saprò dovrò terei podrei")


@dataclass(frozen=True)
class Task:
    """A commitment in a sentence: ``kind`` is ``action_item`` or ``follow_up``; ``on`` is ``self``
    (the speaker) or ``you`` (the listener, asked)."""

    kind: str
    confidence: float
    on: str


def _self_commitment(text: str, language: str) -> bool:
    for m in _COMPILED["self"][language].finditer(text):
        verb = (m.groupdict().get("verb") or "").lower()
        word = m.group(0).split()[-1].lower()
        if verb in _NOT_TASKS or word in _NOT_FUTURE:
            continue
        return True
    return False


def _request(text: str, language: str) -> bool:
    for m in _COMPILED["request"][language].finditer(text):
        if (m.groupdict().get("verb") or "").lower() not in _NOT_TASKS:
            return True
    return False


def task(sentence: str, language: str) -> Task | None:
    """The commitment ``sentence`` makes (in ``language``, a Whisper code), if rules can tell."""
    if language not in _SELF:
        return None
    text = " ".join(sentence.split())
    on = "self" if _self_commitment(text, language) else "you" if _request(text, language) else None
    contact = bool(_COMPILED["contact"][language].search(text))
    if on is None and not contact:
        return None
    if contact:
        return Task("follow_up", 0.8 if on else 0.7, on or "self")
    return Task("action_item", 0.8 if on == "self" else 0.75, on or "self")
