"""Work started before a turn is committed, so the answer is ready sooner.

Server VAD commits a turn only after `silence_duration_ms` of silence, but the words are known
well before that. Two kinds of early work, both thrown away when the user keeps talking:

- **Turn speculation** (`TurnSpeculation`): once the user has been quiet for a moment
  (`turn_detection.SilenceBegan`), the speech so far is transcribed and, when that finishes
  and a response would follow the commit, the language model starts answering into a buffer
  (`BufferedStream`); as soon as the answer's first clause is written (and the response is
  still not under way) it is synthesized into a buffer too (`SpeculativeSpeech`). At the
  commit, the response adopts the buffers if its request is exactly the speculated one (and
  its first clause, voice and speed those of the speech); nothing reaches the client before
  the commit, so the event order is the one OpenAI documents. Speech resuming cancels it all
  (`SpeechResumed`).
- **Prefix warming** (`TurnWarmer` policy): while the user is still speaking, the words heard
  so far are transcribed every `WARM_EVERY_MS` and the model's KV cache is filled with the
  conversation plus those words (`LanguageModel.prefill`, optional). At the end of the turn
  only the last few tokens are left to evaluate — none when the words so far already read as a
  finished sentence (`sounds_complete`) and the user stops there: then the prompt is prefilled
  up to the assistant's header.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from ..engines.base import ChatRequest, TextDelta, ToolCallDelta
from .clauses import ClauseSplitter

# Speech before the first partial transcription + prefill, and new speech between two of them.
# The sooner the last one before the end of the turn, the fewer words are left to evaluate
# after it (bench, default profile, alternating turns in one session: p50 1.78 s at 900/700 ms,
# 1.42 s at 600/400 ms; 400/250 ms gained nothing more). At most one runs at a time per session,
# and none while any session's turn is being transcribed (engine._maybe_warm_prefix).
WARM_FIRST_MS = 600
WARM_EVERY_MS = 400
_FINISHED = re.compile(r"(?<![.…])[.?!][\"')\]]*$")


def sounds_complete(text: str) -> bool:
    """Whether a partial transcript reads as a finished sentence (Whisper punctuates one; an
    utterance cut mid-way usually ends without punctuation or with "...")."""
    return bool(_FINISHED.search(text.strip()))


class BufferedStream:
    """Consumes an async iterator in the background and replays it, from the start, to each reader."""

    def __init__(self, source: AsyncIterator[Any], spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task]) -> None:
        self.items: list[Any] = []
        self.error: BaseException | None = None
        self.done = False
        self._changed = asyncio.Event()
        self.task = spawn(self._pump(source))  # the runtime's spawn: an inline runtime settles it too

    async def _pump(self, source: AsyncIterator[Any]) -> None:
        try:
            async for item in source:
                self.items.append(item)
                self._changed.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # delivered to the reader
            self.error = exc
        finally:
            self.done = True
            self._changed.set()

    async def replay(self) -> AsyncIterator[Any]:
        index = 0
        while True:
            while index < len(self.items):
                yield self.items[index]
                index += 1
            if self.done:
                if self.error is not None:
                    raise self.error
                return
            self._changed.clear()
            await self._changed.wait()

    def cancel(self) -> None:
        if not self.task.done():
            self.task.cancel()


async def first_clause(deltas: AsyncIterator[Any]) -> str | None:
    """The first clause a response would speak from these model deltas (None: a tool call, or no text)."""
    splitter = ClauseSplitter()
    async for delta in deltas:
        if isinstance(delta, ToolCallDelta):
            return None
        if isinstance(delta, TextDelta):
            clauses = splitter.push(delta.text)
            if clauses:
                return clauses[0]
    rest = splitter.flush()
    return rest[0] if rest else None


@dataclass
class SpeculativeSpeech:
    """The speculative answer's first clause, synthesized ahead of the commit."""

    text: str
    voice: str
    speed: float
    audio: BufferedStream
    cancel_event: threading.Event

    def matches(self, text: str, voice: str, speed: float) -> bool:
        return (self.text, self.voice, self.speed) == (text, voice, speed) and \
            not (self.audio.done and self.audio.error is not None)

    def cancel(self) -> None:
        self.cancel_event.set()
        self.audio.cancel()


@dataclass
class TurnSpeculation:
    """Transcription (and maybe an answer) for the speech from `start_ms` to `speech_end_ms`."""

    start_ms: int
    speech_end_ms: int
    asr: asyncio.Future
    cancel_event: threading.Event = field(default_factory=threading.Event)
    request: ChatRequest | None = None
    answer: BufferedStream | None = None
    task: asyncio.Task | None = None  # transcription → answer
    speech: SpeculativeSpeech | None = None
    speech_task: asyncio.Task | None = None  # answer → first clause → speech
    adopted: bool = False  # a response took the answer: it speaks the clauses not yet synthesized
    hold_answer: bool = False  # transcribe only until the turn is judged complete (semantic_vad)

    def matches(self, start_ms: int, speech_end_ms: int) -> bool:
        return self.start_ms == start_ms and self.speech_end_ms == speech_end_ms

    def take_answer(self, request: ChatRequest) -> BufferedStream | None:
        """The buffered answer if it was generated for exactly `request` (then it is no longer ours)."""
        if self.answer is not None and self.request == request and \
                not (self.answer.done and self.answer.error is not None):
            answer, self.answer = self.answer, None
            self.adopted = True
            return answer
        self.drop_answer()
        return None

    def take_speech(self) -> SpeculativeSpeech | None:
        speech, self.speech = self.speech, None
        return speech

    def drop_answer(self) -> None:
        """Stop and forget the speculative answer (the transcription stays: the commit may use it)."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.answer is not None:
            self.cancel_event.set()
            self.answer.cancel()
            self.answer = None
        self._drop_speech()

    def _drop_speech(self) -> None:
        if self.speech_task is not None and not self.speech_task.done():
            self.speech_task.cancel()
        if self.speech is not None:
            self.speech.cancel()
            self.speech = None

    def cancel(self) -> None:
        """Abandon everything (the user kept talking, or the session ended)."""
        self.cancel_event.set()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self._drop_speech()
        if self.answer is not None:
            self.answer.cancel()
            self.answer = None
        if not self.asr.done():
            self.asr.cancel()


@dataclass
class WarmState:
    """Prefix warming bookkeeping for the turn in progress."""

    upto_ms: int = 0  # audio end of the latest partial transcription
    task: asyncio.Task | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    start_ms: int = 0  # audio start of the latest partial transcription
    asr: asyncio.Future | None = None  # and its result (kept when the warm-up is cancelled)

    def transcript_of(self, start_ms: int, speech_end_ms: int) -> asyncio.Future | None:
        """The latest partial transcription if it heard all of this speech: it was taken at or
        after the last voiced frame, so a speculative transcription would hear the same words."""
        if self.asr is None or self.start_ms != start_ms or self.upto_ms < speech_end_ms:
            return None
        if self.asr.done() and (self.asr.cancelled() or self.asr.exception() is not None):
            return None
        return self.asr

    def due(self, speech_start_ms: int, now_ms: int) -> bool:
        if self.task is not None and not self.task.done():
            return False
        heard = now_ms - speech_start_ms
        return heard >= WARM_FIRST_MS and now_ms - max(self.upto_ms, speech_start_ms) >= WARM_EVERY_MS

    def cancel(self) -> None:
        self.cancel_event.set()
        if self.task is not None and not self.task.done():
            self.task.cancel()
