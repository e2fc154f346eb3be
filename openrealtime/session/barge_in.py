"""Barge-in hygiene: a cough, a click or a listener's "mm-hm" while the agent speaks does not cancel it.

With `interrupt_response`, OpenAI's turn detection cancels the response at `speech_started`. Here, while
a response is under way or its audio still plays, a new turn is first held (`BargeInGate`): the playout
pauses at once (the agent falls silent at the VAD's first voiced frames), and the turn's events wait.

- The voice goes on for `CONFIRM_MS`: real speech. The held events go to the session in order
  (`speech_started` first: the response is cancelled and its item truncated at what was heard).
- The sound stops sooner (`BLIP_END_MS` of silence): shorter than `MIN_WORD_MS` of voice, it was noise;
  otherwise its words are transcribed: none, or only a listener's words ("mm-hm", "yeah", "okay";
  turn_text.py) is noise; anything else ("stop", "wait") is real speech.
- Noise: the playout resumes where it paused, the held events are dropped (the client never hears of
  them) and the turn detector starts over.

On WebSocket the client plays the audio, so nothing pauses: `speech_started` reaches it once confirmed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from ..engines.base import Transcript
from .speech_input import SpeechInput
from .turn_detection import SpeechStarted
from .turn_text import is_backchannel

log = logging.getLogger(__name__)

CONFIRM_MS = 700  # this much voice is an interruption, whatever it says (backchannels are shorter)
BLIP_END_MS = 200  # this much silence ends a short sound
MIN_WORD_MS = 120  # less voice than this is a click or a knock: no words to transcribe


@dataclass
class _Held:
    """A turn that began while the agent spoke, not yet confirmed."""

    voice_start_ms: float
    events: list[object] = field(default_factory=list)
    checking: asyncio.Task | None = None  # transcribing the sound
    checked_upto_ms: float = 0.0  # voice end of the sound being transcribed


class BargeInGate:
    """Holds turns that start while the agent speaks until they prove to be speech (see the module doc).

    `speaking()`: a response is under way or playing and the session interrupts responses; `deliver(event)`:
    the session's turn handler; `pause()` / `resume()`: hold and release the playout (None on WebSocket);
    `transcribe(pcm)`: the session's transcription (None without speech-to-text)."""

    def __init__(self, speech: SpeechInput, stats: dict[str, int], *, speaking: Callable[[], bool],
                 deliver: Callable[[object], None], pause: Callable[[], None] | None,
                 resume: Callable[[], None] | None, transcribe: Callable[[bytes], Awaitable[Transcript]] | None,
                 spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task]) -> None:
        self._speech = speech
        self._stats = stats
        self._speaking = speaking
        self._deliver = deliver
        self._pause, self._resume = pause, resume
        self._transcribe = transcribe
        self._spawn = spawn
        self._held: _Held | None = None

    @property
    def holding(self) -> bool:
        return self._held is not None

    def turn_event(self, event: object) -> None:
        """A turn event from the speech input: held while a possible barge-in is checked."""
        if self._held is not None:
            self._held.events.append(event)
            return
        if isinstance(event, SpeechStarted) and self._speaking():
            self._held = _Held(self._speech.turn.voice_start_ms, [event])
            if self._pause is not None:
                self._pause()
            self._stats["barge_ins_held"] = self._stats.get("barge_ins_held", 0) + 1
            return
        self._deliver(event)

    def frame(self) -> None:
        """After each VAD frame: confirm, dismiss or check the held turn."""
        held = self._held
        if held is None:
            return
        turn, now = self._speech.turn, self._speech.clock_ms
        voiced = turn.last_voice_end_ms - held.voice_start_ms
        if voiced >= CONFIRM_MS:
            self._confirm()
            return
        ended = not turn.speaking or now - turn.last_voice_end_ms >= BLIP_END_MS
        if not ended or held.checking is not None:
            return
        if voiced < MIN_WORD_MS or self._transcribe is None:
            self._dismiss("no words" if voiced < MIN_WORD_MS else "short, no speech-to-text")
            return
        held.checked_upto_ms = turn.last_voice_end_ms
        pcm = self._speech.buffer.peek(int(held.voice_start_ms) - 100, int(now))
        held.checking = self._spawn(self._check(held, pcm))

    def drop(self) -> None:
        """The client took over the input (commit, clear): forget the held turn, let the agent go on."""
        if self._held is not None:
            self._dismiss("client committed or cleared")

    def close(self) -> None:
        held, self._held = self._held, None
        if held is not None and held.checking is not None:
            held.checking.cancel()

    async def _check(self, held: _Held, pcm: bytes) -> None:
        try:
            text = (await self._transcribe(pcm)).text if self._transcribe is not None else ""
        except Exception:  # noqa: BLE001 - cannot tell: the user did make a sound the VAD took for speech
            log.warning("could not transcribe a possible barge-in; treating it as speech", exc_info=True)
            text = None
        if self._held is not held:  # confirmed by its length meanwhile, or dropped
            return
        held.checking = None
        if text is not None and is_backchannel(text):
            if self._speech.turn.last_voice_end_ms > held.checked_upto_ms:
                return  # more sound came meanwhile: judged again when it ends
            self._dismiss(f"heard {text.strip()!r}")
        else:
            self._confirm()

    def _confirm(self) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        if held.checking is not None:
            held.checking.cancel()
        self._stats["barge_ins_confirmed"] = self._stats.get("barge_ins_confirmed", 0) + 1
        for event in held.events:
            self._deliver(event)

    def _dismiss(self, why: str) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        if held.checking is not None:
            held.checking.cancel()
        log.debug("not a barge-in (%s): the agent goes on", why)
        self._stats["barge_ins_ignored"] = self._stats.get("barge_ins_ignored", 0) + 1
        self._speech.turn.reset()
        if self._resume is not None:
            self._resume()
