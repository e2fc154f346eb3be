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


def voice_for(models: Any, language: str) -> Any | None:
    """The TTS that speaks `language`, or None."""
    tts = getattr(models, "tts", None) if models is not None else None
    if tts is None:
        return None
    if isinstance(tts, SpeaksLanguages) and base_code(language) not in tts.languages:
        return None
    return tts


def no_voice_notice(models: Any, language: str) -> str:
    """The plain sentence a session object carries when no voice speaks the target language."""
    tts = getattr(models, "tts", None) if models is not None else None
    spoken = ", ".join(language_name(code) for code in tts.languages) \
        if isinstance(tts, SpeaksLanguages) and tts.languages else "none"
    return (f"No voice on this server speaks {language_name(language)} ({language}): this session sends the "
            f"translation as text only (session.output_transcript.delta), without session.output_audio.delta. "
            f"Languages with a voice here: {spoken}.")
