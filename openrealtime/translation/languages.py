"""Language codes → names (for the translator's prompt), and how text in a language is joined."""

from __future__ import annotations

NAMES = {
    "ar": "Arabic", "bg": "Bulgarian", "ca": "Catalan", "cs": "Czech", "da": "Danish", "de": "German",
    "el": "Greek", "en": "English", "es": "Spanish", "et": "Estonian", "fa": "Persian", "fi": "Finnish",
    "fr": "French", "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "hu": "Hungarian", "id": "Indonesian",
    "it": "Italian", "ja": "Japanese", "ko": "Korean", "lt": "Lithuanian", "lv": "Latvian", "ms": "Malay",
    "nl": "Dutch", "no": "Norwegian", "pl": "Polish", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian",
    "sk": "Slovak", "sl": "Slovenian", "sr": "Serbian", "sv": "Swedish", "sw": "Swahili", "ta": "Tamil",
    "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "uk": "Ukrainian", "ur": "Urdu", "vi": "Vietnamese",
    "zh": "Chinese",
}
# Written without spaces between words (and so between the translations of two utterances).
UNSPACED = frozenset({"ja", "zh", "th", "lo", "km", "my", "bo"})


def base_code(language: str) -> str:
    """"en-US", "pt_BR", "EN" → "en", "pt", "en"."""
    return language.replace("_", "-").split("-")[0].lower()


def language_name(language: str) -> str:
    """The English name of a language code, for a prompt ("es" → "Spanish"; an unknown code as given)."""
    return NAMES.get(base_code(language), language)


def joiner(language: str) -> str:
    """What goes between two utterances' text in `language`: a space, or nothing."""
    return "" if base_code(language) in UNSPACED else " "
