"""End-to-end helpers (the `model_stack` and `voice_server` fixtures live in tests/conftest.py)."""

import subprocess
from pathlib import Path



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
