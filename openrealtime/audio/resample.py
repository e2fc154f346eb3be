"""Band-limited polyphase resampling in numpy (windowed sinc, Kaiser window): the one resampler for
whole chunks of audio — voices at their own rate (Piper/espeak 22.05 kHz, remote TTS) -> 24 kHz,
canonical 24 kHz -> 16 kHz for transcription, G.711's 8 kHz <-> 24 kHz. (Continuous streams of
decoded frames go through libswresample, `av.AudioResampler`, which keeps state between frames.)
Stateless: each call resamples one complete chunk with zero padding at the edges, which is right
for the sentence/clause chunks the TTS yields (they start and end near silence).
Quality: ~16 zero crossings per side, Kaiser beta 8.6, cutoff 0.94 x the lower Nyquist
(stop-band attenuation around 80 dB) — far above what Opus at 24-32 kbit/s can tell apart.
"""

from __future__ import annotations

import functools
from math import gcd

import numpy as np

_ZERO_CROSSINGS = 16
_BETA = 8.6
_ROLLOFF = 0.94
_BLOCK = 16_384  # output samples per vectorised block (bounds temporary memory)


@functools.lru_cache(maxsize=16)
def _table(up: int, down: int) -> tuple[np.ndarray, int]:
    """Polyphase table [up, taps] and the left offset, for output rate = input rate * up / down."""
    fc = min(1.0, up / down) * _ROLLOFF  # cutoff relative to the input Nyquist
    half = int(np.ceil(_ZERO_CROSSINGS / fc))
    k = np.arange(-half + 1, half + 1, dtype=np.float64)  # tap offsets relative to floor(t)
    phases = np.arange(up, dtype=np.float64) / up  # fractional part of t for each phase
    t = k[None, :] - phases[:, None]
    window = np.kaiser(2 * half + 1, _BETA)
    # evaluate the continuous Kaiser window at t (|t| <= half) by interpolation
    w = np.interp(t, np.arange(-half, half + 1, dtype=np.float64), window, left=0.0, right=0.0)
    h = fc * np.sinc(fc * t) * w
    h /= h.sum(axis=1, keepdims=True)  # exact unity gain at DC for every phase
    return h.astype(np.float32), half - 1


def resample(audio: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Resample mono float audio from `src_rate` to `dst_rate`; returns float32."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    if src_rate == dst_rate or x.size == 0:
        return x.copy()
    g = gcd(int(src_rate), int(dst_rate))
    up, down = dst_rate // g, src_rate // g
    table, left = _table(up, down)
    taps = table.shape[1]
    n_out = int(np.ceil(x.size * up / down))
    padded = np.concatenate([np.zeros(left, np.float32), x, np.zeros(taps, np.float32)])
    out = np.empty(n_out, dtype=np.float32)
    offsets = np.arange(taps)
    for start in range(0, n_out, _BLOCK):
        n = np.arange(start, min(n_out, start + _BLOCK), dtype=np.int64)
        pos = n * down
        base = pos // up  # floor of the input position
        phase = pos - base * up
        frames = padded[base[:, None] + offsets[None, :]]
        out[start : start + n.size] = np.einsum("ij,ij->i", frames, table[phase])
    return out
