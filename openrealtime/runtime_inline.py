"""A deterministic runtime for tests: `InlineRuntime` implements `ModelRuntime` (runtime.py) without
threads or wall clocks, so a test of the session engine says what happens, not how long to wait.

- Model work (`run`, and each item of a `stream`) is a job, run on the event loop's thread in the
  order it was submitted (urgent jobs first, as in `Runtime`), one job per loop callback: what a
  worker pool would run concurrently is interleaved, always the same way. A `run_batch` job takes
  the items of its key submitted until it runs. A stage can be paused (`pause`, optionally after a number of
  jobs) and resumed: a model still computing, held exactly there.
- The clock is manual: `now()` is what `advance()` made it, and `call_later` callbacks fire only
  as `advance()` passes their time.
- `await settle()` returns once nothing can run any more: every job done (but those of paused
  stages), every task blocked on something outside (a timer of the clock, a paused stage, I/O) or
  done. Tests call it instead of sleeping or polling.

`settle()` reads asyncio's queue of ready callbacks (`BaseEventLoop._ready`, a private attribute
of CPython's loops since 3.4): it fails clearly on a loop without one (`ready_callbacks`).
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import threading
from collections import deque
from concurrent.futures import Future
from collections.abc import AsyncIterator, Callable, Coroutine, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .engines.foreground import ForegroundGate
from .runtime import MAX_BATCH, STAGES, Timer, check_stage, deliver, pass_outcome, spawn_logged

T = TypeVar("T")
_DONE = object()
MAX_SETTLE_STEPS = 1_000_000  # loop iterations without rest: a task that never waits is a bug


@dataclass
class _Job:
    stage: str
    fn: Callable[[], Any]
    future: asyncio.Future
    urgent: bool = False
    context: contextvars.Context = field(default_factory=contextvars.copy_context)


@dataclass(order=True)
class _Timer:
    when: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


def ready_callbacks(loop: asyncio.AbstractEventLoop) -> deque:
    """The loop's queue of callbacks ready to run (asyncio's `BaseEventLoop._ready`)."""
    ready = getattr(loop, "_ready", None)
    if not isinstance(ready, deque):
        raise RuntimeError(f"InlineRuntime.settle needs an asyncio event loop with a `_ready` queue "
                           f"(CPython's BaseEventLoop), not {type(loop).__name__}")
    return ready


class InlineRuntime:
    """Model work on the loop's thread in submission order, a manual clock (see the module doc)."""

    def __init__(self, *, start: float = 0.0, gate: ForegroundGate | None = None) -> None:
        self.gate = gate or ForegroundGate()
        self.jobs_run: list[str] = []  # the stage of every job run, in order
        self._time = start
        self._jobs: deque[_Job] = deque()
        self._allowance: dict[str, int] = {}  # paused stages: how many more jobs each may run first
        self._timers: list[_Timer] = []  # a heap, by time then scheduling order
        self._seq = itertools.count()
        self._sizes: dict[str, int] = {}
        self._scheduled: asyncio.Handle | None = None  # the loop callback that runs the next job
        self._open: dict[tuple[str, Hashable], list[tuple[Any, asyncio.Future]]] = {}  # batches not run yet

    # ---- clock -------------------------------------------------------------------------------
    def now(self) -> float:
        return self._time

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = _Timer(self._time + max(0.0, delay), next(self._seq), callback)
        heapq.heappush(self._timers, timer)
        return timer

    async def advance(self, seconds: float) -> None:
        """Move the clock on by `seconds`: each timer due meanwhile fires at its time, in order, and
        what it started settles before the next one (a timer it sets within the span fires too)."""
        until = self._time + seconds
        await self.settle()
        while self._timers and self._timers[0].when <= until:
            timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._time = max(self._time, timer.when)
            timer.callback()
            await self.settle()
        self._time = until

    # ---- jobs --------------------------------------------------------------------------------
    def pause(self, stage: str, *, after: int = 0) -> None:
        """Hold the stage's jobs (after `after` more of them ran) until `resume`: a model computing."""
        self._allowance[check_stage(stage)] = after

    def resume(self, stage: str) -> None:
        self._allowance.pop(stage, None)
        self._schedule()

    def busy(self, stage: str) -> bool:
        return any(job.stage == stage for job in self._jobs if not job.future.done())

    def queue_depths(self) -> dict[str, int]:
        depths = dict.fromkeys(STAGES, 0)
        for job in self._jobs:
            if not job.future.done():
                depths[job.stage] += 1
        return depths

    def configure(self, stage: str, max_workers: int) -> None:
        """Recorded only: one job runs at a time here, whatever a stage's size."""
        self._sizes[check_stage(stage)] = max(1, int(max_workers))

    def close(self) -> None:
        """Drop the jobs not run (their callers see them cancelled) and the timers."""
        jobs, self._jobs = list(self._jobs), deque()
        for job in jobs:
            job.future.cancel()
        for items in self._open.values():
            for _item, future in items:
                future.cancel()
        self._open.clear()
        self._timers.clear()
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None

    def _submit(self, stage: str, fn: Callable[[], T], urgent: bool = False) -> asyncio.Future[T]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.append(_Job(check_stage(stage), fn, future, urgent))
        self._schedule()
        return future

    def _runnable(self) -> _Job | None:
        first = None
        for job in self._jobs:
            if job.future.done():  # its caller was cancelled before it started: it never runs
                continue
            if self._allowance.get(job.stage, 1) > 0:
                if job.urgent:
                    return job
                first = first or job
        return first

    def _schedule(self) -> None:
        if self._scheduled is None and self._runnable() is not None:
            self._scheduled = asyncio.get_running_loop().call_soon(self._run_next)

    def _run_next(self) -> None:
        self._scheduled = None
        job = self._runnable()
        if job is not None:
            self._jobs.remove(job)
            while self._jobs and self._jobs[0].future.done():
                self._jobs.popleft()
            if job.stage in self._allowance:
                self._allowance[job.stage] -= 1
            self.jobs_run.append(job.stage)
            try:
                result = job.context.run(job.fn)
            except Exception as exc:  # delivered to the caller, as from a worker thread
                if not job.future.done():
                    job.future.set_exception(exc)
            else:
                if not job.future.done():
                    job.future.set_result(result)
        self._schedule()

    async def run(self, stage: str, fn: Callable[..., T], *args: Any, urgent: bool = False) -> T:
        return await self._submit(stage, lambda: fn(*args), urgent)

    async def run_batch(self, stage: str, fn_many: Callable[[list[Any]], Sequence[T]], item: Any, *,
                        key: Hashable, urgent: bool = False) -> T:
        """One job per batch: the items of `key` submitted before it runs (at most `MAX_BATCH`); each
        caller gets its result when the job's future completes (a subclass may deliver it later)."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        batch_key = (check_stage(stage), (key, urgent))
        items = self._open.get(batch_key)
        if items is not None and len(items) < MAX_BATCH:
            items.append((item, future))
            return await future
        items = self._open[batch_key] = [(item, future)]

        def run() -> list[tuple[asyncio.Future, Future]]:
            if self._open.get(batch_key) is items:
                del self._open[batch_key]
            live = [(one, waiting) for one, waiting in items if not waiting.done()]
            outcomes: list[tuple[Any, Future]] = [(one, Future()) for one, _waiting in live]
            deliver(fn_many, outcomes)  # the results, handed to the callers when this job's future completes
            return [(waiting, outcome) for (_one, waiting), (_same, outcome) in zip(live, outcomes)]

        def settled(job: asyncio.Future) -> None:
            if job.cancelled():
                for _one, waiting in items:
                    waiting.cancel()
                return
            for waiting, outcome in job.result():
                pass_outcome(outcome, waiting)

        self._submit(stage, run, urgent).add_done_callback(settled)
        return await future

    async def stream(self, stage: str, make: Callable[[], Iterator[T]], cancel: threading.Event, *,
                     urgent: bool = False) -> AsyncIterator[T]:
        """Each item of `make()` is one job (the first one also calls `make`)."""
        source: Iterator[T] | None = None

        def step() -> Any:
            nonlocal source
            if source is None:
                source = iter(make())
            return next(source, _DONE)

        drained = False
        try:
            while not cancel.is_set():
                item = await self._submit(stage, step, urgent)
                if item is _DONE:
                    break
                yield item
            drained = True
        finally:
            if not drained:  # the consumer stopped early: tell the producer to stop too
                cancel.set()
            close = getattr(source, "close", None)
            if close is not None:
                close()

    # ---- tasks -------------------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
        return spawn_logged(coro, name)

    async def settle(self) -> None:
        """Run until nothing can: no job runnable, no callback ready on the loop."""
        ready = ready_callbacks(asyncio.get_running_loop())
        for _ in range(MAX_SETTLE_STEPS):
            await asyncio.sleep(0)
            if not ready and self._runnable() is None:
                return
        raise RuntimeError(f"the loop did not settle in {MAX_SETTLE_STEPS} steps: a task that never waits?")
