"""Foreground work: the in-process models step aside for what the user is waiting to hear.

On a small CPU the stages of a voice turn share a few cores. While a reply's first clause is
being synthesized, the language model is usually still writing the rest of the answer; both
compete for the same cores, and the first sound comes later than either alone would take.
The language model is far faster than speech, so pausing it for that moment costs nothing
audible, while the synthesis gets every core.

`gate.hold()` marks such work (any thread); long-running background computations call
`gate.pause_point()` between steps (the LLM between tokens and prefill batches), which
waits while something is held — never longer than `MAX_PAUSE_S` per call, so a stuck holder
cannot starve them. One gate per server (its `Runtime` holds it): the in-process models are shared
by all sessions.

A hold says what it outranks. A reply's first clause being synthesized outranks everything the
model computes. A turn's final transcription (`hold(first_words=False)`) outranks the model's other work
— prompts, warm-ups, answers already being spoken — but not another reply's first words: those are what
another user is waiting for just as much, so a pause point that is about to compute them
(`pause_point(first_words=True)`) goes on while only transcriptions are held.

`gate.expect()` announces such work before it can start: the model thread that has just
written a reply's first clause calls it, because the synthesis only starts after the clause
has crossed to the event loop and back to a TTS thread, by which time the model would be well
into its next token (≈ 0.1 s of a 1.5B model on 2 cores, all of it competing with Piper).
Pause points then wait for the hold to come and go, or `EXPECT_S` if it never comes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

MAX_PAUSE_S = 0.5
EXPECT_S = 0.15  # how long an announced hold is waited for (it normally comes within milliseconds)


class ForegroundGate:
    def __init__(self, max_pause_s: float = MAX_PAUSE_S) -> None:
        self.max_pause_s = max_pause_s
        self._held = 0
        self._held_over_first_words = 0  # the holds that also pause a reply's first words
        self._expected_until = 0.0  # monotonic deadline of an announced hold (0: none)
        self._cond = threading.Condition()
        self.pauses = 0  # pause points that waited, and how long in all (diagnostics, tests)
        self.paused_s = 0.0

    @property
    def held(self) -> bool:
        return self._held > 0

    def expect(self, within_s: float = EXPECT_S) -> None:
        """Foreground work is about to be held: pause points wait for it (at most `within_s`)."""
        with self._cond:
            self._expected_until = max(self._expected_until, time.monotonic() + within_s)

    def _waiting_on(self, first_words: bool) -> float | None:
        """None when pause points may go on; else how long to wait before looking again."""
        if self._held_over_first_words if first_words else self._held:
            return self.max_pause_s
        left = self._expected_until - time.monotonic()
        return left if left > 0 else None

    @contextmanager
    def hold(self, *, first_words: bool = True) -> Iterator[None]:
        """Foreground work while inside; `first_words=False`: it does not pause a reply's first words."""
        with self._cond:
            self._held += 1
            self._held_over_first_words += first_words
            if first_words:
                self._expected_until = 0.0  # the announced hold (a first clause's synthesis) has come
        try:
            yield
        finally:
            with self._cond:
                self._held -= 1
                self._held_over_first_words -= first_words
                self._cond.notify_all()

    def pause_point(self, *, first_words: bool = False) -> float:
        """Wait while foreground work is held or announced (at most `max_pause_s`); the seconds waited.
        `first_words`: the caller's next step computes a reply's first words (only a first clause's
        synthesis makes it wait)."""
        if not self._held and not self._expected_until:  # the common case: no lock taken
            return 0.0
        started = time.monotonic()
        with self._cond:
            while (wait := self._waiting_on(first_words)) is not None:
                left = self.max_pause_s - (time.monotonic() - started)
                if left <= 0:
                    break
                self._cond.wait(min(wait, left))
            if not self._held_over_first_words and self._expected_until <= time.monotonic():
                self._expected_until = 0.0
        waited = time.monotonic() - started
        if waited < 1e-4:
            return 0.0
        self.pauses += 1
        self.paused_s += waited
        return waited


def in_foreground(items: Iterator[T], gate: ForegroundGate) -> Iterator[T]:
    """Produce the first item of `items` (e.g. a clause's audio) while holding the foreground."""
    with gate.hold():
        first = next(items, None)
    if first is None:
        return
    yield first
    yield from items
