"""Input noise reduction of one session (`audio.input.noise_reduction`), before everything else hears it.

`InputDenoiser` sits in front of the input buffer: canonical PCM goes through the stack's
`NoiseSuppressor` (DeepFilterNet3) in the runtime's "denoise" stage, one batch at a time and in order,
never on the loop, and what comes out is what the session keeps, transcribes and runs VAD and turn
detection on (as OpenAI documents: the processed audio). `near_field` and `far_field` choose how much
noise may be taken away (`ATTENUATION_DB`, times `strength`); far field also turns on the post-filter.
`null` (or strength 0) passes audio through untouched.

What the session keeps of a committed turn (the item's audio, `conversation.item.retrieve`) also has its
pauses quieted by `PauseGate`: DeepFilterNet3 takes steady noise down by only 8-15 dB (measured on pink
noise: bench/README "turn_taking"), so where the VAD heard no voice on the processed audio, the kept audio
is `GATE_DB` (times `strength`) quieter still, with `GATE_PRE_MS` before each voiced stretch and
`GATE_HOLD_MS` after it left as they are (onsets, trailing consonants) and `GATE_RAMP_MS` fades. The
voice itself is never touched, and nothing the VAD has not judged yet (a manual commit of audio VAD never
saw) is gated. The speculative transcription reads the buffer before the gate.

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
GATE_DB = 20.0  # at strength 1: how much quieter the pauses of the kept audio are made
GATE_PRE_MS = 100  # kept as is before a voiced stretch (the VAD hears an onset a frame late)
GATE_HOLD_MS = 200  # and after it (decays, trailing consonants)
GATE_RAMP_MS = 20  # fades in and out of the gate


def settings_for(noise_reduction: Any) -> tuple[float, float] | None:
    """(attenuation limit in dB, post-filter beta) for a session's `noise_reduction`; None: off."""
    if noise_reduction is None or noise_reduction.strength <= 0:
        return None
    kind = noise_reduction.type
    return min(MAX_ATTENUATION_DB, ATTENUATION_DB[kind] * noise_reduction.strength), POST_FILTER[kind]


def gate_db_for(noise_reduction: Any) -> float:
    """How much the pauses of the kept audio are quieted for a session's `noise_reduction` (0: not at all)."""
    if settings_for(noise_reduction) is None:
        return 0.0
    return min(2 * GATE_DB, GATE_DB * noise_reduction.strength)


class PauseGate:
    """Where the VAD heard voice on the processed audio, and the kept audio's pauses quieted (module doc).
    Positions are ms on the session's audio clock."""

    def __init__(self) -> None:
        self.db = 0.0  # 0: off
        self.spans: list[list[float]] = []  # voiced stretches [start, end], in order, merged
        self.judged_ms = 0.0  # the VAD has judged the audio up to here

    def frame(self, end_ms: float, frame_ms: float, voiced: bool) -> None:
        self.judged_ms = end_ms
        if not voiced:
            return
        start = end_ms - frame_ms
        if self.spans and start <= self.spans[-1][1] + 1:
            self.spans[-1][1] = end_ms
        else:
            self.spans.append([start, end_ms])

    def forget_before(self, ms: float) -> None:
        """Spans that can no longer matter to audio at or after `ms`."""
        keep = ms - GATE_HOLD_MS - GATE_RAMP_MS
        self.spans = [span for span in self.spans if span[1] >= keep]

    def apply(self, pcm: bytes, start_ms: float) -> bytes:
        """`pcm` (canonical, starting at `start_ms`) with its judged pauses quieted by `db`."""
        if self.db <= 0 or len(pcm) < 2:
            return pcm
        samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
        per_ms = BYTES_PER_MS // 2
        n_ms = -(-len(samples) // per_ms)
        floor = 10 ** (-self.db / 20)
        gain = np.full(n_ms + 2 * GATE_RAMP_MS, floor, dtype=np.float32)  # 1 ms steps, ramp margin each side
        judged = int(self.judged_ms - start_ms)
        if judged < n_ms:  # not judged yet: left as it is
            gain[max(0, judged) + GATE_RAMP_MS:] = 1.0
        for begin, end in self.spans:
            a = int(begin - GATE_PRE_MS - start_ms) + GATE_RAMP_MS
            b = int(end + GATE_HOLD_MS - start_ms) + GATE_RAMP_MS
            if b > 0 and a < len(gain):
                gain[max(0, a):max(0, b)] = 1.0
        if gain.min() >= 1.0:
            return pcm
        ramp = np.hanning(GATE_RAMP_MS + 2)[1:-1].astype(np.float32)
        smooth = np.convolve(gain, ramp / ramp.sum(), mode="same")[GATE_RAMP_MS:GATE_RAMP_MS + n_ms]
        smooth = np.maximum(smooth, gain[GATE_RAMP_MS:GATE_RAMP_MS + n_ms])  # fades happen in the pauses only
        envelope = np.repeat(smooth, per_ms)[: len(samples)]
        return (samples.astype(np.float32) * envelope).round().astype("<i2").tobytes()


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

    @property
    def processing(self) -> bool:
        """Noise reduction is on and this session has a stream (not refused at capacity)."""
        return self._settings is not None and not self._refused

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
