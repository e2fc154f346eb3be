"""Model backends over HTTP to OpenAI-compatible servers the user already runs.

* `OpenAICompatLLM` — `/chat/completions`, streamed (vLLM, Ollama, llama.cpp, OpenAI, ...)
* `OpenAICompatSTT` — `/audio/transcriptions` (OpenAI, speaches, vLLM Whisper, LocalAI)
* `OpenAICompatTTS` — `/audio/speech` streamed as raw PCM (OpenAI, speaches, Kokoro-FastAPI)

VAD always stays local (Silero): it runs on every 32 ms audio frame of every session. Any stage
without a URL uses the local engine (see `openrealtime.engines.mixed.load_mixed_stack`, what the
server calls for `--llm-url` / `--stt-url` / `--tts-url`).
"""

from __future__ import annotations

from typing import Any

from ..base import LanguageModel, ModelStack, SpeechToText, TextToSpeech, VoiceActivityDetector
from .http import RemoteEndpoint, RemoteEngineError, list_models
from .llm import OpenAICompatLLM
from .stt import OpenAICompatSTT
from .tts import OpenAICompatTTS

__all__ = [
    "OpenAICompatLLM",
    "OpenAICompatSTT",
    "OpenAICompatTTS",
    "RemoteEndpoint",
    "RemoteEngineError",
    "build_stack",
    "list_models",
]


def _describe(part: Any) -> str:
    describe = getattr(part, "describe", None)
    return describe() if callable(describe) else type(part).__name__


def build_stack(
    *,
    vad: VoiceActivityDetector | None = None,
    llm: RemoteEndpoint | LanguageModel | None = None,
    stt: RemoteEndpoint | SpeechToText | None = None,
    tts: RemoteEndpoint | TextToSpeech | None = None,
    local_fallback: ModelStack | dict[str, Any] | None = None,
    tts_voice: str | None = None,
    llm_supports_images: bool = True,
    description: dict[str, str] | None = None,
) -> ModelStack:
    """A `ModelStack` from remote endpoints (or ready engines); missing stages come from
    `local_fallback` (a `ModelStack` or a {"vad"|"stt"|"llm"|"tts": engine} dict). No network I/O."""
    fallback: dict[str, Any] = {}
    if isinstance(local_fallback, ModelStack):
        fallback = {"vad": local_fallback.vad, "stt": local_fallback.stt, "llm": local_fallback.llm,
                    "tts": local_fallback.tts}
    elif local_fallback:
        fallback = dict(local_fallback)

    parts: dict[str, Any] = {}
    for stage, value in (("vad", vad), ("llm", llm), ("stt", stt), ("tts", tts)):
        if isinstance(value, RemoteEndpoint):
            if stage == "llm":
                value = OpenAICompatLLM(value, supports_images=llm_supports_images)
            elif stage == "stt":
                value = OpenAICompatSTT(value)
            elif stage == "tts":
                value = OpenAICompatTTS(value, voice=tts_voice)
        if value is None:
            value = fallback.get(stage)
        if value is None:
            raise ValueError(f"no {stage} engine: give a remote endpoint or a local fallback for it")
        parts[stage] = value
    desc = {stage: _describe(part) for stage, part in parts.items()}
    desc.update(description or {})
    return ModelStack(vad=parts["vad"], stt=parts["stt"], llm=parts["llm"], tts=parts["tts"], description=desc)
