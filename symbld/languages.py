"""Languages: Symbl's ``languageCode`` (BCP-47) ↔ the Whisper language it is decoded as.

A connection asks for a language with ``config.languageCode``: a BCP-47 tag as Symbl writes them
(``es-ES``, ``fr-FR``, ``pt-BR``; a bare ``es`` works too) or ``auto``, which detects the language
of every utterance. The primary subtag must be one Whisper speaks (:data:`WHISPER_LANGUAGES`); the
region is kept as asked and written back in each message's ``metadata.language``. A detected
language is reported with the region Symbl uses for it (:data:`DEFAULT_REGIONS`), else bare.

What the rule-based insights can do in each language is declared here too, so ``describe``, the
connection object and the analyzer agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

AUTO = "auto"

# Whisper's languages, as faster_whisper.tokenizer._LANGUAGE_CODES (a test keeps them equal); kept
# here so validating a request imports no model code. "jw" is Whisper's own code for Javanese.
WHISPER_LANGUAGES: tuple[str, ...] = (
    "af", "am", "ar", "as", "az", "ba", "be", "bg", "bn", "bo", "br", "bs", "ca", "cs", "cy", "da", "de", "el",
    "en", "es", "et", "eu", "fa", "fi", "fo", "fr", "gl", "gu", "ha", "haw", "he", "hi", "hr", "ht", "hu", "hy",
    "id", "is", "it", "ja", "jw", "ka", "kk", "km", "kn", "ko", "la", "lb", "ln", "lo", "lt", "lv", "mg", "mi",
    "mk", "ml", "mn", "mr", "ms", "mt", "my", "ne", "nl", "nn", "no", "oc", "pa", "pl", "ps", "pt", "ro", "ru",
    "sa", "sd", "si", "sk", "sl", "sn", "so", "sq", "sr", "su", "sv", "sw", "ta", "te", "tg", "th", "tk", "tl",
    "tr", "tt", "uk", "ur", "uz", "vi", "yi", "yo", "zh", "yue",
)  # fmt: skip

# BCP-47 primary subtags that name a Whisper language under another code.
_ALIASES = {"jv": "jw", "iw": "he", "nb": "no", "fil": "tl", "cmn": "zh"}

# The tag a detected language is reported as: the regions of Symbl's own language list.
DEFAULT_REGIONS = {
    "en": "en-US", "es": "es-ES", "fr": "fr-FR", "de": "de-DE", "it": "it-IT", "pt": "pt-BR", "nl": "nl-NL",
    "ja": "ja-JP", "ru": "ru-RU", "zh": "zh-CN", "ko": "ko-KR", "hi": "hi-IN", "ar": "ar-SA", "pl": "pl-PL",
    "sv": "sv-SE", "tr": "tr-TR", "uk": "uk-UA", "he": "he-IL", "da": "da-DK", "fi": "fi-FI", "no": "nb-NO",
}  # fmt: skip

# Languages written right to left (the summary page sets dir="rtl" for them).
RTL = frozenset({"ar", "he", "fa", "ur", "yi", "ps", "sd"})

# language, region, script or variant subtags (RFC 5646 shapes, without extensions).
_TAG = re.compile(r"^([A-Za-z]{2,3})((?:-(?:[A-Za-z]{4}|[A-Za-z]{2}|[0-9]{3}|[A-Za-z0-9]{5,8}))*)$")

# What the rule-based insights support per language (symbld.insights): questions need a list of
# interrogatives (symbld.insights.languages), trackers and topics a Snowball stemmer and stop words.
QUESTION_LANGUAGES = frozenset({"en", "es", "fr", "de", "it", "pt"})
STEMMED_LANGUAGES = frozenset({"en", "es", "fr", "de", "it", "pt", "nl", "ru", "sv", "da", "no", "fi"})
SENTIMENT_LANGUAGES = frozenset({"en"})  # VADER's lexicon is English
# Action items and follow-ups are English phrase rules.
ACTION_LANGUAGES = frozenset({"en"})


class LanguageError(ValueError):
    """A languageCode that is not a tag of a language the model speaks."""


@dataclass(frozen=True)
class Language:
    """What a connection asked for: ``tag`` as written back (``es-ES``) and ``whisper`` (``es``),
    or both ``auto``."""

    tag: str
    whisper: str

    @property
    def auto(self) -> bool:
        return self.whisper == AUTO

    @property
    def english(self) -> bool:
        return self.whisper == "en"


ENGLISH = Language("en-US", "en")


def supported_text() -> str:
    return "auto, " + ", ".join(WHISPER_LANGUAGES)


def parse(value: object) -> Language:
    """``config.languageCode`` → :class:`Language`; raises LanguageError naming what is supported."""
    if not isinstance(value, str):
        raise LanguageError(f"languageCode must be a string (a BCP-47 tag such as es-ES, or auto), "
                            f"not {type(value).__name__}; supported languages: {supported_text()}")
    if value.lower() == AUTO:
        return Language(AUTO, AUTO)
    m = _TAG.fullmatch(value)  # the whole value: no spaces or a newline around a tag
    if not m:
        raise LanguageError(f"languageCode {value!r} is not a BCP-47 tag (such as es-ES); "
                            f"supported languages: {supported_text()}")
    primary = m.group(1).lower()
    code = _ALIASES.get(primary, primary)
    if code not in WHISPER_LANGUAGES:
        raise LanguageError(f"languageCode {value!r}: language {primary!r} is not one the model speaks; "
                            f"supported languages: {supported_text()}")
    return Language(_canonical(primary, m.group(2)), code)


def _canonical(primary: str, rest: str) -> str:
    """BCP-47 case conventions: ``es-es`` → ``es-ES``, ``zh-hant-tw`` → ``zh-Hant-TW``."""
    parts = [primary]
    for sub in rest.split("-")[1:]:
        if len(sub) == 2 and sub.isalpha():
            parts.append(sub.upper())
        elif len(sub) == 4 and sub.isalpha():
            parts.append(sub.title())
        else:
            parts.append(sub.lower())
    return "-".join(parts)


def tag_of(whisper_code: str, asked: Language | None = None) -> str:
    """The BCP-47 tag to report for a decoded language: the one asked for when it is that
    language, else the usual region (or the bare code)."""
    if asked is not None and not asked.auto and asked.whisper == whisper_code:
        return asked.tag
    return DEFAULT_REGIONS.get(whisper_code, "jv" if whisper_code == "jw" else whisper_code)


def primary(tag: str | None) -> str:
    """The Whisper code of a reported tag (``es-MX`` → ``es``); ``en`` for None."""
    if not tag or tag == AUTO:
        return "en"
    p = tag.split("-", 1)[0].lower()
    return _ALIASES.get(p, p)


def insight_support(whisper_code: str) -> dict[str, bool]:
    """Which insights honestly work on text in this language (the connection object's field)."""
    return {
        "questions": whisper_code in QUESTION_LANGUAGES,
        "actionItems": whisper_code in ACTION_LANGUAGES,
        "followUps": whisper_code in ACTION_LANGUAGES,
        "trackers": True,  # exact and fuzzy phrase matching works in any script; stems where Snowball has them
        "topics": whisper_code in STEMMED_LANGUAGES,
        "sentiment": whisper_code in SENTIMENT_LANGUAGES,
    }


def text_language(language_tag: str | None, translate: bool) -> str:
    """The Whisper code of the text a connection's insights read: English when translated."""
    return "en" if translate else primary(language_tag)


def connection_fields(language_code: str, translate: bool, detected: str | None) -> dict[str, object]:
    """The connection object's language fields: what was asked, what is spoken (in auto, the newest
    message's detected language; None before the first), and which insights work on its text."""
    spoken = detected if detected or language_code == AUTO else language_code
    fields: dict[str, object] = {"languageCode": language_code, "language": spoken, "translate": translate}
    if spoken:
        fields["insightSupport"] = insight_support(text_language(spoken, translate))
    return fields


def describe(default: str, models: dict[str, list[dict[str, object]]]) -> dict[str, object]:
    """``describe``'s ``languages``: the default, each engine's models, and the insight support."""
    insight_languages = sorted(QUESTION_LANGUAGES | STEMMED_LANGUAGES)
    return {
        "default": default,
        "auto": True,
        "translate": "en",
        "models": models,
        "insightSupport": {code: insight_support(code) for code in insight_languages},
        "englishOnly": ["sentiment", "action_item", "follow_up"],
    }


def message_language(message: dict[str, object]) -> str:
    """The Whisper code of a message's text: ``metadata.translatedTo`` or ``metadata.language``
    (the local engine sets them), English for messages without either (Symbl's cloud, older journals)."""
    metadata = message.get("metadata")
    tag = (metadata.get("translatedTo") or metadata.get("language")) if isinstance(metadata, dict) else None
    return primary(tag if isinstance(tag, str) else None)
