"""Stage queue order and batching in both runtimes: urgent work (a turn's final transcription, a reply's
first clause) starts before the stage's queued work, one caller's jobs keep their order, and `run_batch`
hands the items queued under one key to a single call."""

from __future__ import annotations

import asyncio
import threading

import pytest

from openrealtime.runtime import Runtime
from openrealtime.runtime_inline import InlineRuntime

pytestmark = pytest.mark.unit


async def blocked_worker(runtime: Runtime, stage: str) -> tuple[threading.Event, asyncio.Task]:
    """The stage's one worker held in a job until the event is set (what queues behind it waits)."""
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait()

    task = asyncio.ensure_future(runtime.run(stage, hold))
    await asyncio.to_thread(started.wait)
    return release, task


async def test_urgent_work_starts_first_and_equal_work_keeps_its_order():
    runtime, order = Runtime(), []
    try:
        release, holder = await blocked_worker(runtime, "tts")
        jobs = [asyncio.ensure_future(runtime.run("tts", order.append, name, urgent=urgent))
                for name, urgent in (("a2", False), ("a3", False), ("b1", True), ("a4", False), ("c1", True))]
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(holder, *jobs)
        assert order == ["b1", "c1", "a2", "a3", "a4"]
    finally:
        runtime.close()


async def test_an_urgent_stream_starts_before_queued_streams():
    runtime, order = Runtime(), []
    try:
        release, holder = await blocked_worker(runtime, "tts")

        async def clause(name: str, urgent: bool) -> None:
            async for chunk in runtime.stream("tts", lambda: iter([f"{name}.0", f"{name}.1"]), threading.Event(),
                                              urgent=urgent):
                order.append(chunk)

        streams = [asyncio.ensure_future(clause(n, u)) for n, u in (("a2", False), ("b1", True))]
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(holder, *streams)
        assert order == ["b1.0", "b1.1", "a2.0", "a2.1"]
    finally:
        runtime.close()


async def test_items_queued_under_one_key_run_as_one_batch():
    runtime, calls = Runtime(), []

    def upper_all(items: list[str]) -> list[str]:
        calls.append(list(items))
        return [item.upper() for item in items]

    try:
        release, holder = await blocked_worker(runtime, "asr")
        partial = asyncio.ensure_future(runtime.run("asr", calls.append, "partial"))
        finals = [asyncio.ensure_future(runtime.run_batch("asr", upper_all, word, key="whisper", urgent=True))
                  for word in ("one", "two", "three")]
        await asyncio.sleep(0)
        release.set()
        assert await asyncio.gather(*finals) == ["ONE", "TWO", "THREE"]
        await asyncio.gather(holder, partial)
        assert calls == [["one", "two", "three"], "partial"]  # one batch, before the partial
        assert runtime.queue_depths()["asr"] == 0 and not runtime.busy("asr")
    finally:
        runtime.close()


async def test_a_batch_failure_reaches_every_caller_and_a_cancelled_item_is_left_out():
    runtime, seen = Runtime(), []

    def fails(items: list[str]) -> list[str]:
        seen.append(list(items))
        raise ValueError("model failed")

    try:
        release, holder = await blocked_worker(runtime, "asr")
        gone = asyncio.ensure_future(runtime.run_batch("asr", fails, "gone", key="k"))
        kept = [asyncio.ensure_future(runtime.run_batch("asr", fails, w, key="k")) for w in ("a", "b")]
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.sleep(0)
        release.set()
        for job in kept:
            with pytest.raises(ValueError, match="model failed"):
                await job
        await holder
        assert seen == [["a", "b"]]
    finally:
        runtime.close()


async def test_inline_runtime_orders_and_batches_the_same_way():
    runtime, order, calls = InlineRuntime(), [], []

    def upper_all(items: list[str]) -> list[str]:
        calls.append(list(items))
        return [item.upper() for item in items]

    runtime.pause("tts")
    runtime.pause("asr")
    jobs = [asyncio.ensure_future(runtime.run("tts", order.append, name, urgent=urgent))
            for name, urgent in (("a2", False), ("a3", False), ("b1", True))]
    finals = [asyncio.ensure_future(runtime.run_batch("asr", upper_all, w, key="whisper", urgent=True))
              for w in ("one", "two")]
    await runtime.settle()
    runtime.resume("tts")
    runtime.resume("asr")
    await runtime.settle()
    await asyncio.gather(*jobs)
    assert order == ["b1", "a2", "a3"]
    assert await asyncio.gather(*finals) == ["ONE", "TWO"] and calls == [["one", "two"]]
