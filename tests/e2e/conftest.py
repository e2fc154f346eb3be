"""End-to-end fixtures: the real local model stack, loaded once per test session."""

import subprocess
from pathlib import Path

import pytest

from openrealtime.api.embedded import embedded_server
from openrealtime.config import Settings
from tests.helpers import server_settings


@pytest.fixture(scope="session")
def model_stack():
    from openrealtime.engines.stack import load_model_stack

    stack = load_model_stack("default")
    yield stack
    stack.close()


@pytest.fixture
async def voice_server(model_stack):
    async with embedded_server(server_settings(engine="local"), models=model_stack) as server:
        yield server


def speak_to_wav(path: Path, text: str, *, pad_after_s: float = 0.0) -> Path:
    """espeak-ng speech at 48 kHz mono (what a fake microphone would send)."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
    cmd = ["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(path)]
    if pad_after_s:
        cmd += ["pad", "0", str(pad_after_s)]
    subprocess.run(cmd, check=True)
    return path


def piper_to_wav(stack, path: Path, text: str) -> Path:
    """Natural test speech from the Piper voice the server itself uses (24 kHz mono WAV)."""
    import threading
    import wave

    import numpy as np

    audio = np.concatenate(list(stack.tts.synthesize(text, voice="alloy", speed=1.0, cancel=threading.Event())))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(stack.tts.sample_rate)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return path
