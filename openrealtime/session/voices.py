"""Which `audio.output.voice` a session may ask for.

A built-in name (alloy, ash, ... and any other string) is spoken by the server's voice. A custom
voice, `{"id": "..."}`, must be one the text-to-speech names (`VoiceCatalog`: the local Piper voice,
by its file name); a TTS without a catalog (a remote server) is given the id and decides itself.
"""

from __future__ import annotations

from typing import Any

from ..engines.base import VoiceCatalog
from ..protocol.errors import ProtocolError
from ..protocol.session import CustomVoice, RealtimeSessionConfig


def check_voice(voice: Any, models: Any, *, param: str) -> None:
    """Raise a ProtocolError (invalid_value at `param`) for a custom voice this server cannot speak."""
    if not isinstance(voice, CustomVoice):
        return
    tts = getattr(models, "tts", None)
    if not isinstance(tts, VoiceCatalog):
        return
    known = tts.voice_ids()
    if voice.id not in known:
        raise ProtocolError(
            f"Voice '{voice.id}' is not configured on this server; custom voices here are the server's own "
            f"voice files: {', '.join(known) or 'none'} (or use a built-in voice name, spoken by the server's "
            "voice). Start the server with --tts-voice PATH.onnx to speak another Piper voice.",
            code="invalid_value", param=param)


def check_session_voice(config: Any, models: Any, *, param: str = "session") -> None:
    if isinstance(config, RealtimeSessionConfig):
        check_voice(config.audio.output.voice, models, param=f"{param}.audio.output.voice")
