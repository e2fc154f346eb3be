"""A `ModelStack` mixing remote OpenAI-compatible servers with the local engines.

`load_mixed_stack(profile, llm_url=..., stt_url=..., tts_url=...)` is what the server calls when
any `--llm-url` / `--stt-url` / `--tts-url` is set: each stage with a URL talks HTTP to that
server (`engines/openai_compat`), each stage without one loads the local engine of `profile`
(exactly as `load_model_stack` would), and VAD is always the local Silero model. With no URL at
all it is `load_model_stack(profile)`.

Before loading anything slow it checks every remote endpoint (`GET {url}/models`: reachable, key
accepted, `/v1` not forgotten) and fills in missing model names from that list; then (`warm=True`)
it sends each remote stage one tiny request — the same warm-up the local engines get, and the one
that loads the model on servers that load lazily (Ollama, speaches) — so the first real turn is
not slow and configuration mistakes fail at start-up with a message naming the flag to fix.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Any

import numpy as np

from .base import ModelStack
from .openai_compat import OpenAICompatLLM, OpenAICompatSTT, OpenAICompatTTS, RemoteEndpoint, RemoteEngineError
from .openai_compat.http import list_models
from .stack import (ModelLoadError, StageProgress, StageTracker, _cores, assemble_stack, close_loaded, load_model_stack,
                    resolve_profile)

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
        # a transcription is one request: it gets the first-token timeout as its read timeout
        read = 120.0 if self.role == "llm" else 60.0 if self.role == "tts" else endpoint.first_token_timeout_s
        return replace(endpoint, model=model, read_timeout_s=read)

    def connect(self, endpoint: RemoteEndpoint | None = None, *, warm: bool = True,
                report: StageProgress | None = None) -> Any:
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


def load_mixed_stack(
    profile: str = "default",
    *,
    llm_url: str | None = None,
    llm_key: str | None = None,
    llm_model: str | None = None,
    stt_url: str | None = None,
    stt_key: str | None = None,
    stt_model: str | None = None,
    tts_url: str | None = None,
    tts_key: str | None = None,
    tts_model: str | None = None,
    tts_voice: str | None = None,
    progress: StageProgress | None = None,
    llm_supports_images: bool = True,
    warm: bool = True,
    defer_remote: bool = False,
    first_token_timeout_s: float = 30.0,
    stall_timeout_s: float = 15.0,
) -> ModelStack:
    """Remote stages where a URL is given, local ones (of `profile`) elsewhere; see the module doc.

    `defer_remote`: do not contact the remote servers here; their stages are `NotConnected` and
    `stack.remote` holds their `RemoteBackend`s for the caller to connect (the server does, retrying
    until they answer, so a backend that is down at start does not stop it)."""
    backends = remote_backends(llm_url=llm_url, llm_key=llm_key, llm_model=llm_model, stt_url=stt_url,
                               stt_key=stt_key, stt_model=stt_model, tts_url=tts_url, tts_key=tts_key,
                               tts_model=tts_model, tts_voice=tts_voice, llm_supports_images=llm_supports_images,
                               first_token_timeout_s=first_token_timeout_s, stall_timeout_s=stall_timeout_s)
    if not backends:
        return load_model_stack(profile, progress=progress, warm=warm)

    from .local.vad import SileroVad

    chosen = resolve_profile(profile)
    cores = _cores()
    report = StageTracker(progress)

    # 1. endpoints and their model names, before anything slow is loaded
    endpoints: dict[str, RemoteEndpoint] = {}
    if not defer_remote:
        for role, backend in backends.items():
            report(role, f"checking {backend.label}")
            endpoints[role] = backend.resolve()

    def remote_stage(role: str) -> Any:
        backend = backends[role]
        if defer_remote:
            return NotConnected(backend)
        return backend.connect(endpoints[role], warm=warm, report=report)

    started = time.monotonic()
    timings: dict[str, float] = {}
    loaded: list[Any] = []

    def timed(stage: str, t0: float) -> None:
        timings[stage] = time.monotonic() - t0

    try:
        t0 = time.monotonic()
        report("vad", "loading Silero VAD")
        vad = SileroVad()
        loaded.append(vad)
        if warm:
            vad.new_stream().probability(np.zeros(vad.frame_samples, dtype=np.float32))
        timed("vad", t0)

        t0 = time.monotonic()
        if "stt" in backends:
            stt: Any = remote_stage("stt")
            loaded.append(stt)
        else:
            from .local.asr import WhisperSTT

            report("stt", f"loading Whisper {chosen.asr}")
            stt = WhisperSTT(chosen.asr, cpu_threads=cores)
            loaded.append(stt)
            if warm:
                stt.transcribe(np.zeros(stt.sample_rate, dtype=np.float32))
        timed("stt", t0)

        t0 = time.monotonic()
        if "llm" in backends:
            lm: Any = remote_stage("llm")
            loaded.append(lm)
        else:
            from .local.llm import LlamaCppLLM

            report("llm", f"loading {chosen.llm}")
            lm = LlamaCppLLM(chosen.llm, n_ctx=chosen.n_ctx, n_threads=cores)
            loaded.append(lm)
            if warm:
                lm.warmup()
        timed("llm", t0)

        t0 = time.monotonic()
        if "tts" in backends:
            voice: Any = remote_stage("tts")
            loaded.append(voice)
        else:
            from .local.tts import EspeakTTS, PiperTTS, load_tts

            report("tts", "loading the voice")
            voice = PiperTTS(threads=max(1, cores // 2)) if chosen.tts == "piper" else load_tts("espeak")
            assert isinstance(voice, (PiperTTS, EspeakTTS))
            loaded.append(voice)
            if warm:
                for _chunk in voice.synthesize("Hello.", voice="", speed=1.0, cancel=threading.Event()):
                    pass
        timed("tts", t0)
    except RemoteEngineError:
        close_loaded(loaded)
        raise
    except Exception as exc:
        close_loaded(loaded)
        raise ModelLoadError(report.stage, chosen.name, exc) from exc
    except BaseException:
        close_loaded(loaded)
        raise
    stack = assemble_stack(chosen.name, vad, stt, lm, voice, started=started, timings=timings, report=report)
    stack.remote = dict(backends)
    return stack
