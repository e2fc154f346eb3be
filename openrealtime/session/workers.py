"""Worker threads for model inference, one small pool per stage, shared by all sessions.

The event loop never runs a model: it submits work here and awaits the result, or
consumes a blocking generator through `stream()`. Native runtimes (onnxruntime,
CTranslate2, llama.cpp) release the GIL while they compute.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_STAGES = ("vad", "asr", "llm", "tts")
_pools: dict[str, ThreadPoolExecutor] = {}
_lock = threading.Lock()
_DONE = object()


def pool(stage: str) -> ThreadPoolExecutor:
    with _lock:
        if stage not in _pools:
            if stage not in _STAGES:
                raise ValueError(f"unknown stage {stage!r}")
            _pools[stage] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"or-{stage}")
        return _pools[stage]


async def run(stage: str, fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(pool(stage), fn, *args)


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

    future = loop.run_in_executor(pool(stage), pump)
    drained = False
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                drained = True
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if not drained:  # the consumer stopped early: tell the producer to stop too
            cancel.set()
        if not future.done():
            # let the worker notice the cancel; don't block the loop waiting for it
            future.add_done_callback(lambda f: f.exception())
