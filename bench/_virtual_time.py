"""`TimedRuntime`: the inline runtime (runtime_inline.py) with model work that takes the time it really
takes, on the manual clock: each job runs inline, its wall time is measured, and its result is delivered
that much later on the runtime's clock, after the stage's previous job (one worker per stage, as the
server's runtime has for in-process models). A bench feeds 20 ms of audio per 20 ms of that clock, so a
whole clip runs at the speed of its model work, and every latency it reports is in audio time with the
real inference times in it. Not modelled: stages competing for the same cores (each job is timed alone).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from openrealtime.runtime import pass_outcome
from openrealtime.runtime_inline import InlineRuntime


class TimedRuntime(InlineRuntime):
    def __init__(self) -> None:
        super().__init__()
        self._free_at: dict[str, float] = {}
        self.compute_s: dict[str, float] = {}  # wall time of each stage's work
        self._waiting: set[asyncio.Future] = set()  # results not delivered yet

    def _submit(self, stage: str, fn: Callable[[], Any], *args: Any, **kwargs: Any) -> asyncio.Future:
        took: list[float] = []

        def timed() -> Any:
            started = time.perf_counter()
            try:
                return fn()
            finally:
                took.append(time.perf_counter() - started)

        inner = super()._submit(stage, timed, *args, **kwargs)
        outer: asyncio.Future = asyncio.get_running_loop().create_future()
        submitted = self.now()

        def finished(job: asyncio.Future) -> None:
            if job.cancelled():
                outer.cancel()
                return
            spent = took[0] if took else 0.0
            self.compute_s[stage] = self.compute_s.get(stage, 0.0) + spent
            done_at = max(submitted, self._free_at.get(stage, 0.0)) + spent
            self._free_at[stage] = done_at

            if done_at > self.now():
                self.call_later(done_at - self.now(), lambda: pass_outcome(job, outer))
            else:
                pass_outcome(job, outer)

        inner.add_done_callback(finished)
        outer.add_done_callback(lambda o: inner.cancel() if o.cancelled() else None)
        self._waiting.add(outer)
        outer.add_done_callback(self._waiting.discard)
        return outer

    def close(self) -> None:
        """Also cancel the results still due on the clock (their timers go with the runtime)."""
        waiting, self._waiting = list(self._waiting), set()
        super().close()
        for outer in waiting:
            outer.cancel()

    def busy(self, stage: str) -> bool:
        return super().busy(stage) or self._free_at.get(stage, 0.0) > self.now()
