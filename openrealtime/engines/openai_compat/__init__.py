"""Model backends over HTTP to OpenAI-compatible servers the user already runs.

* `OpenAICompatLLM` — `/chat/completions`, streamed (vLLM, Ollama, llama.cpp, OpenAI, ...)
* `OpenAICompatSTT` — `/audio/transcriptions` (OpenAI, speaches, vLLM Whisper, LocalAI)
* `OpenAICompatTTS` — `/audio/speech` streamed as raw PCM (OpenAI, speaches, Kokoro-FastAPI)

VAD always stays local (Silero): it runs on every 32 ms audio frame of every session. Any stage
without a URL uses the local engine (see `openrealtime.engines.stack.load_model_stack`, what the
server calls for `--llm-url` / `--stt-url` / `--tts-url`).
"""

from __future__ import annotations

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
    "list_models",
]
