"""Server VAD turn detection as a sans-IO state machine.

Fed one VAD probability per frame with the frame's end time on the session audio clock;
returns what happened. Parameters follow OpenAI's `server_vad`: `threshold`,
`prefix_padding_ms`, `silence_duration_ms`. `semantic_vad` is mapped onto server VAD with
a silence duration chosen by `eagerness` (we have no semantic end-of-turn model yet).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol.session import SemanticVad, ServerVad

MIN_SPEECH_MS = 64  # speech shorter than this (clicks, pops) does not start a turn
HYSTERESIS = 0.15  # speech continues while prob >= threshold - HYSTERESIS
# Silence after which speculative work (transcription, answer) may start: two Silero frames. A
# pause that turns out to be mid-sentence costs one discarded transcription (0.1-0.25 s of CPU);
# at the end of a turn every millisecond here is a millisecond of reply latency (bench: the fast
# profile's p50 went 0.83 → 0.58-0.80 s from 100 → 64 ms).
SPECULATE_AFTER_MS = 64

SEMANTIC_SILENCE_MS = {"low": 1200, "medium": 700, "auto": 700, "high": 350}


@dataclass
class VadParams:
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500

    @classmethod
    def from_config(cls, td: ServerVad | SemanticVad) -> "VadParams":
        if isinstance(td, SemanticVad):
            return cls(threshold=0.5, prefix_padding_ms=300, silence_duration_ms=SEMANTIC_SILENCE_MS[td.eagerness])
        return cls(threshold=td.threshold, prefix_padding_ms=td.prefix_padding_ms,
                   silence_duration_ms=td.silence_duration_ms)


@dataclass
class SpeechStarted:
    audio_start_ms: int


@dataclass
class SpeechStopped:
    audio_start_ms: int
    audio_end_ms: int


@dataclass
class SilenceBegan:
    """Speech may be ending: a good moment to transcribe speculatively."""

    audio_start_ms: int
    speech_end_ms: int


@dataclass
class SpeechResumed:
    """The user spoke again after `SilenceBegan`: speculative work for that pause is stale."""

    audio_start_ms: int


class TurnDetector:
    def __init__(self, params: VadParams) -> None:
        self.params = params
        self.speaking = False
        self._run_start: float | None = None  # first frame of a candidate speech run
        self._speech_start = 0
        self._last_voice_end = 0.0
        self._speculated = False

    @property
    def speech_start_ms(self) -> int:
        """Start (with prefix padding) of the speech in progress."""
        return self._speech_start

    def voiced_at(self, now_ms: float) -> bool:
        """Speaking, and the latest frame (ending at `now_ms`) had voice."""
        return self.speaking and self._last_voice_end >= now_ms

    def reset(self) -> None:
        self.speaking = False
        self._run_start = None
        self._speculated = False

    def feed(self, prob: float, frame_end_ms: float, frame_ms: float) -> list[object]:
        p = self.params
        events: list[object] = []
        frame_start = frame_end_ms - frame_ms
        if not self.speaking:
            if prob >= p.threshold:
                if self._run_start is None:
                    self._run_start = frame_start
                if frame_end_ms - self._run_start >= MIN_SPEECH_MS:
                    self.speaking = True
                    self._speculated = False
                    self._speech_start = max(0, int(self._run_start - p.prefix_padding_ms))
                    self._last_voice_end = frame_end_ms
                    events.append(SpeechStarted(self._speech_start))
            else:
                self._run_start = None
            return events
        if prob >= p.threshold - HYSTERESIS:
            self._last_voice_end = frame_end_ms
            if self._speculated:
                self._speculated = False
                events.append(SpeechResumed(self._speech_start))
            return events
        silence = frame_end_ms - self._last_voice_end
        if not self._speculated and silence >= min(SPECULATE_AFTER_MS, p.silence_duration_ms / 2):
            self._speculated = True
            events.append(SilenceBegan(self._speech_start, int(self._last_voice_end)))
        if silence >= p.silence_duration_ms:
            self.speaking = False
            self._run_start = None
            events.append(SpeechStopped(self._speech_start, int(self._last_voice_end + p.silence_duration_ms)))
        return events
