"""Starts and abandons the session's early work (the policy; speculation.py holds its state).

The session tells the `Speculator` what its turn detector saw: speech started (abandon
everything), silence began (transcribe what was said and, if a response would follow, start
answering into buffers; with semantic_vad the answer waits until the turn is judged complete:
`turn_complete`), speech resumed (abandon), each VAD frame while the user speaks (warm the
model's prompt cache with the words so far), and, at the commit, asks for the speculation that
matches the committed turn. What it needs of the session is passed in: the runtime, the model
stack, the input (buffer, turn detector, VAD clock) and a few callables.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ..engines.base import ChatRequest, Prefilling, Transcript
from ..engines.foreground import in_foreground
from ..protocol.responses import RealtimeResponse
from ..runtime import ModelRuntime
from .clauses import announcing_first_clause
from .speculation import BufferedStream, SpeculativeSpeech, TurnSpeculation, WarmState, first_clause, sounds_complete
from .speech_input import SpeechInput

log = logging.getLogger(__name__)

Transcribe = Callable[..., Awaitable[Transcript]]  # (pcm, *, partial) -> the transcript


class Speculator:
    def __init__(self, runtime: ModelRuntime, models: Any, stats: dict[str, int], speech: SpeechInput, *,
                 transcribe: Transcribe, provisional_request: Callable[[str], ChatRequest],
                 provisional_response: Callable[[], RealtimeResponse], wants_answer: Callable[[], bool],
                 spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task], speech_speed: Callable[[], float]) -> None:
        self.runtime = runtime
        self.models = models
        self.stats = stats
        self.speech = speech
        self.current: TurnSpeculation | None = None
        self._warm = WarmState()
        self._transcribe = transcribe
        self._provisional_request = provisional_request
        self._provisional_response = provisional_response
        self._wants_answer = wants_answer
        self._spawn = spawn
        self._speech_speed = speech_speed

    # ---- what the turn detector saw ------------------------------------------------------------
    def speech_started(self) -> None:
        self.drop()
        self._warm.cancel()
        self._warm = WarmState()

    def silence_began(self, start_ms: int, speech_end_ms: int, *, answer: bool = True) -> None:
        """`answer` False: transcribe only; the answer starts at `turn_complete` (semantic_vad)."""
        heard = self._warm.transcript_of(start_ms, speech_end_ms)
        self._warm.cancel()  # the cores are for the final transcription now
        self._speculate(start_ms, speech_end_ms, heard)
        if self.current is not None:
            self.current.hold_answer = not answer

    def turn_complete(self, start_ms: int, speech_end_ms: int) -> None:
        """The turn detector judged this speech a finished turn: answer it ahead of the commit."""
        spec = self.current
        if spec is None or not spec.matches(start_ms, speech_end_ms) or not spec.hold_answer:
            return
        spec.hold_answer = False
        if spec.task is None or spec.task.done():  # the transcription finished while the answer was held
            spec.task = self._spawn(self._answer(spec))

    def transcript(self, start_ms: int, speech_end_ms: int) -> asyncio.Future | None:
        """The speculative transcription of exactly this speech, if one is under way or done."""
        spec = self.current
        return spec.asr if spec is not None and spec.matches(start_ms, speech_end_ms) else None

    def speech_resumed(self) -> None:
        self.drop()

    def take(self, start_ms: int, speech_end_ms: int) -> TurnSpeculation | None:
        """At the commit of the turn `start_ms`..`speech_end_ms`: the speculation made for exactly that
        speech (then it is the caller's), else None (one made for other speech is abandoned)."""
        spec, self.current = self.current, None
        if spec is not None and not spec.matches(start_ms, speech_end_ms):
            self._abandon(spec)
            spec = None
        self.stats["asr_speculative_hits" if spec else "asr_speculative_misses"] += 1
        return spec

    def drop(self) -> None:
        spec, self.current = self.current, None
        if spec is not None:
            self._abandon(spec)

    def close(self) -> None:
        self.drop()
        self._warm.cancel()

    # ---- turn speculation --------------------------------------------------------------------
    def _speculate(self, start_ms: int, speech_end_ms: int, heard: asyncio.Future | None = None) -> None:
        """Transcribe during the silence hangover and, if a response will follow, start answering.
        `heard`: a partial transcription that already covers all of the speech (used as is)."""
        if self.models is None or self.models.stt is None:
            return
        self.drop()
        now = int(self.speech.clock_ms)
        if heard is not None:
            self.stats["asr_partials_reused"] += 1
            asr = heard
        else:
            pcm = self.speech.buffer.peek(start_ms, now)  # includes the silence heard so far
            asr = self.runtime.spawn(self._transcribe(pcm), name="asr-speculative")
        spec = self.current = TurnSpeculation(start_ms, speech_end_ms, asr)
        spec.task = self._spawn(self._answer(spec))
        log.debug("speculating on %d-%d ms (silence so far %d ms)", start_ms, speech_end_ms, now - speech_end_ms)
        self.stats["asr_speculative_started"] += 1

    async def _answer(self, spec: TurnSpeculation) -> None:
        try:
            result = await asyncio.shield(spec.asr)
        except Exception:  # the commit will transcribe again and report the failure
            return
        text = result.text.strip()
        if self.current is not spec or spec.hold_answer or not text or not self._wants_answer():
            return
        log.debug("speculative transcript %r; answering ahead of the commit", text)
        request = spec.request = self._provisional_request(text)
        llm, cancel = self.models.llm, spec.cancel_event
        provisional = self._provisional_response()
        speaks = provisional.output_modalities == ["audio"]
        gate = self.runtime.gate
        spec.answer = BufferedStream(self.runtime.stream(
            "llm", lambda: announcing_first_clause(llm.stream_chat(request, cancel), gate, speaks), cancel),
            self.runtime.spawn)
        self.stats["answers_speculated"] += 1
        if speaks:
            voice = provisional.audio.output.voice
            spec.speech_task = self._spawn(self._speak(spec, voice if isinstance(voice, str) else voice.id,
                                                       self._speech_speed()))

    async def _speak(self, spec: TurnSpeculation, voice: str, speed: float) -> None:
        """Synthesize the speculative answer's first clause, unless a response took the answer first."""
        answer = spec.answer
        clause = await first_clause(answer.replay()) if answer is not None else None
        if clause is None or spec.adopted or self.current is not spec or spec.cancel_event.is_set():
            return
        tts, cancel = self.models.tts, threading.Event()
        log.debug("speculative first clause %r: synthesizing ahead of the commit", clause)
        gate = self.runtime.gate
        audio = BufferedStream(self.runtime.stream(
            "tts", lambda: in_foreground(tts.synthesize(clause, voice=voice, speed=speed, cancel=cancel), gate),
            cancel, urgent=True), self.runtime.spawn)  # a first clause: before other sessions' later clauses
        spec.speech = SpeculativeSpeech(clause, voice, speed, audio, cancel)
        self.stats["speech_speculated"] += 1

    def _abandon(self, spec: TurnSpeculation) -> None:
        spec.cancel()
        self.stats["speculations_abandoned"] += 1

    # ---- prefix warming ------------------------------------------------------------------------
    def frame(self) -> None:
        """A VAD frame was judged: while the user speaks, transcribe what was said so far and prefill
        the model with it."""
        llm = self.models.llm if self.models is not None else None
        prefill = llm.prefill if isinstance(llm, Prefilling) else None
        turn, clock = self.speech.turn, self.speech.clock_ms
        now = int(clock)
        if prefill is None or not self._wants_answer() or not turn.voiced_at(clock) \
                or not self._warm.due(turn.speech_start_ms, now):
            return
        if self.runtime.busy("asr"):  # another turn's transcription (e.g. another session's): it goes first
            self.stats["prefix_warmings_deferred"] += 1
            return
        warm = self._warm
        warm.start_ms, warm.upto_ms = turn.speech_start_ms, now
        # a failure is logged by the runtime's spawn; the warm-up and a speculation that reuses it see it
        warm.asr = self.runtime.spawn(self._transcribe(self.speech.buffer.peek(warm.start_ms, now), partial=True),
                                      name="asr-partial")
        warm.task = self._spawn(self._warm_prefix(warm, prefill))

    async def _warm_prefix(self, warm: WarmState, prefill: Callable[..., int]) -> None:
        try:
            # shielded: cancelling the warm-up leaves the transcription to a speculation that may reuse it
            result = await asyncio.shield(warm.asr)
        except Exception:
            return
        text = result.text.strip()
        if not text or warm is not self._warm or warm.cancel_event.is_set() or not self._wants_answer():
            return
        request = self._provisional_request(text)
        complete = sounds_complete(text)
        tokens = await self.runtime.run("warm", lambda: prefill(request, warm.cancel_event, complete=complete))
        self.stats["prefix_warmings"] += 1
        self.stats["prefix_tokens_warmed"] += int(tokens or 0)
