"""Input audio → utterances, with the session VAD (session/speech_input.py's SpeechInput).

An utterance ends after `SILENCE_MS` of silence (shorter than a conversation's turn end: a
translation may start at any pause), or is cut after `MAX_SEGMENT_MS` of unbroken speech so that a
monologue is translated as it goes. Each utterance is reported once, with its place on the session's
audio timeline (ms since the first audio). `flush()` reports what is left (speech still going on, or
audio the VAD has not judged yet) and stops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..protocol.session import ServerVad
from ..runtime import ModelRuntime
from ..session.audio_buffer import InputAudioBuffer
from ..session.speech_input import SpeechInput
from ..session.turn_detection import SpeechStopped

SILENCE_MS = 400
PREFIX_PADDING_MS = 300
MAX_SEGMENT_MS = 12_000  # Whisper's fast path takes up to 25 s; shorter keeps the translation moving
MAX_BUFFER_MS = 60_000
UNJUDGED_MIN_MS = 100  # at flush: audio the VAD has not judged yet, worth transcribing when at least this long


@dataclass
class Segment:
    pcm: bytes  # canonical PCM16 24 kHz mono
    start_ms: int
    end_ms: int


class Segmenter:
    def __init__(self, vad: Any, runtime: ModelRuntime, on_segment: Callable[[Segment], None],
                 stats: dict[str, int] | None = None) -> None:
        self.buffer = InputAudioBuffer(MAX_BUFFER_MS)
        self._on_segment = on_segment
        self._consumed_ms = 0  # the timeline up to here went into earlier segments
        self._flushed = False
        self.input = SpeechInput(self.buffer, vad, runtime, stats if stats is not None else {},
                                 on_turn=self._on_turn, on_frame=self._on_frame, on_pause=lambda: None,
                                 on_overflow=lambda: None)
        self.input.configure(ServerVad(silence_duration_ms=SILENCE_MS, prefix_padding_ms=PREFIX_PADDING_MS))

    def feed(self, pcm: bytes) -> None:
        if not self._flushed:
            self.input.feed(pcm)

    def flush(self) -> None:
        """Report the speech not yet reported (cut where the audio ends), then take no more."""
        if self._flushed:
            return
        self._flushed = True
        turn, end = self.input.turn, self.buffer.now_ms
        if turn.speaking:
            self._emit(turn.speech_start_ms, end)
        elif end - self.input.clock_ms >= UNJUDGED_MIN_MS:
            self._emit(int(self.input.clock_ms) - PREFIX_PADDING_MS, end)
        self.close()

    def close(self) -> None:
        self._flushed = True
        self.input.close()

    def _on_turn(self, event: object) -> None:
        if isinstance(event, SpeechStopped):
            self._emit(event.audio_start_ms, event.audio_end_ms)

    def _on_frame(self) -> None:
        turn, now = self.input.turn, int(self.input.clock_ms)
        if turn.speaking and now - max(turn.speech_start_ms, self._consumed_ms) >= MAX_SEGMENT_MS:
            self._emit(turn.speech_start_ms, now)

    def _emit(self, start_ms: int, end_ms: int) -> None:
        start_ms = max(start_ms, self._consumed_ms, self.buffer.start_ms)
        if end_ms <= start_ms:
            return
        pcm = self.buffer.take(start_ms, end_ms)
        self._consumed_ms = end_ms
        if pcm:
            self._on_segment(Segment(pcm, start_ms, end_ms))
