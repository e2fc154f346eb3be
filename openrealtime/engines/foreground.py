"""Foreground work: the in-process models step aside for what the user is waiting to hear.

On a small CPU the stages of a voice turn share a few cores. While a reply's first clause is
being synthesized, the language model is usually still writing the rest of the answer; both
compete for the same cores, and the first sound comes later than either alone would take.
The language model is far faster than speech, so pausing it for that moment costs nothing
audible, while the synthesis gets every core.

`FOREGROUND.hold()` marks such work (any thread); long-running background computations call
`FOREGROUND.pause_point()` between steps (the LLM between tokens and prefill batches), which
waits while something is held — never longer than `MAX_PAUSE_S` per call, so a stuck holder
cannot starve them. Process-wide: the in-process models are shared by all sessions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

MAX_PAUSE_S = 0.5


class ForegroundGate:
    def __init__(self, max_pause_s: float = MAX_PAUSE_S) -> None:
        self.max_pause_s = max_pause_s
        self._held = 0
        self._cond = threading.Condition()
        self.pauses = 0  # pause points that waited, and how long in all (diagnostics, tests)
        self.paused_s = 0.0

    @property
    def held(self) -> bool:
        return self._held > 0

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._cond:
            self._held += 1
        try:
            yield
        finally:
            with self._cond:
                self._held -= 1
                if not self._held:
                    self._cond.notify_all()

    def pause_point(self) -> float:
        """Wait while foreground work is held (at most `max_pause_s`); the seconds waited."""
        if not self._held:  # the common case: no lock taken
            return 0.0
        started = time.monotonic()
        with self._cond:
            if not self._held:
                return 0.0
            self._cond.wait_for(lambda: not self._held, timeout=self.max_pause_s)
        waited = time.monotonic() - started
        self.pauses += 1
        self.paused_s += waited
        return waited


FOREGROUND = ForegroundGate()


def in_foreground(items: Iterator[T]) -> Iterator[T]:
    """Produce the first item of `items` (e.g. a clause's audio) while holding the foreground."""
    with FOREGROUND.hold():
        first = next(items, None)
    if first is None:
        return
    yield first
    yield from items
