"""Input noise reduction of one session (`audio.input.noise_reduction`), before everything else hears it.

`InputDenoiser` sits in front of the input buffer: canonical PCM goes through the stack's
`NoiseSuppressor` (DeepFilterNet3) in the runtime's "denoise" stage, one batch at a time and in order,
never on the loop, and what comes out is what the session keeps, transcribes and runs VAD and turn
detection on (as OpenAI documents: the processed audio). `near_field` and `far_field` choose how much
noise may be taken away (`ATTENUATION_DB`, times `strength`); far field also turns on the post-filter.
`null` (or strength 0) passes audio through untouched.

Its cost is bounded: one stream per session, at most the suppressor's `max_streams` at once (beyond
that the session runs without, said in the log and /metrics), and when the stage falls behind by more
than `MAX_BACKLOG_MS` the oldest audio goes through unprocessed (counted) rather than delaying turns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from ..audio.format import BYTES_PER_MS
from ..engines.base import NoiseStream, NoiseSuppressor
from ..runtime import ModelRuntime

log = logging.getLogger(__name__)

ATTENUATION_DB = {"near_field": 24.0, "far_field": 30.0}  # at strength 1 (measured: noise floor -23 / -30 dB)
POST_FILTER = {"near_field": 0.0, "far_field": 0.02}
MAX_ATTENUATION_DB = 100.0  # DeepFilterNet's "no limit"
MAX_BACKLOG_MS = 500


def settings_for(noise_reduction: Any) -> tuple[float, float] | None:
    """(attenuation limit in dB, post-filter beta) for a session's `noise_reduction`; None: off."""
    if noise_reduction is None or noise_reduction.strength <= 0:
        return None
    kind = noise_reduction.type
    return min(MAX_ATTENUATION_DB, ATTENUATION_DB[kind] * noise_reduction.strength), POST_FILTER[kind]


class InputDenoiser:
    """Noise reduction in front of a session's input (see the module doc). `on_audio(pcm)` gets the audio
    to keep, processed or not, in the order it was pushed."""

    def __init__(self, suppressor: NoiseSuppressor, runtime: ModelRuntime, stats: dict[str, int],
                 on_audio: Callable[[bytes], None]) -> None:
        self._suppressor = suppressor
        self._runtime = runtime
        self._stats = stats
        self._on_audio = on_audio
        self._settings: tuple[float, float] | None = None
        self._stream: NoiseStream | None = None
        self._stream_settings: tuple[float, float] | None = None
        self._refused = False
        self._pending: deque[tuple[bytes, bool]] = deque()  # (pcm, process it)
        self._pending_bytes = 0
        self._busy = False
        self._closed = False
        self._generation = 0  # bumped by `discard`: a batch in flight for older audio is dropped
        self._pushed = 0  # bytes pushed so far
        self._done = 0  # bytes pushed whose result went out
        self._waiters: list[tuple[int, Callable[[], None]]] = []

    @property
    def active(self) -> bool:
        return self._settings is not None

    def configure(self, noise_reduction: Any) -> None:
        self._settings = settings_for(noise_reduction)
        if self._settings is not None and not self._refused:
            self._pump()  # opens the stream now, before the audio needs it

    def push(self, pcm: bytes) -> None:
        self._pushed += len(pcm)
        if not self._busy and not self._pending and (self._settings is None or self._refused):
            self._done += len(pcm)
            self._on_audio(pcm)
            return
        self._pending.append((pcm, self._settings is not None and not self._refused))
        self._pending_bytes += len(pcm)
        self._shed()
        self._pump()

    def when_drained(self, callback: Callable[[], None]) -> bool:
        """Run `callback` once everything pushed so far came out (at once, returning False, if it has)."""
        if self._done >= self._pushed:
            callback()
            return False
        self._waiters.append((self._pushed, callback))
        return True

    def discard(self) -> None:
        """Drop the audio not yet out (input_audio_buffer.clear)."""
        self._generation += 1
        self._pending.clear()
        self._pending_bytes = 0
        self._done = self._pushed
        self._wake()

    def close(self) -> None:
        self._closed = True
        self._pending.clear()
        self._waiters.clear()
        if not self._busy:
            self._close_stream()

    # ---- the work, one batch at a time -----------------------------------------------------------
    def _shed(self) -> None:
        """The stage is behind: let the oldest audio through unprocessed until the backlog is bounded."""
        limit = MAX_BACKLOG_MS * BYTES_PER_MS
        bypassed = 0
        while self._pending_bytes > limit and len(self._pending) > 1:
            pcm, _process = self._pending.popleft()
            self._pending_bytes -= len(pcm)
            self._done += len(pcm)
            bypassed += len(pcm)
            self._on_audio(pcm)
        if bypassed:
            ms = bypassed // BYTES_PER_MS
            self._stats["noise_reduction_bypassed_ms"] = self._stats.get("noise_reduction_bypassed_ms", 0) + ms
            self._suppressor.account(0.0, 0.0, bypassed_s=ms / 1000)
            self._wake()

    def _pump(self) -> None:
        if self._busy or self._closed:
            return
        batch: list[tuple[bytes, bool]] = list(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        settings = self._settings
        opening = settings is not None and not self._refused and settings != self._stream_settings
        if not batch and not opening:
            return
        self._busy = True
        generation = self._generation
        job = self._runtime.spawn(self._runtime.run("denoise", self._work, batch, settings if opening else None),
                                  name="denoise")
        job.add_done_callback(lambda t: self._worked(t, batch, generation))

    def _work(self, batch: list[tuple[bytes, bool]],
              open_with: tuple[float, float] | None) -> tuple[list[bytes], float]:
        """In the denoise stage: (re)open the stream if the settings changed, then process the batch.
        Returns the audio to keep and the CPU seconds processing took."""
        if open_with is not None:
            if self._stream is not None:
                self._stream.close()
            self._stream = self._suppressor.new_stream(attenuation_db=open_with[0], post_filter=open_with[1])
            self._stream_settings = open_with
        out = []
        started = time.thread_time()
        for pcm, process in batch:
            if process and self._stream is not None:
                audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
                clean = self._stream.process(audio)
                out.append((np.clip(clean, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())
            else:
                out.append(pcm)
        return out, time.thread_time() - started

    def _worked(self, job: asyncio.Future, batch: list[tuple[bytes, bool]], generation: int) -> None:
        self._busy = False
        if self._closed:
            self._close_stream()
            return
        if job.cancelled() or job.exception() is not None:  # logged by the runtime's spawn: pass the audio on
            result = [pcm for pcm, _process in batch]
        else:
            result, cpu_s = job.result()
            self._stats["noise_reduction_cpu_ms"] = self._stats.get("noise_reduction_cpu_ms", 0) + round(cpu_s * 1000)
        if self._settings is not None and self._stream is None and not self._refused and self._stream_settings:
            self._refused = True
            log.warning("noise reduction unavailable for this session: the suppressor is at capacity")
            self._stats["noise_reduction_refused"] = 1
        if generation == self._generation:
            for pcm, (raw, process) in zip(result, batch, strict=True):
                self._done += len(raw)
                if process:
                    self._stats["noise_reduced_ms"] = self._stats.get("noise_reduced_ms", 0) + len(raw) // BYTES_PER_MS
                if pcm:
                    self._on_audio(pcm)
            self._wake()
        self._pump()

    def _wake(self) -> None:
        ready = [cb for upto, cb in self._waiters if self._done >= upto]
        self._waiters = [(upto, cb) for upto, cb in self._waiters if self._done < upto]
        for callback in ready:
            callback()

    def _close_stream(self) -> None:
        """Give the stream back (in the stage: it may free native memory)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            self._runtime.spawn(self._runtime.run("denoise", stream.close), name="denoise-close")
