"""Smart Turn v3.2 (Daily, BSD-2-Clause) on onnxruntime: has the speaker finished their turn?

The ONNX file ships inside the `pipecat-ai==1.14.0` wheel, installed as weights only (never imported;
engines/assets.py locates it through importlib.metadata and checks its sha256). It is a Whisper-tiny
encoder with a classifier, audio only, trained on 23 languages:

  input  `input_features` float32 [batch, 80, 800]: Whisper's log-mel (log_mel.py) of the latest 8 s of
         the turn at 16 kHz, zeros before it when the turn is shorter (left-padded), the waveform
         normalised to zero mean and unit variance first
  output `logits` float32 [batch, 1]: P(turn complete), already through a sigmoid

≈45 ms per inference on one thread. One `InferenceSession` serves every session (onnxruntime's `run` is
thread-safe); the model keeps no state between calls.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from .. import assets
from ._onnx import make_session
from .log_mel import SAMPLE_RATE, WhisperLogMel

log = logging.getLogger(__name__)

WINDOW_S = 8
WINDOW = WINDOW_S * SAMPLE_RATE


class SmartTurn:
    """`EndOfTurnModel` (engines/base.py) over Smart Turn v3.2."""

    sample_rate = SAMPLE_RATE
    window_s = float(WINDOW_S)

    def __init__(self, model_path: str | Path | None = None, *, threads: int = 1) -> None:
        self.model_path = Path(model_path) if model_path else assets.dist_file(assets.SMART_TURN)
        started = time.monotonic()
        self._session = make_session(self.model_path, threads=threads)
        inputs = {i.name: i.shape for i in self._session.get_inputs()}
        if list(inputs) != ["input_features"]:
            raise RuntimeError(f"{self.model_path} is not the Smart Turn v3 model this code expects "
                               f"(inputs {sorted(inputs)}); install the pinned {assets.SMART_TURN.pip_spec}")
        self._mel = WhisperLogMel()
        self.threads = threads
        log.info("Smart Turn v3.2 loaded from %s in %.2f s", self.model_path, time.monotonic() - started)

    def completion(self, audio: np.ndarray) -> float:
        """P(the turn is complete) for the turn so far (float32 mono at 16 kHz; only its last 8 s count)."""
        x = np.asarray(audio, dtype=np.float32).reshape(-1)[-WINDOW:]
        if x.size < WINDOW:
            x = np.concatenate([np.zeros(WINDOW - x.size, dtype=np.float32), x])
        features = self._mel.features(x)[None]
        (logits,) = self._session.run(None, {"input_features": features})
        return float(np.asarray(logits).reshape(-1)[0])

    def warmup(self) -> None:
        """One inference on silence (onnxruntime initialises lazily)."""
        self.completion(np.zeros(SAMPLE_RATE, dtype=np.float32))

    def describe(self) -> str:
        return f"Smart Turn v3.2 (onnxruntime, {self.threads} thread{'s' if self.threads != 1 else ''})"

    def close(self) -> None:
        self._session = None  # type: ignore[assignment]
