"""How the server runs model work: one `Runtime`, owned by the server state and passed in to the
session engines, responses and local models (nothing module-level).

It holds
- a small worker pool per stage (`vad`, `asr`, `llm`, `warm`: LLM prefills while the user speaks,
  `tts`, `turn`: the end-of-turn model at each pause, `denoise`: input noise suppression), shared by
  all sessions: the event loop never runs a model; it submits work (`run`) and awaits
  the result, or consumes a blocking generator (`stream`). Native runtimes (onnxruntime,
  CTranslate2, llama.cpp) release the GIL while they compute. Queue depths and "busy" for /metrics
  and scheduling;
- a stage's queue order: `urgent` work (what a user is waiting for now: a turn's final
  transcription, a reply's first clause) starts before the other work queued in the stage, otherwise
  work starts in submission order (one caller's jobs, all urgent or all not, never reorder);
- batching (`run_batch`): items submitted with the same key while the stage is busy are handed to one
  `fn_many(items)` call when a worker takes them (e.g. several sessions' final transcriptions in one
  Whisper encode/decode), instead of one job each;
- the foreground gate (engines/foreground.py), through which the in-process models step aside for
  what the user is waiting to hear;
- the clock (`now`, `call_later`), and task spawning (`spawn`) whose failures are logged, never lost.

`ModelRuntime` is that interface; `Runtime` implements it with worker threads and the event loop's
clock, `InlineRuntime` (runtime_inline.py) deterministically for tests: model work on the loop's
thread in submission order, a manual clock, `settle()`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import heapq
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Hashable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from .engines.foreground import ForegroundGate
from .observability.metrics import observe_stage

T = TypeVar("T")
log = logging.getLogger(__name__)

STAGES = ("vad", "asr", "llm", "warm", "tts", "turn", "denoise")
MAX_BATCH = 8  # items one run_batch call hands to fn_many at most
_DONE = object()


MODEL_NICE = 10  # model threads yield the CPU to the media event loop when cores are scarce
# Stages whose work is on the critical path of the first reply audio get a smaller nice than the
# language model, which keeps generating the rest of the answer meanwhile: the first clause's
# synthesis (onnxruntime computes on the calling thread) should not wait behind it.
STAGE_NICE = {"tts": 5, "vad": 5, "turn": 5, "denoise": 5}


class Timer(Protocol):
    def cancel(self) -> None: ...


class ModelRuntime(Protocol):
    """How model work runs and time passes, as the session engines, responses and local models see it."""

    gate: ForegroundGate

    def now(self) -> float:
        """Seconds on the runtime's clock (monotonic)."""
        ...

    async def run(self, stage: str, fn: Callable[..., T], *args: Any, urgent: bool = False) -> T:
        """`fn(*args)` in the stage's worker (never on the loop's own stack); its result. `urgent`: it
        starts before the stage's queued work that is not."""
        ...

    async def run_batch(self, stage: str, fn_many: Callable[[list[Any]], Sequence[T]], item: Any, *,
                        key: Hashable, urgent: bool = False) -> T:
        """`fn_many([..., item, ...])[i]`: `item` with the others of the same `key` (and urgency) that
        are queued in the stage when a worker takes them (at most `MAX_BATCH`), in one call."""
        ...

    def stream(self, stage: str, make: Callable[[], Iterator[T]], cancel: threading.Event, *,
               urgent: bool = False) -> AsyncIterator[T]:
        """The items of the blocking generator `make()`, produced in the stage's worker; stopping early
        sets `cancel`."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
        """A task whose failure is logged when it ends (never an unretrieved exception)."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """`callback()` on the loop after `delay` seconds of the runtime's clock."""
        ...

    def busy(self, stage: str) -> bool:
        """Whether the stage has work submitted through `run()` that has not finished."""
        ...

    def queue_depths(self) -> dict[str, int]:
        """Work submitted to each stage and not yet started (for /metrics)."""
        ...

    def configure(self, stage: str, max_workers: int) -> None:
        """How many jobs of a stage may run at once."""
        ...

    def close(self) -> None: ...


def check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    return stage


def spawn_logged(coro: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
    """A task on the running loop whose failure is logged when it ends."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    task.add_done_callback(_log_failure)
    return task


def lower_thread_priority(nice: int = MODEL_NICE) -> None:
    """Lower this thread's scheduling priority (Linux: nice is per thread, and threads a native
    runtime spawns from here — OpenMP pools of llama.cpp, CTranslate2, onnxruntime — inherit it)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):  # not Linux, or not permitted: run at normal priority
        pass


async def run_in_model_thread(fn: Callable[[], T]) -> T:
    """Run `fn` (e.g. loading and warming the models) in a fresh low-priority thread."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def target() -> None:
        lower_thread_priority()
        try:
            result = fn()
        except BaseException as exc:  # delivered to the awaiting coroutine
            # bound now: Python unbinds `exc` when the except block ends, before the callback runs
            loop.call_soon_threadsafe(_settle, future, exc, None)
        else:
            loop.call_soon_threadsafe(_settle, future, None, result)

    threading.Thread(target=target, name="or-model-load", daemon=True).start()
    return await future


def _settle(future: asyncio.Future, error: BaseException | None, result: Any) -> None:
    if future.done():  # the awaiting coroutine was cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def pass_outcome(source: asyncio.Future | Future, target: asyncio.Future) -> None:
    """`target` gets the result or exception of `source` (done, not cancelled), unless it is done already."""
    error = source.exception()
    _settle(target, error, None if error is not None else source.result())


def call_in_model_thread(fn: Callable[[], T]) -> T:
    """Blocking variant of `run_in_model_thread` for code without an event loop (tests, tools)."""
    box: dict[str, Any] = {}

    def target() -> None:
        lower_thread_priority()
        try:
            box["result"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="or-model-load", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


@dataclass(order=True)
class _Entry:
    """Work queued in a stage: one job, or one batch that takes items until a worker starts it."""

    later: bool  # not urgent: sorts after the urgent entries
    seq: int
    run: Callable[[list[tuple[Any, Future]]], None] = field(compare=False)
    items: list[tuple[Any, Future]] = field(compare=False, default_factory=list)
    key: Hashable = field(compare=False, default=None)


def deliver(fn_many: Callable[[list[Any]], Sequence[Any]], live: list[tuple[Any, Any]]) -> None:
    """Run `fn_many` over the items of `live` (item, future of its caller); each future gets its own
    result, or every one the exception (futures of concurrent.futures or asyncio)."""
    if not live:
        return
    try:
        results = list(fn_many([item for item, _future in live]))
        if len(results) != len(live):
            raise RuntimeError(f"a batch of {len(live)} items gave {len(results)} results")
    except BaseException as exc:  # delivered to every caller of the batch
        for _item, future in live:
            future.set_exception(exc)
        return
    for (_item, future), result in zip(live, results):
        future.set_result(result)


def still_waiting(items: list[tuple[Any, Future]]) -> list[tuple[Any, Future]]:
    """The items whose callers still wait, their futures marked running."""
    return [(item, future) for item, future in items if future.set_running_or_notify_cancel()]


class Runtime:
    """Worker pools, the foreground gate, the clock and task spawning of one server (see the module doc)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, gate: ForegroundGate | None = None) -> None:
        self.now = clock
        self.gate = gate or ForegroundGate()
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._sizes: dict[str, int] = {}
        self._in_flight: dict[str, int] = {}  # work submitted through run() and not finished, per stage
        self._queued: dict[str, list[_Entry]] = {}  # a heap per stage: urgent first, then by submission
        self._open: dict[tuple[str, Hashable], _Entry] = {}  # batches not started, by stage and key
        self._seq = itertools.count()
        self._lock = threading.Lock()

    # ---- pools -------------------------------------------------------------------------------
    def pool(self, stage: str) -> ThreadPoolExecutor:
        with self._lock:
            if stage not in self._pools:
                check_stage(stage)
                self._pools[stage] = ThreadPoolExecutor(
                    max_workers=self._sizes.get(stage, 1), thread_name_prefix=f"or-{stage}",
                    initializer=lower_thread_priority, initargs=(STAGE_NICE.get(stage, MODEL_NICE),))
            return self._pools[stage]

    def configure(self, stage: str, max_workers: int) -> None:
        """Size a stage's pool: 1 for an in-process model (it computes one request at a time), more for
        a remote server that batches concurrent requests. Takes effect for a pool not yet created."""
        with self._lock:
            self._sizes[stage] = max(1, int(max_workers))
            old = self._pools.pop(stage, None)
        if old is not None:
            old.shutdown(wait=False)

    def queue_depths(self) -> dict[str, int]:
        """Work submitted to each stage's pool and not yet started (for /metrics)."""
        with self._lock:
            return {stage: sum(max(1, len(e.items)) for e in self._queued.get(stage, ())) for stage in self._pools}

    def busy(self, stage: str) -> bool:
        """Whether the stage has work submitted through `run()` that has not finished (queued or
        running; a cancelled caller does not stop a job that already started)."""
        with self._lock:
            return self._in_flight.get(stage, 0) > 0

    def _finished(self, stage: str) -> None:
        with self._lock:
            self._in_flight[stage] -= 1

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
            queued, self._queued, self._open = self._queued, {}, {}
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
        for entries in queued.values():  # never started: their callers see them cancelled
            for entry in entries:
                for _item, future in entry.items:
                    future.cancel()

    # ---- work --------------------------------------------------------------------------------
    def _enqueue(self, stage: str, entry: _Entry) -> None:
        """Queue `entry` in the stage; a worker takes the best queued entry when it is free."""
        executor = self.pool(stage)
        with self._lock:
            heapq.heappush(self._queued.setdefault(stage, []), entry)
        executor.submit(self._take, stage)  # one worker turn per entry

    def _take(self, stage: str) -> None:
        with self._lock:
            queued = self._queued.get(stage)
            if not queued:
                return
            entry = heapq.heappop(queued)
            if entry.key is not None and self._open.get((stage, entry.key)) is entry:
                del self._open[(stage, entry.key)]  # started: later items make a new batch
        entry.run(entry.items)

    def _track(self, stage: str, future: Future) -> None:
        with self._lock:
            self._in_flight[stage] = self._in_flight.get(stage, 0) + 1
        future.add_done_callback(lambda _future: self._finished(stage))

    def _submit(self, stage: str, fn: Callable[[], T], urgent: bool, *, track: bool = False) -> Future:
        future: Future = Future()
        if track:  # counted before it can finish (busy)
            self._track(stage, future)
        context = contextvars.copy_context()  # the worker's log lines keep the call id
        entry = _Entry(not urgent, next(self._seq),
                       lambda items: deliver(lambda _items: [context.run(fn)], still_waiting(items)), [(None, future)])
        self._enqueue(stage, entry)
        return future

    async def run(self, stage: str, fn: Callable[..., T], *args: Any, urgent: bool = False) -> T:
        started = time.monotonic()
        future = self._submit(check_stage(stage), lambda: fn(*args), urgent, track=True)
        result = await asyncio.wrap_future(future)
        observe_stage(stage, time.monotonic() - started)
        return result

    async def run_batch(self, stage: str, fn_many: Callable[[list[Any]], Sequence[T]], item: Any, *,
                        key: Hashable, urgent: bool = False) -> T:
        started = time.monotonic()
        future: Future = Future()
        batch_key = (check_stage(stage), (key, urgent))
        self._track(stage, future)
        context = contextvars.copy_context()
        with self._lock:
            entry = self._open.get(batch_key)
            if entry is not None and len(entry.items) < MAX_BATCH:
                entry.items.append((item, future))
                entry = None
            else:
                entry = _Entry(not urgent, next(self._seq),
                               lambda items: context.run(deliver, fn_many, still_waiting(items)),
                               [(item, future)], key=batch_key[1])
                self._open[batch_key] = entry
        if entry is not None:
            self._enqueue(stage, entry)
        result = await asyncio.wrap_future(future)
        observe_stage(stage, time.monotonic() - started)
        return result

    async def stream(self, stage: str, make: Callable[[], Iterator[T]], cancel: threading.Event, *,
                     urgent: bool = False) -> AsyncIterator[T]:
        """Iterate a blocking generator in the stage's thread, yielding its items on the loop."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def pump() -> None:
            try:
                for item in make():
                    loop.call_soon_threadsafe(queue.put_nowait, item)
                    if cancel.is_set():
                        break
            except BaseException as exc:  # delivered to the consumer
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        started = time.monotonic()
        future = self._submit(check_stage(stage), pump, urgent)
        drained = False
        first = True
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    drained = True
                    break
                if isinstance(item, BaseException):
                    raise item
                if first:  # llm: time to first token; tts: time to a clause's first audio (queueing included)
                    first = False
                    observe_stage(stage + "_first", time.monotonic() - started)
                yield item
        finally:
            if not drained:  # the consumer stopped early: tell the producer to stop too
                cancel.set()
            if not future.done():
                # let the worker notice the cancel; don't block the loop waiting for it
                future.add_done_callback(lambda f: f.exception())

    def spawn(self, coro: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
        """A task whose failure is logged when it ends (never an unretrieved exception)."""
        return spawn_logged(coro, name)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(delay, callback)


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s failed", task.get_name(), exc_info=task.exception())
