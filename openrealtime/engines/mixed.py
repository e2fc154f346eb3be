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
from typing import Any

import numpy as np

from .base import ModelStack
from .openai_compat import OpenAICompatLLM, OpenAICompatSTT, OpenAICompatTTS, RemoteEndpoint, RemoteEngineError
from .openai_compat.http import list_models
from .stack import StageProgress, _cores, assemble_stack, close_loaded, load_model_stack, resolve_profile

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
) -> ModelStack:
    """Remote stages where a URL is given, local ones (of `profile`) elsewhere; see the module doc."""
    if not (llm_url or stt_url or tts_url):
        return load_model_stack(profile, progress=progress, warm=warm)

    from .local.vad import SileroVad

    chosen = resolve_profile(profile)
    cores = _cores()

    def report(stage: str, message: str) -> None:
        log.info("[%s] %s", stage, message)
        if progress:
            progress(stage, message)

    # 1. endpoints and their model names, before anything slow is loaded
    endpoints: dict[str, RemoteEndpoint] = {}
    for role, url, key, model in (("llm", llm_url, llm_key, llm_model), ("stt", stt_url, stt_key, stt_model),
                                  ("tts", tts_url, tts_key, tts_model)):
        if url:
            endpoints[role] = RemoteEndpoint(url, api_key=key or None, model=model or None, role=role)
    for role, endpoint in endpoints.items():
        report(role, f"checking {endpoint.label}")
        listed = list_models(endpoint)
        if role == "llm":
            model = _pick_model(endpoint, listed, default=None if listed else "default")
        elif role == "stt":
            model = _pick_model(endpoint, listed, default="whisper-1", hints=_STT_HINTS)
        else:
            model = _pick_model(endpoint, listed, default="tts-1", hints=_TTS_HINTS)
        endpoints[role] = RemoteEndpoint(endpoint.base_url, api_key=endpoint.api_key, model=model, role=role,
                                         read_timeout_s=120.0 if role == "llm" else 60.0)

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
        if "stt" in endpoints:
            stt: Any = OpenAICompatSTT(endpoints["stt"])
            loaded.append(stt)
            if warm:
                report("stt", f"warming up {stt.describe()}")
                stt.warmup()
        else:
            from .local.asr import WhisperSTT

            report("stt", f"loading Whisper {chosen.asr}")
            stt = WhisperSTT(chosen.asr, cpu_threads=cores)
            loaded.append(stt)
            if warm:
                stt.transcribe(np.zeros(stt.sample_rate, dtype=np.float32))
        timed("stt", t0)

        t0 = time.monotonic()
        if "llm" in endpoints:
            lm: Any = OpenAICompatLLM(endpoints["llm"], supports_images=llm_supports_images)
            loaded.append(lm)
            if warm:
                report("llm", f"warming up {lm.describe()}")
                lm.warmup()
        else:
            from .local.llm import LlamaCppLLM

            report("llm", f"loading {chosen.llm}")
            lm = LlamaCppLLM(chosen.llm, n_ctx=chosen.n_ctx, n_threads=cores)
            loaded.append(lm)
            if warm:
                lm.warmup()
        timed("llm", t0)

        t0 = time.monotonic()
        if "tts" in endpoints:
            voice: Any = OpenAICompatTTS(endpoints["tts"], voice=tts_voice)
            loaded.append(voice)
            if warm:
                report("tts", f"warming up {voice.describe()}")
                voice.warmup()
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
    except BaseException:
        close_loaded(loaded)
        raise
    return assemble_stack(chosen.name, vad, stt, lm, voice, started=started, timings=timings, report=report)
