"""Test audio: the one synthetic speech generator (`speechlike`), PCM chunks built from it for the
scripted engine tests, and real spoken questions (espeak-ng, or the server's own Piper voice) as WAV
files for fake microphones."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np


def speechlike(seconds: float, *, rate: int = 48000, seed: int = 0, noise: float = 0.02,
               steady: bool = False) -> np.ndarray:
    """Voiced harmonics (a gliding 110-170 Hz pitch) with a syllable-rate envelope and a little noise
    (Opus SILK/hybrid territory), as int16 samples at `rate`. `steady` keeps the envelope at its peak,
    so every 20-32 ms frame is loud (an energy VAD hears speech throughout)."""
    t = np.arange(round(rate * seconds)) / rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 1.0 if steady else 0.55 + 0.45 * np.sin(2 * np.pi * 3.5 * t)
    hiss = np.random.default_rng(seed).normal(0, noise, t.size) if noise else 0.0
    return (9000 * (voice * env / 2 + hiss)).astype("<i2")


def speech(ms: int) -> bytes:
    """`ms` of steady speechlike PCM16 at 24 kHz (the API's `audio/pcm`): loud in every frame, so the
    scripted engine tests' energy VAD calls all of it speech."""
    return speechlike(ms / 1000, rate=24000, seed=ms, steady=True).tobytes()


def silence(ms: int) -> bytes:
    """`ms` of PCM16 silence at 24 kHz."""
    return bytes(48 * ms)


def spoken_wav(path: Path, text: str, *, words_per_minute: int = 175, pad_before_s: float = 0.0,
               pad_after_s: float = 0.0) -> Path:
    """`text` spoken by espeak-ng, as a 48 kHz mono 16-bit WAV (what a fake microphone sends), with
    silence before and after."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(words_per_minute), "-w", str(raw), text], check=True)
    return _mic_wav(raw, path, pad_before_s, pad_after_s)


def piper_wav(stack, path: Path, text: str, *, mic: bool = False, pad_before_s: float = 0.0,
              pad_after_s: float = 0.0) -> Path:
    """Natural test speech from the Piper voice the server itself uses: a mono WAV at the voice's rate,
    or with `mic` (or padding) at 48 kHz like spoken_wav's."""
    import threading
    import wave

    audio = np.concatenate(list(steady_voice(stack.tts).synthesize(text, voice="alloy", speed=1.0,
                                                                   cancel=threading.Event())))
    raw = path.with_suffix(".raw.wav") if mic or pad_before_s or pad_after_s else path
    with wave.open(str(raw), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(stack.tts.sample_rate)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return path if raw == path else _mic_wav(raw, path, pad_before_s, pad_after_s)


def steady_voice(tts):
    """`tts` (a Piper voice) without its sampled noise, sharing its ONNX session: the same words sound the same
    on every run, so a test's question is heard the same way every run (with the noise, one CI run in a few
    had Whisper hear "friends" for "France"). Other voices are returned as they are."""
    import copy

    if not hasattr(tts, "noise_scale"):
        return tts
    steady = copy.copy(tts)
    steady.noise_scale = steady.noise_w = 0.0
    return steady


def _mic_wav(raw: Path, path: Path, pad_before_s: float, pad_after_s: float) -> Path:
    """`raw` as a 48 kHz mono 16-bit WAV at `path` (sox), padded with silence."""
    cmd = ["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(path)]
    if pad_before_s or pad_after_s:
        cmd += ["pad", str(pad_before_s), str(pad_after_s)]
    subprocess.run(cmd, check=True)
    return path
