"""Model stages served by a remote OpenAI-compatible server the user already runs.

`remote_backends(llm_url=..., stt_url=..., tts_url=...)` names them; `RemoteBackend.connect()`
checks one (`GET {url}/models`: reachable, key accepted, `/v1` not forgotten), fills in its model
name when the flag did not give it, and returns its warmed-up engine (`engines/openai_compat`): the
warm-up is one tiny request, the one that loads the model on servers that load lazily (Ollama,
speaches). `probe()` checks later that it still answers. Failures raise `RemoteEngineError` naming
the flag to fix. The model loader (stack.py) leaves such a stage `NotConnected` when asked to defer,
and the server connects it, retrying until it answers (api/health.py).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from .openai_compat import OpenAICompatLLM, OpenAICompatSTT, OpenAICompatTTS, RemoteEndpoint, RemoteEngineError
from .openai_compat.http import list_models

log = logging.getLogger(__name__)

_STT_HINTS = ("whisper", "transcribe", "parakeet", "stt", "asr")
_TTS_HINTS = ("tts", "kokoro", "piper", "speech", "voice")


def _pick_model(endpoint: RemoteEndpoint, listed: list[str] | None, *, default: str | None,
                hints: tuple[str, ...] = ()) -> str | None:
    """The model to use when its flag was not given."""
    if endpoint.model:
        if listed and endpoint.model not in listed and not any(m.split(":")[0] == endpoint.model for m in listed):
            log.warning("%s does not list model %r (it lists %s); trying it anyway",
                        endpoint.label, endpoint.model, ", ".join(listed[:10]))
        return endpoint.model
    if not listed:
        return default
    if default and default in listed:
        return default
    hinted = [m for m in listed if any(h in m.lower() for h in hints)]
    if hinted:
        if len(hinted) > 1:
            log.info("%s: using model %r (set %s to choose another of %s)", endpoint.label, hinted[0],
                     endpoint.flag("model"), ", ".join(hinted[:10]))
        return hinted[0]
    if len(listed) == 1:
        return listed[0]
    if default is None:
        raise RemoteEngineError(
            f"{endpoint.label} serves several models ({', '.join(listed[:10])}"
            f"{', ...' if len(listed) > 10 else ''}): choose one with {endpoint.flag('model')}")
    return default


class RemoteBackend:
    """One stage served by a remote OpenAI-compatible server: `connect()` checks the endpoint (reachable,
    key accepted, `/v1` not forgotten), fills in its model name and returns the warmed-up engine;
    `probe()` checks later that it still answers. Both raise `RemoteEngineError` naming the flag to fix."""

    def __init__(self, role: str, url: str, *, key: str | None = None, model: str | None = None,
                 voice: str | None = None, supports_images: bool = True,
                 first_token_timeout_s: float = 30.0, stall_timeout_s: float = 15.0) -> None:
        self.role = role
        self.endpoint = RemoteEndpoint(url, api_key=key or None, model=model or None, role=role,
                                       first_token_timeout_s=first_token_timeout_s, stall_timeout_s=stall_timeout_s)
        self.voice = voice
        self.supports_images = supports_images

    @property
    def label(self) -> str:
        return self.endpoint.label

    @property
    def url(self) -> str:
        return self.endpoint.base_url

    def resolve(self) -> RemoteEndpoint:
        """The endpoint with its model name, from `GET /models` where the flag did not give it."""
        endpoint = self.endpoint
        listed = list_models(endpoint)
        if self.role == "llm":
            model = _pick_model(endpoint, listed, default=None if listed else "default")
        elif self.role == "stt":
            model = _pick_model(endpoint, listed, default="whisper-1", hints=_STT_HINTS)
        else:
            model = _pick_model(endpoint, listed, default="tts-1", hints=_TTS_HINTS)
        # streams (llm, tts) fail on the first-token / stall timeouts above httpx (http.BackgroundStream); the
        # socket read timeout only reaps a request abandoned before its headers came (its connection cannot be
        # shut down earlier). A transcription is one request: the first-token timeout is its read timeout.
        limit = endpoint.first_token_timeout_s
        read = limit if self.role == "stt" else max(limit, endpoint.stall_timeout_s) + 5.0
        return replace(endpoint, model=model, read_timeout_s=read)

    def connect(self, endpoint: RemoteEndpoint | None = None, *, warm: bool = True,
                report: Any = None) -> Any:
        endpoint = endpoint or self.resolve()
        engine: Any
        if self.role == "llm":
            engine = OpenAICompatLLM(endpoint, supports_images=self.supports_images)
        elif self.role == "stt":
            engine = OpenAICompatSTT(endpoint)
        else:
            engine = OpenAICompatTTS(endpoint, voice=self.voice)
        if warm:
            if report:
                report(self.role, f"warming up {engine.describe()}")
            try:
                engine.warmup()
            except BaseException:
                engine.close()
                raise
        return engine

    def probe(self) -> None:
        """Whether the server still answers (`GET /models`, short timeouts)."""
        list_models(replace(self.endpoint, connect_timeout_s=5.0, read_timeout_s=5.0))


class NotConnected:
    """Stands for a remote stage whose server has not answered yet (the server retries it and is not
    ready meanwhile); using it raises the reason."""

    sample_rate = 24_000
    supports_images = False
    max_concurrency = 1

    def __init__(self, backend: RemoteBackend) -> None:
        self.backend = backend
        self.reason = f"{backend.label} has not answered yet"

    def describe(self) -> str:
        return f"{self.backend.label} (not connected)"

    def _fail(self, *args: Any, **kwargs: Any) -> Any:
        raise RemoteEngineError(self.reason)

    transcribe = stream_chat = synthesize = _fail


def remote_backends(*, llm_url: str | None = None, llm_key: str | None = None, llm_model: str | None = None,
                    stt_url: str | None = None, stt_key: str | None = None, stt_model: str | None = None,
                    tts_url: str | None = None, tts_key: str | None = None, tts_model: str | None = None,
                    tts_voice: str | None = None, llm_supports_images: bool = True,
                    first_token_timeout_s: float = 30.0, stall_timeout_s: float = 15.0) -> dict[str, RemoteBackend]:
    """The stages given a URL, by role."""
    out: dict[str, RemoteBackend] = {}
    for role, url, key, model in (("llm", llm_url, llm_key, llm_model), ("stt", stt_url, stt_key, stt_model),
                                  ("tts", tts_url, tts_key, tts_model)):
        if url:
            out[role] = RemoteBackend(role, url, key=key, model=model, voice=tts_voice if role == "tts" else None,
                                      supports_images=llm_supports_images,
                                      first_token_timeout_s=first_token_timeout_s, stall_timeout_s=stall_timeout_s)
    return out
