"""Barge-in hygiene: a cough, a click or a listener's "mm-hm" while the agent speaks does not cancel it.

With `interrupt_response`, OpenAI's turn detection cancels the response at `speech_started`. Here, while
a response is under way or its audio still plays, a new turn is first held (`BargeInGate`): the playout
pauses at once (the agent falls silent at the VAD's first voiced frames), and the turn's events wait.

- The voice goes on for `CONFIRM_MS`: real speech. The held events go to the session in order
  (`speech_started` first: the response is cancelled and its item truncated at what was heard).
- After `EARLY_LOOK_MS` of voice its words so far are transcribed: "wait", "stop", "sorry" and the like,
  or four words and more (turn_text.py `takes_the_turn`), confirm it at once.
- The sound stops sooner (`BLIP_END_MS` of silence): shorter than `MIN_WORD_MS` of voice, it was noise;
  otherwise its words are transcribed and judged the same way: a listener's "mm-hm", "yeah", "okay" (which
  Whisper may hear as one to three other words), a cough or nothing at all is noise.
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
from .turn_text import takes_the_turn

log = logging.getLogger(__name__)

CONFIRM_MS = 700  # this much voice is an interruption, whatever it says (backchannels are shorter)
EARLY_LOOK_MS = 300  # this much voice is transcribed to find an interruption early
BLIP_END_MS = 200  # this much silence ends a short sound
MIN_WORD_MS = 120  # less voice than this is a click or a knock: no words to transcribe


@dataclass
class _Held:
    """A turn that began while the agent spoke, not yet confirmed."""

    voice_start_ms: float
    events: list[object] = field(default_factory=list)
    checking: asyncio.Task | None = None  # transcribing the sound
    looked: bool = False  # its first words were transcribed (EARLY_LOOK_MS)
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
        if held.checking is not None:
            return
        if not ended:
            if not held.looked and voiced >= EARLY_LOOK_MS and self._transcribe is not None:
                held.looked = True
                held.checking = self._spawn(self._check(held, self._heard_so_far(held), early=True))
            return
        if voiced < MIN_WORD_MS or self._transcribe is None:
            self._dismiss("no words" if voiced < MIN_WORD_MS else "short, no speech-to-text")
            return
        held.checked_upto_ms = turn.last_voice_end_ms
        held.checking = self._spawn(self._check(held, self._heard_so_far(held)))

    def _heard_so_far(self, held: _Held) -> bytes:
        return self._speech.buffer.peek(int(held.voice_start_ms) - 100, int(self._speech.clock_ms))

    def drop(self) -> None:
        """The client took over the input (commit, clear): forget the held turn, let the agent go on."""
        if self._held is not None:
            self._dismiss("client committed or cleared")

    def close(self) -> None:
        held, self._held = self._held, None
        if held is not None and held.checking is not None:
            held.checking.cancel()

    async def _check(self, held: _Held, pcm: bytes, *, early: bool = False) -> None:
        try:
            text = (await self._transcribe(pcm)).text if self._transcribe is not None else ""
        except Exception:  # noqa: BLE001 - cannot tell: the user did make a sound the VAD took for speech
            log.warning("could not transcribe a possible barge-in; treating it as speech", exc_info=True)
            text = None
        if self._held is not held:  # confirmed by its length meanwhile, or dropped
            return
        held.checking = None
        if text is None or takes_the_turn(text):
            self._confirm()
        elif not early:
            if self._speech.turn.last_voice_end_ms > held.checked_upto_ms:
                return  # more sound came meanwhile: judged again when it ends
            self._dismiss(f"heard {text.strip()!r}")

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
