"""The microphone side of a session: input audio into the buffer, voice activity into turns.

`SpeechInput` appends canonical PCM (s16le mono 24 kHz) to the session's `InputAudioBuffer`,
resamples it to the VAD's 16 kHz, runs the VAD in its worker stage (one batch at a time, never on
the loop), feeds each frame's probability to the `TurnDetector` and reports what happened through
the callbacks it was given: turn events (speech started, silence began, speech resumed, turn
complete, speech stopped), each VAD frame (where a prefix warm-up may start) and the end of each
batch outside speech (where an idle timeout may fire). It knows nothing of responses or speculation.

With `audio.input.noise_reduction` on a stack with a noise suppressor, the audio first goes through
the session's `InputDenoiser` (noise_reduction.py): the buffer, the VAD and everything after them get
the processed audio, and what a commit `take`s has its pauses quieted (`PauseGate`).

For semantic_vad on a stack with an end-of-turn model (`EndOfTurnModel`), it keeps the latest seconds
of the 16 kHz audio the VAD judged and, when the detector asks (`ScoreTurn`), scores the turn so far in
the runtime's "turn" stage and hands the probability back; the session hands back the transcript of
each pause (`heard`).

`Loopback` is the input of a stack that answers nothing (engine `echo`): it plays the caller's
audio back after a delay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

import av
import numpy as np

from ..audio.format import SAMPLE_RATE
from ..audio.frame_resampler import FrameResampler
from ..engines.base import EndOfTurnModel, NoiseSuppressor, VoiceActivityDetector
from ..runtime import ModelRuntime
from .audio_buffer import InputAudioBuffer
from .noise_reduction import InputDenoiser, PauseGate, gate_db_for
from .transport import OutputAudio
from .turn_detection import HYSTERESIS, ScoreTurn, TurnDetector, VadParams
from .turn_text import continuing_alternative, last_word_confidence

VAD_RATE = 16000


class AudioRing:
    """The latest `seconds` of a 16 kHz stream, written frame by frame, read back by audio time."""

    def __init__(self, seconds: float, rate: int = VAD_RATE) -> None:
        self.rate = rate
        self._data = np.zeros(int(seconds * rate), dtype=np.float32)
        self._written = 0  # samples written since the start

    def write(self, frame: np.ndarray) -> None:
        n, size = len(frame), len(self._data)
        if n >= size:
            tail = frame[-size:]
            self._written += n
            at = self._written % size  # the ring reads data[at:] then data[:at]
            self._data[at:] = tail[:size - at]
            self._data[:at] = tail[size - at:]
            return
        at = self._written % size
        first = min(n, size - at)
        self._data[at:at + first] = frame[:first]
        self._data[:n - first] = frame[first:]
        self._written += n

    def since(self, start_ms: float, end_ms: float) -> np.ndarray:
        """The samples from `start_ms` to `end_ms` (the end of the last frame written), as far as kept."""
        size = len(self._data)
        want = int((end_ms - start_ms) * self.rate / 1000)
        n = max(0, min(want, size, self._written))
        at = self._written % size
        if n <= at:
            return self._data[at - n:at].copy()
        return np.concatenate([self._data[size - (n - at):], self._data[:at]])


class AudioInput(Protocol):
    def feed(self, pcm: bytes) -> None: ...

    def configure(self, turn_detection: Any) -> None: ...

    def close(self) -> None: ...


class SpeechInput:
    """Buffer + VAD + turn detection (see the module doc)."""

    def __init__(self, buffer: InputAudioBuffer, vad: VoiceActivityDetector | None, runtime: ModelRuntime,
                 stats: dict[str, int], *, on_turn: Callable[[object], None], on_frame: Callable[[], None],
                 on_pause: Callable[[], None], on_overflow: Callable[[], None],
                 end_of_turn: EndOfTurnModel | None = None, denoiser: NoiseSuppressor | None = None) -> None:
        self.buffer = buffer
        self._denoise = InputDenoiser(denoiser, runtime, stats, self._accept) if denoiser is not None else None
        self._gate = PauseGate()
        self.turn = TurnDetector(VadParams())
        self._end_of_turn = end_of_turn
        self._recent = AudioRing(end_of_turn.window_s) if end_of_turn is not None else None
        self.runtime = runtime
        self.clock_ms = 0.0  # audio time of the last frame the VAD judged
        self.stats = stats  # counts `vad_frames`
        self.detecting = False  # turn detection configured
        self._vad = vad
        self._stream = vad.new_stream() if vad is not None else None
        self._resampler = FrameResampler("flt", "mono", VAD_RATE)  # libswresample, no threads
        self._pending = np.zeros(0, dtype=np.float32)
        self._busy = False
        self._closed = False
        self._overflowed = False
        self._on_turn, self._on_frame, self._on_pause, self._on_overflow = on_turn, on_frame, on_pause, on_overflow

    def configure(self, turn_detection: Any) -> None:
        """The session's `audio.input.turn_detection` (None: the client commits turns itself)."""
        self.detecting = turn_detection is not None
        if turn_detection is not None:
            self.turn.params = VadParams.from_config(turn_detection, end_of_turn_model=self._end_of_turn is not None)
        else:
            self.turn.reset()

    def configure_noise_reduction(self, noise_reduction: Any) -> None:
        """The session's `audio.input.noise_reduction` (None: off). Without a suppressor: no effect."""
        if self._denoise is not None:
            self._denoise.configure(noise_reduction)
            self._gate.db = gate_db_for(noise_reduction)

    def take(self, start_ms: int | None = None, end_ms: int | None = None) -> bytes:
        """Commit `[start_ms, end_ms)` of the buffer (default: all of it): the audio the session keeps, its
        pauses quieted while noise reduction runs (noise_reduction.py `PauseGate`)."""
        begin = self.buffer.start_ms if start_ms is None else max(start_ms, self.buffer.start_ms)
        pcm = self.buffer.take(start_ms, end_ms)
        if self._denoise is None or not self._denoise.processing:
            return pcm
        return self._gate.apply(pcm, begin)

    def when_heard(self, callback: Callable[[], None]) -> bool:
        """Run `callback` once all audio fed so far is in the buffer (noise reduction may hold some);
        returns False, having run it, if it already is."""
        if self._denoise is None:
            callback()
            return False
        return self._denoise.when_drained(callback)

    def discard_pending(self) -> None:
        """Drop audio fed but not yet in the buffer (input_audio_buffer.clear)."""
        if self._denoise is not None:
            self._denoise.discard()

    def expect_text(self, speech_end_ms: int) -> None:
        """A transcript of the speech before this pause is on its way (semantic_vad)."""
        self.turn.expect_text(speech_end_ms)

    def heard(self, speech_end_ms: int, text: str | None, logprobs: list[dict[str, Any]] | None = None) -> None:
        """The transcript of the speech before the pause that ended speech at `speech_end_ms` (semantic_vad;
        None: the transcription failed) with its tokens' logprobs, if known (how sure the transcriber was)."""
        if not self._closed:
            self._deliver(self.turn.heard(speech_end_ms, text, self.clock_ms, last_word_confidence(logprobs),
                                          continuing_alternative(logprobs)))

    def feed(self, pcm: bytes) -> None:
        if self._denoise is not None:
            self._denoise.push(pcm)  # comes back to _accept, processed if noise reduction is on
        else:
            self._accept(pcm)

    def _accept(self, pcm: bytes) -> None:
        if self._closed:
            return
        self.buffer.append(pcm)
        if self.buffer.overflowed != self._overflowed:
            self._overflowed = self.buffer.overflowed
            if self._overflowed:
                self._on_overflow()
        if not self.detecting or self._stream is None:
            return
        frame = av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
        frame.planes[0].update(pcm)
        frame.sample_rate = SAMPLE_RATE
        for out in self._resampler.resample(frame):
            self._pending = np.concatenate([self._pending, out.to_ndarray().reshape(-1)])
        self._pump()

    def close(self) -> None:
        self._closed = True
        self._pending = np.zeros(0, dtype=np.float32)
        if self._denoise is not None:
            self._denoise.close()

    # ---- the VAD, one batch at a time --------------------------------------------------------
    def _pump(self) -> None:
        if self._vad is None or self._busy or self._closed:
            return
        n = self._vad.frame_samples
        count = len(self._pending) // n
        if count == 0:
            return
        frames = self._pending[: count * n].reshape(count, n)
        self._pending = self._pending[count * n:]
        self._busy = True
        stream = self._stream
        job = self.runtime.spawn(self.runtime.run("vad", lambda: [stream.probability(f) for f in frames]),
                                 name="vad")
        job.add_done_callback(lambda t: self._judged(t, frames))

    def _judged(self, job: asyncio.Future, frames: np.ndarray) -> None:
        self._busy = False
        if self._closed or job.cancelled():
            return
        if job.exception() is not None:  # logged by the runtime's spawn
            return
        frame_ms = frames.shape[1] * 1000 / VAD_RATE
        for frame, prob in zip(frames, job.result(), strict=True):
            self.clock_ms += frame_ms
            self.stats["vad_frames"] = self.stats.get("vad_frames", 0) + 1
            if not self.detecting:
                break
            if self._recent is not None:
                self._recent.write(frame)
            self._gate.frame(self.clock_ms, frame_ms, prob >= self.turn.params.threshold - HYSTERESIS)
            for event in self.turn.feed(prob, self.clock_ms, frame_ms):
                self._turn_event(event)
            # at each frame, not once per batch: a batch may hold a whole utterance when the VAD thread
            # fell behind, and the warm-up is due while the user speaks, not after
            self._on_frame()
        self._after_speech()
        self._pump()

    def _after_speech(self) -> None:
        if not self.turn.speaking:
            keep_from = int(self.clock_ms) - self.turn.params.prefix_padding_ms - 200
            self.buffer.trim_before(keep_from)
            self._gate.forget_before(self.buffer.start_ms)
            self._on_pause()

    def _turn_event(self, event: object) -> None:
        if isinstance(event, ScoreTurn):
            self._score(event)
        else:
            self._on_turn(event)

    def _deliver(self, events: list[object]) -> None:
        """Turn events that came of a model's or a transcript's answer, between two VAD batches."""
        for event in events:
            self._turn_event(event)
        if events:
            self._after_speech()

    # ---- the end-of-turn model (semantic_vad) -------------------------------------------------
    def _score(self, ask: ScoreTurn) -> None:
        model, recent = self._end_of_turn, self._recent
        if model is None or recent is None:
            return
        audio = recent.since(ask.audio_start_ms, self.clock_ms)
        job = self.runtime.spawn(self.runtime.run("turn", model.completion, audio), name="turn")
        job.add_done_callback(lambda t: self._scored(t, ask))

    def _scored(self, job: asyncio.Future, ask: ScoreTurn) -> None:
        if self._closed or job.cancelled() or job.exception() is not None:  # a failure is logged by spawn
            return
        self.stats["turn_scores"] = self.stats.get("turn_scores", 0) + 1
        self._deliver(self.turn.scored(ask.speech_end_ms, job.result(), self.clock_ms))


class Loopback:
    """Plays the caller's audio back after `delay_s` (a stack with `loopback_delay_s`: engine echo)."""

    def __init__(self, audio_out: OutputAudio | None, delay_s: float, response_id: str, item_id: str,
                 runtime: ModelRuntime) -> None:
        self._out = audio_out
        self._runtime = runtime
        self._delay_s = delay_s
        self._ids = (response_id, item_id)
        self._closed = False

    def configure(self, turn_detection: Any) -> None:  # nothing to detect
        pass

    def feed(self, pcm: bytes) -> None:
        out = self._out
        if out is None:
            return
        rid, iid = self._ids
        self._runtime.call_later(
            self._delay_s, lambda: None if self._closed else out.write(pcm, response_id=rid, item_id=iid))

    def close(self) -> None:
        self._closed = True
