"""Fixtures for the compatibility suite: real third-party clients against a server on the real local
model stack (`model_stack` from tests/conftest.py, loaded once per test session)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from openrealtime.api.embedded import embedded_server
from tests.support import LOCAL_ALLOW, server_settings

JS_DIR = Path(__file__).parent / "js"
KEY = "sk-compat-test"
INSTALL_HINT = "run .ci/run (it installs Node.js 20+ and runs tests/compat/js/install.sh, i.e. `npm ci`)"


@pytest.fixture
async def compat_server(model_stack, model_runtime):
    """A server on the real local stack that requires an API key (so auth paths are exercised). The
    tests' MCP servers listen on 127.0.0.1: allowed as an operator would (--mcp-allow 127.0.0.1)."""
    settings = server_settings(engine="local", api_keys=[KEY], mcp_allow=list(LOCAL_ALLOW))
    async with embedded_server(settings, models=model_stack, runtime=model_runtime) as server:
        yield server


@pytest.fixture(scope="session")
def node_js() -> Path:
    """The JS client packages, installed from package-lock.json. Missing → fail (never skip)."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.fail(f"node and npm are required for tests/compat: {INSTALL_HINT}")
    version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 20:
        pytest.fail(f"Node.js 20+ is required for tests/compat (found {version}): {INSTALL_HINT}")
    for package in ("@openai/agents-realtime", "werift", "esbuild", "zod"):
        if not (JS_DIR / "node_modules" / package / "package.json").exists():
            pytest.fail(f"tests/compat/js/node_modules/{package} is missing: {INSTALL_HINT}")
    return JS_DIR


async def run_node(script: str, *args: str, timeout: float = 150.0) -> dict:
    """Run a Node script from tests/compat/js without blocking the event loop (the server lives in it).
    Scripts print one JSON object on their last stdout line."""
    proc = await asyncio.create_subprocess_exec(
        "node", str(JS_DIR / script), *args, cwd=str(JS_DIR),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        pytest.fail(f"{script} timed out after {timeout}s\nstdout:\n{out.decode()[-4000:]}\nstderr:\n{err.decode()[-4000:]}")
    lines = [line for line in out.decode().splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        pytest.fail(f"{script} exited {proc.returncode}\nstdout:\n{out.decode()[-6000:]}\nstderr:\n{err.decode()[-6000:]}")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        pytest.fail(f"{script} did not end with a JSON line\nstdout:\n{out.decode()[-6000:]}\nstderr:\n{err.decode()[-4000:]}")


def wav_pcm(path: Path) -> tuple[bytes, int]:
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        return w.readframes(w.getnframes()), w.getframerate()


def pcm24k_from_wav(path: Path) -> bytes:
    """A mono 16-bit WAV as PCM16 at 24 kHz (the API's `audio/pcm`)."""
    pcm, rate = wav_pcm(path)
    if rate == 24000:
        return pcm
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    n = int(len(samples) * 24000 / rate)
    resampled = np.interp(np.linspace(0, len(samples) - 1, n), np.arange(len(samples)), samples)
    return resampled.astype("<i2").tobytes()


def write_wav(path: Path, pcm: bytes, rate: int = 24000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path
