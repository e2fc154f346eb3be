"""Whisper's log-mel spectrogram in numpy (what Whisper-encoder models such as Smart Turn take as input).

The recipe Whisper publishes: 16 kHz audio, a 400-sample (25 ms) periodic Hann window every 160 samples
(10 ms), centred frames (the signal reflected by 200 samples at each end), the power spectrum projected
onto 80 triangular mel bands (Slaney's mel scale, 0-8 kHz, each band normalised to unit area),
log10 with a floor of 1e-10, the last frame dropped, everything clamped to at most 8 (log10 units)
below the loudest value, then (x + 4) / 4. Optionally the waveform is first normalised to zero mean and
unit variance (Smart Turn's `do_normalize`).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SAMPLE_RATE = 16_000
N_FFT = 400
HOP = 160
N_MELS = 80


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear (3 mels per 200 Hz) below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz * 3.0 / 200.0
    log = 15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(hz >= 1000.0, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * 200.0 / 3.0
    log = 1000.0 * np.exp((mel - 15.0) * (np.log(6.4) / 27.0))
    return np.where(mel >= 15.0, log, linear)


def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, rate: int = SAMPLE_RATE) -> np.ndarray:
    """[n_fft // 2 + 1, n_mels] triangular filters on Slaney's mel scale, each of unit area."""
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(rate / 2), n_mels + 2))
    bins_hz = np.linspace(0.0, rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges_hz[:-2], edges_hz[1:-1], edges_hz[2:]
    rising = (bins_hz[:, None] - lower[None, :]) / (centre - lower)[None, :]
    falling = (upper[None, :] - bins_hz[:, None]) / (upper - centre)[None, :]
    triangles = np.clip(np.minimum(rising, falling), 0.0, None)
    return triangles * (2.0 / (upper - lower))[None, :]


class WhisperLogMel:
    """Log-mel features of a fixed-length window: `features(audio)` -> float32 [80, len(audio) // 160]."""

    def __init__(self, n_mels: int = N_MELS) -> None:
        self.filters = mel_filterbank(n_mels)
        self.window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann

    def features(self, audio: np.ndarray, *, normalize: bool = True) -> np.ndarray:
        x = np.asarray(audio, dtype=np.float64).reshape(-1)
        if normalize:
            x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        half = N_FFT // 2
        padded = np.pad(x, (half, half), mode="reflect")
        frames = sliding_window_view(padded, N_FFT)[::HOP]  # [len // 160 + 1, 400], no copy
        power = np.abs(np.fft.rfft(frames * self.window, axis=-1)) ** 2
        mel = power[:-1] @ self.filters  # the last frame dropped, as Whisper does
        log_mel = np.log10(np.maximum(mel, 1e-10))
        log_mel = np.maximum(log_mel, log_mel.max() - 8.0)
        return ((log_mel + 4.0) / 4.0).T.astype(np.float32)
