"""Conversions at the engine's edges: canonical PCM16/24 kHz ↔ float32 at model rates, and G.711."""

from __future__ import annotations

import numpy as np

from .format import SAMPLE_RATE
from .resample import resample


def pcm16_to_f32(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def f32_to_pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def f32_to_canonical(audio: np.ndarray, rate: int) -> bytes:
    """float32 mono at `rate` (a voice's own rate) → canonical PCM16 24 kHz."""
    return f32_to_pcm16(resample(audio, rate, SAMPLE_RATE))


def pcm24k_to_f32_16k(pcm: bytes) -> np.ndarray:
    """Canonical PCM → float32 16 kHz, the rate of the VAD and ASR models."""
    return resample(pcm16_to_f32(pcm), SAMPLE_RATE, 16000)


# ---- G.711 (audio/pcmu, audio/pcma on WebSocket) ------------------------------------------
def _ulaw_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32)
    u = ~codes & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


_ULAW = _ulaw_table()
_ALAW = _alaw_table()


def _encode_with(table: np.ndarray, samples: np.ndarray) -> bytes:
    order = np.argsort(table)
    sorted_vals = table[order]
    idx = np.searchsorted(sorted_vals, samples)
    idx = np.clip(idx, 1, len(sorted_vals) - 1)
    left, right = sorted_vals[idx - 1], sorted_vals[idx]
    nearest = np.where(np.abs(samples - left) <= np.abs(samples - right), idx - 1, idx)
    return order[nearest].astype(np.uint8).tobytes()


def _encode_table(table: np.ndarray) -> np.ndarray:
    """Every int16 value → its nearest G.711 code: encoding a frame is then one lookup."""
    return np.frombuffer(_encode_with(table, np.arange(-32768, 32768, dtype=np.int32)), dtype=np.uint8)


_ULAW_CODES = _encode_table(_ULAW)
_ALAW_CODES = _encode_table(_ALAW)


def g711_to_pcm8k(data: bytes, law: str) -> np.ndarray:
    """μ-law/A-law → int16 samples at G.711's own 8 kHz (an RTP stream resamples them as a stream)."""
    return (_ULAW if law == "pcmu" else _ALAW)[np.frombuffer(data, dtype=np.uint8)]


def pcm8k_to_g711(samples: np.ndarray, law: str) -> bytes:
    """int16 samples at 8 kHz → μ-law/A-law."""
    codes = _ULAW_CODES if law == "pcmu" else _ALAW_CODES
    return codes[np.asarray(samples, dtype=np.int16).astype(np.int32) + 32768].tobytes()


def g711_decode(data: bytes, law: str) -> bytes:
    """μ-law/A-law 8 kHz → canonical PCM16 24 kHz."""
    table = _ULAW if law == "pcmu" else _ALAW
    pcm8 = table[np.frombuffer(data, dtype=np.uint8)].astype(np.float32) / 32768.0
    return f32_to_pcm16(resample(pcm8, 8000, SAMPLE_RATE))


def g711_encode(pcm: bytes, law: str) -> bytes:
    """Canonical PCM16 24 kHz → μ-law/A-law 8 kHz."""
    table = _ULAW if law == "pcmu" else _ALAW
    audio8 = resample(pcm16_to_f32(pcm), SAMPLE_RATE, 8000)
    samples = (np.clip(audio8, -1.0, 1.0) * 32767.0).astype(np.int16)
    return _encode_with(table, samples)
