"""Turn detection as a sans-IO state machine.

Fed one VAD probability per frame with the frame's end time on the session audio clock; returns
what happened. No model runs here: what needs one is asked for in an event and handed back.

- **server_vad**: OpenAI's `threshold`, `prefix_padding_ms`, `silence_duration_ms`: the turn ends after
  that much silence.
- **semantic_vad** with an end-of-turn model (`SemanticParams`, chosen by `eagerness`): at each pause
  the detector asks for the turn so far to be scored (`ScoreTurn`, at each silence in `score_at_ms`),
  and the caller hands back the model's P(complete) (`scored`) and the transcript of the speech before
  the pause (`heard`, from the speculative transcription). The turn is judged **incomplete** when the
  words stop mid-sentence (turn_text.py), **complete** when they read as finished, the transcriber was
  sure of the last of them (`sure_from`: Whisper completes a cut sentence with a word it did not hear,
  "…pizza with" → "…with it.", and is unsure of it; or heard a function word in its place, `cut_from`:
  "about them." where it also heard "about the") and the model does not rule it out (`text_floor`), or,
  without usable words, when the model is confident (`complete_at`). Finished words the transcriber was
  unsure of, with a model that does not rule them out, end the turn after the longer `unsure_silence_ms`.
  While a transcript is on its way (`expect_text`) the model alone ends nothing: measured on paused
  speech, Smart Turn takes a pause after "with," or "my," for an end 1 time in 7, the words do not. A complete turn
  ends after `min_silence_ms` of silence (`TurnComplete` first: the answer may start), any turn after
  `max_wait_ms` (8 / 4 / 2 s for low / medium / high eagerness, as OpenAI; auto = medium).
- **semantic_vad without a model** (a stack that has none): server VAD with a silence per eagerness.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol.session import SemanticVad, ServerVad
from .turn_text import ends_mid_sentence

MIN_SPEECH_MS = 64  # speech shorter than this (clicks, pops) does not start a turn
HYSTERESIS = 0.15  # speech continues while prob >= threshold - HYSTERESIS
# Silence after which speculative work (transcription, answer) may start: two Silero frames. A
# pause that turns out to be mid-sentence costs one discarded transcription (0.1-0.25 s of CPU);
# at the end of a turn every millisecond here is a millisecond of reply latency (bench: the fast
# profile's p50 went 0.83 → 0.58-0.80 s from 100 → 64 ms).
SPECULATE_AFTER_MS = 64

SEMANTIC_SILENCE_MS = {"low": 1200, "medium": 700, "auto": 700, "high": 350}  # without a model


@dataclass(frozen=True)
class SemanticParams:
    """How an end-of-turn model's verdicts end turns (semantic_vad, one set per eagerness)."""

    complete_at: float  # P(complete) from which the model alone ends the turn
    text_floor: float  # words that read as finished end the turn if the model's P is at least this
    sure_from: float  # ... and if the transcriber was at least this sure of the last word (when known)
    cut_from: float  # ... and gave less than this to a function word in its place
    unsure_silence_ms: int  # finished words it was less sure of, with the model's P above text_floor
    min_silence_ms: int  # silence before a turn judged complete is committed
    max_wait_ms: int  # silence after which the turn ends whatever was judged
    score_at_ms: tuple[int, ...]  # silences at which the model scores the turn so far


EAGERNESS: dict[str, SemanticParams] = {
    "low": SemanticParams(complete_at=0.95, text_floor=0.3, sure_from=0.7, cut_from=0.1,
                          unsure_silence_ms=3000, min_silence_ms=400, max_wait_ms=8000, score_at_ms=(200, 400)),
    "medium": SemanticParams(complete_at=0.9, text_floor=0.1, sure_from=0.6, cut_from=0.15,
                             unsure_silence_ms=1500, min_silence_ms=150, max_wait_ms=4000, score_at_ms=(128, 320)),
    "high": SemanticParams(complete_at=0.6, text_floor=0.02, sure_from=0.45, cut_from=0.3,
                           unsure_silence_ms=800, min_silence_ms=100, max_wait_ms=2000, score_at_ms=(96, 250)),
}
EAGERNESS["auto"] = EAGERNESS["medium"]


@dataclass
class VadParams:
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    semantic: SemanticParams | None = None  # semantic_vad on an end-of-turn model

    @classmethod
    def from_config(cls, td: ServerVad | SemanticVad, *, end_of_turn_model: bool = False) -> "VadParams":
        if isinstance(td, SemanticVad):
            if end_of_turn_model:
                semantic = EAGERNESS[td.eagerness]
                return cls(threshold=0.5, prefix_padding_ms=300, silence_duration_ms=semantic.max_wait_ms,
                           semantic=semantic)
            return cls(threshold=0.5, prefix_padding_ms=300, silence_duration_ms=SEMANTIC_SILENCE_MS[td.eagerness])
        return cls(threshold=td.threshold, prefix_padding_ms=td.prefix_padding_ms,
                   silence_duration_ms=td.silence_duration_ms)


@dataclass
class SpeechStarted:
    audio_start_ms: int


@dataclass
class SpeechStopped:
    audio_start_ms: int
    audio_end_ms: int  # where the committed audio ends (silence included)
    speech_end_ms: int  # the end of the last voiced frame


@dataclass
class SilenceBegan:
    """Speech may be ending: a good moment to transcribe speculatively."""

    audio_start_ms: int
    speech_end_ms: int


@dataclass
class SpeechResumed:
    """The user spoke again after `SilenceBegan`: speculative work for that pause is stale."""

    audio_start_ms: int


@dataclass
class ScoreTurn:
    """semantic_vad: run the end-of-turn model on the turn so far (audio from `audio_start_ms` to now) and
    hand its P(complete) back with `TurnDetector.scored(speech_end_ms, p, now_ms)`."""

    audio_start_ms: int
    speech_end_ms: int


@dataclass
class TurnComplete:
    """semantic_vad: the turn was judged complete; it is committed after the minimum silence unless the
    user speaks again (a good moment to start answering)."""

    audio_start_ms: int
    speech_end_ms: int


@dataclass
class _Pause:
    """What is known about the current pause of a semantic turn."""

    speech_end_ms: int
    asked: int = 0  # scores asked for (index into score_at_ms)
    answered: int = 0  # scores heard back
    best: float | None = None  # highest P(complete) heard back
    text: str | None = None  # the transcript of the speech before the pause
    confidence: float | None = None  # how sure the transcriber was of its last word (None: unknown)
    continuing: float = 0.0  # what it gave to a function word in the last word's place
    awaiting_text: bool = False  # a transcript is on its way: the model alone does not end the turn
    complete: bool | None = None  # the verdict: None while undecided
    announced: bool = False  # TurnComplete sent

    def judge(self, params: SemanticParams) -> None:
        if self.text is not None and ends_mid_sentence(self.text):
            self.complete = False
        elif self.awaiting_text or self.unsure(params):
            self.complete = None
        elif self.best is not None and self.best >= params.complete_at:
            self.complete = True
        elif self.finished(params):
            self.complete = True
        else:
            self.complete = None

    def reads_finished(self) -> bool:
        return bool(self.text is not None and self.text.strip() and not ends_mid_sentence(self.text))

    def finished(self, params: SemanticParams) -> bool:
        """The words read as finished and the model does not rule it out (however sure the transcriber was)."""
        return self.reads_finished() and self.best is not None and self.best >= params.text_floor

    def unsure(self, params: SemanticParams) -> bool:
        """Finished-looking words whose last one the transcriber doubted: maybe a word it made up to finish a
        cut sentence. They neither end the turn nor leave the model to end it alone (measured: Smart Turn
        gave 0.8-0.99 to the same pauses); the turn ends after `unsure_silence_ms`."""
        doubted = self.confidence is not None and self.confidence < params.sure_from
        return self.reads_finished() and (doubted or self.continuing >= params.cut_from)


class TurnDetector:
    def __init__(self, params: VadParams) -> None:
        self.params = params
        self.speaking = False
        self._run_start: float | None = None  # first frame of a candidate speech run
        self._speech_start = 0
        self._voice_start = 0.0
        self._last_voice_end = 0.0
        self._speculated = False
        self._pause: _Pause | None = None

    @property
    def speech_start_ms(self) -> int:
        """Start (with prefix padding) of the speech in progress."""
        return self._speech_start

    @property
    def voice_start_ms(self) -> float:
        """Where the voice of the speech in progress began (its first voiced frame, no padding)."""
        return self._voice_start

    @property
    def last_voice_end_ms(self) -> float:
        """End of the latest voiced frame of the speech in progress."""
        return self._last_voice_end

    @property
    def pause(self) -> _Pause | None:
        """semantic_vad: the current pause's scores, transcript and verdict (None while voiced)."""
        return self._pause

    def voiced_at(self, now_ms: float) -> bool:
        """Speaking, and the latest frame (ending at `now_ms`) had voice."""
        return self.speaking and self._last_voice_end >= now_ms

    def reset(self) -> None:
        self.speaking = False
        self._run_start = None
        self._speculated = False
        self._pause = None

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
                    self._pause = None
                    self._voice_start = self._run_start
                    self._speech_start = max(0, int(self._run_start - p.prefix_padding_ms))
                    self._last_voice_end = frame_end_ms
                    events.append(SpeechStarted(self._speech_start))
            else:
                self._run_start = None
            return events
        if prob >= p.threshold - HYSTERESIS:
            self._last_voice_end = frame_end_ms
            self._pause = None
            if self._speculated:
                self._speculated = False
                events.append(SpeechResumed(self._speech_start))
            return events
        silence = frame_end_ms - self._last_voice_end
        if not self._speculated and silence >= min(SPECULATE_AFTER_MS, p.silence_duration_ms / 2):
            self._speculated = True
            events.append(SilenceBegan(self._speech_start, int(self._last_voice_end)))
        if p.semantic is None:
            if silence >= p.silence_duration_ms:
                events.append(self._stop(int(self._last_voice_end + p.silence_duration_ms)))
            return events
        pause = self._pause or _Pause(int(self._last_voice_end))
        self._pause = pause
        due = sum(1 for at in p.semantic.score_at_ms if silence >= at)
        if due > pause.asked and pause.answered == pause.asked:  # one at a time, one per late batch
            pause.asked = due
            events.append(ScoreTurn(self._speech_start, pause.speech_end_ms))
        events += self._settle(frame_end_ms)
        return events

    def scored(self, speech_end_ms: int, probability: float, now_ms: float) -> list[object]:
        """The end-of-turn model's P(complete) for the pause that ended speech at `speech_end_ms`."""
        pause = self._current(speech_end_ms)
        if pause is None:
            return []
        pause.answered += 1
        pause.best = probability if pause.best is None else max(pause.best, probability)
        return self._settle(now_ms)

    def expect_text(self, speech_end_ms: int) -> None:
        """A transcript of the speech before this pause is on its way (`heard` will bring it): until it comes,
        the model's verdict alone does not end the turn."""
        pause = self._current(speech_end_ms)
        if pause is not None:
            pause.awaiting_text = True

    def heard(self, speech_end_ms: int, text: str | None, now_ms: float, confidence: float | None = None,
              continuing: float = 0.0) -> list[object]:
        """The transcript of the speech before the pause that ended speech at `speech_end_ms` (None: it
        failed; the model decides alone), how sure the transcriber was of its last word, if known, and the
        probability it gave to a function word in that word's place (turn_text.py)."""
        pause = self._current(speech_end_ms)
        if pause is None:
            return []
        pause.text = text
        pause.confidence = confidence
        pause.continuing = continuing
        pause.awaiting_text = False
        return self._settle(now_ms)

    def _current(self, speech_end_ms: int) -> _Pause | None:
        pause = self._pause
        if not self.speaking or self.params.semantic is None or pause is None or pause.speech_end_ms != speech_end_ms:
            return None  # a verdict on a pause that is over (speech resumed, turn committed)
        return pause

    def _settle(self, now_ms: float) -> list[object]:
        semantic, pause = self.params.semantic, self._pause
        assert semantic is not None and pause is not None
        pause.judge(semantic)
        events: list[object] = []
        if pause.complete and not pause.announced:
            pause.announced = True
            events.append(TurnComplete(self._speech_start, pause.speech_end_ms))
        silence = now_ms - self._last_voice_end
        unsure = pause.unsure(semantic) and pause.finished(semantic) and silence >= semantic.unsure_silence_ms
        if (pause.complete and silence >= semantic.min_silence_ms) or unsure or silence >= semantic.max_wait_ms:
            events.append(self._stop(int(now_ms)))
        return events

    def _stop(self, audio_end_ms: int) -> SpeechStopped:
        self.speaking = False
        self._run_start = None
        self._pause = None
        return SpeechStopped(self._speech_start, audio_end_ms, int(self._last_voice_end))
