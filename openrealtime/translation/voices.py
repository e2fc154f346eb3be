"""Which voice speaks a target language: the stack's TTS where it speaks it, else none (text only).

A local voice declares the languages it speaks (engines/base.py `SpeaksLanguages`: Piper's en_US voice speaks "en");
a TTS without that declaration — a remote `--tts-url` server, or a test double — is asked for any
language. Where no voice speaks the target, a translation session sends text deltas only and its
session object says so (`output_modalities: ["text"]` and a `notice`).
"""

from __future__ import annotations

from typing import Any

from ..engines.base import SpeaksLanguages
from .languages import base_code, language_name


def _voices(models: Any) -> list[Any]:
    """The stack's voices, its default one first (none without a stack, or on the echo stack)."""
    if models is None or models.tts is None:
        return []
    return [models.tts, *models.voices]


def voice_for(models: Any, language: str) -> Any | None:
    """The first voice of the stack that speaks `language`, or None."""
    code = base_code(language)
    for voice in _voices(models):
        if not isinstance(voice, SpeaksLanguages) or code in voice.languages:
            return voice
    return None


def no_voice_notice(models: Any, language: str) -> str:
    """The plain sentence a session object carries when no voice speaks the target language."""
    codes = [code for voice in _voices(models) if isinstance(voice, SpeaksLanguages) for code in voice.languages]
    spoken = ", ".join(language_name(code) for code in dict.fromkeys(codes)) or "none"
    return (f"No voice on this server speaks {language_name(language)} ({language}): this session sends the "
            f"translation as text only (session.output_transcript.delta), without session.output_audio.delta. "
            f"Languages with a voice here: {spoken}.")
