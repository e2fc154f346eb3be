"""Worker threads for model inference, one small pool per stage, shared by all sessions.

The event loop never runs a model: it submits work here and awaits the result, or
consumes a blocking generator through `stream()`. Native runtimes (onnxruntime,
CTranslate2, llama.cpp) release the GIL while they compute.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..observability.metrics import observe_stage

T = TypeVar("T")

_STAGES = ("vad", "asr", "llm", "warm", "tts")  # warm: LLM prefills while the user speaks
_pools: dict[str, ThreadPoolExecutor] = {}
_sizes: dict[str, int] = {}
_lock = threading.Lock()
_DONE = object()


MODEL_NICE = 10  # model threads yield the CPU to the media event loop when cores are scarce
# Stages whose work is on the critical path of the first reply audio get a smaller nice than the
# language model, which keeps generating the rest of the answer meanwhile: the first clause's
# synthesis (onnxruntime computes on the calling thread) should not wait behind it.
STAGE_NICE = {"tts": 5, "vad": 5}


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


def pool(stage: str) -> ThreadPoolExecutor:
    with _lock:
        if stage not in _pools:
            if stage not in _STAGES:
                raise ValueError(f"unknown stage {stage!r}")
            _pools[stage] = ThreadPoolExecutor(max_workers=_sizes.get(stage, 1), thread_name_prefix=f"or-{stage}",
                                               initializer=lower_thread_priority,
                                               initargs=(STAGE_NICE.get(stage, MODEL_NICE),))
        return _pools[stage]


def configure(stage: str, max_workers: int) -> None:
    """Size a stage's pool: 1 for an in-process model (it computes one request at a time), more for
    a remote server that batches concurrent requests. Takes effect for a pool not yet created."""
    with _lock:
        _sizes[stage] = max(1, int(max_workers))
        old = _pools.pop(stage, None)
    if old is not None:
        old.shutdown(wait=False)


def queue_depths() -> dict[str, int]:
    """Work submitted to each stage's pool and not yet started (for /metrics)."""
    with _lock:
        return {stage: p._work_queue.qsize() for stage, p in _pools.items()}


_in_flight: dict[str, int] = {}  # work submitted through run() and not finished, per stage


def busy(stage: str) -> bool:
    """Whether the stage has work submitted through `run()` that has not finished (queued or
    running; a cancelled caller does not stop a job that already started)."""
    with _lock:
        return _in_flight.get(stage, 0) > 0


def _finished(stage: str) -> None:
    with _lock:
        _in_flight[stage] -= 1


async def run(stage: str, fn: Callable[..., T], *args: Any) -> T:
    started = time.monotonic()
    executor = pool(stage)
    with _lock:
        _in_flight[stage] = _in_flight.get(stage, 0) + 1
    # a copy of the caller's context: the worker's log lines keep the call id
    try:
        job = executor.submit(contextvars.copy_context().run, fn, *args)
    except BaseException:
        _finished(stage)
        raise
    job.add_done_callback(lambda _job: _finished(stage))
    result = await asyncio.wrap_future(job)
    observe_stage(stage, time.monotonic() - started)
    return result


async def stream(stage: str, make: Callable[[], Iterator[T]], cancel: threading.Event) -> AsyncIterator[T]:
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
    future = loop.run_in_executor(pool(stage), contextvars.copy_context().run, pump)
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
