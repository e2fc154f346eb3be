"""Silero VAD v6 (the ONNX that ships inside faster-whisper) on onnxruntime, no torch.

The model in `faster_whisper/assets/silero_vad_v6.onnx` takes
  input  float32 [frames, 576]   each row = 64 samples of context (the tail of the previous
                                  512-sample frame) + the 512-sample frame, 16 kHz
  h, c   float32 [1, 1, 128]     LSTM state carried from frame to frame
and returns `speech_probs` [frames] and the new `hn`, `cn`. One `InferenceSession` is shared by
all sessions (onnxruntime's `run` is thread-safe); each `SileroVadStream` owns its own context and
LSTM state, so streams never interfere.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .. import assets
from ._onnx import make_session

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
FRAME_SAMPLES = 512  # 32 ms
CONTEXT_SAMPLES = 64
STATE_SHAPE = (1, 1, 128)


class SileroVadStream:
    """Per-session VAD state. Feed consecutive 512-sample 16 kHz frames."""

    __slots__ = ("_vad", "_context", "_h", "_c", "_buf")

    def __init__(self, vad: SileroVad) -> None:
        self._vad = vad
        self._buf = np.zeros((1, CONTEXT_SAMPLES + FRAME_SAMPLES), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        self._h = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(STATE_SHAPE, dtype=np.float32)

    def probability(self, frame: np.ndarray) -> float:
        frame = np.asarray(frame, dtype=np.float32).reshape(-1)
        if frame.shape[0] != FRAME_SAMPLES:
            raise ValueError(f"Silero VAD needs frames of {FRAME_SAMPLES} samples at 16 kHz, got {frame.shape[0]}")
        buf = self._buf
        buf[0, :CONTEXT_SAMPLES] = self._context
        buf[0, CONTEXT_SAMPLES:] = frame
        prob, self._h, self._c = self._vad._session.run(None, {"input": buf, "h": self._h, "c": self._c})
        self._context = frame[-CONTEXT_SAMPLES:].copy()
        return float(prob.reshape(-1)[0])


class SileroVad:
    """`VoiceActivityDetector` over Silero VAD v6 ONNX (16 kHz, 512-sample frames)."""

    sample_rate = SAMPLE_RATE
    frame_samples = FRAME_SAMPLES

    def __init__(self, model_path: str | Path | None = None) -> None:
        self.model_path = Path(model_path) if model_path else assets.silero_vad_path()
        self._session = make_session(self.model_path, threads=1)
        names = {i.name for i in self._session.get_inputs()}
        if names != {"input", "h", "c"}:
            raise RuntimeError(
                f"{self.model_path} is not the Silero VAD v6 model this code expects (inputs {sorted(names)}); "
                f"install the pinned faster-whisper==1.2.1"
            )
        log.info("Silero VAD loaded from %s", self.model_path)

    def warmup(self) -> None:
        """One frame of silence (onnxruntime initialises lazily)."""
        self.new_stream().probability(np.zeros(self.frame_samples, dtype=np.float32))

    def new_stream(self) -> SileroVadStream:
        return SileroVadStream(self)

    def describe(self) -> str:
        return "Silero VAD v6 (onnxruntime, 1 thread)"
