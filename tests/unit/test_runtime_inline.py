"""The inline runtime (runtime_inline.py): model work on the loop's thread in submission order, a
manual clock, `settle()`; and the one interface it shares with the threaded `Runtime`."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading

import pytest

from openrealtime.runtime import ModelRuntime, Runtime
from openrealtime.runtime_inline import InlineRuntime, ready_callbacks


def test_both_runtimes_implement_the_whole_interface_alike():
    members = [name for name in [*vars(ModelRuntime), *ModelRuntime.__annotations__] if not name.startswith("_")]
    assert {"now", "run", "stream", "spawn", "call_later", "busy", "queue_depths", "configure", "close",
            "gate"} <= set(members)
    threaded, inline = Runtime(), InlineRuntime()
    try:
        for name in members:
            if name == "gate":
                assert threaded.gate is not None and inline.gate is not None
                continue
            declared = inspect.signature(getattr(ModelRuntime, name))
            for runtime in (inline, threaded):
                if name == "now" and runtime is threaded:  # an injected clock function
                    assert callable(threaded.now)
                    continue
                ours = inspect.signature(getattr(type(runtime), name))
                assert list(ours.parameters) == list(declared.parameters), (type(runtime).__name__, name)
    finally:
        threaded.close()


async def test_jobs_run_on_the_loop_thread_in_submission_order():
    runtime, ran = InlineRuntime(), []
    loop_thread = threading.get_ident()

    def job(name: str) -> str:
        ran.append((name, threading.get_ident()))
        return name.upper()

    for stage in ("asr", "vad", "llm"):
        runtime.pause(stage)
    tasks = [asyncio.ensure_future(runtime.run(stage, job, f"{stage}{n}"))
             for n, stage in enumerate(["asr", "vad", "llm", "asr"])]
    await runtime.settle()
    assert ran == [] and runtime.busy("asr") and runtime.queue_depths()["asr"] == 2
    for stage in ("llm", "vad", "asr"):  # the order they resume in does not matter: the order submitted does
        runtime.resume(stage)
    await runtime.settle()
    assert [name for name, _ in ran] == ["asr0", "vad1", "llm2", "asr3"]
    assert {thread for _, thread in ran} == {loop_thread}
    assert [t.result() for t in tasks] == ["ASR0", "VAD1", "LLM2", "ASR3"]
    assert runtime.jobs_run == ["asr", "vad", "llm", "asr"] and not runtime.busy("asr")


async def test_a_failing_job_fails_its_caller_and_a_cancelled_caller_drops_its_job():
    runtime, ran = InlineRuntime(), []

    def boom() -> None:
        raise RuntimeError("model failed")

    with pytest.raises(RuntimeError, match="model failed"):
        await runtime.run("asr", boom)
    runtime.pause("asr")
    dropped = asyncio.ensure_future(runtime.run("asr", ran.append, "dropped"))
    kept = asyncio.ensure_future(runtime.run("asr", ran.append, "kept"))
    await runtime.settle()  # both callers are waiting on their jobs
    dropped.cancel()
    runtime.resume("asr")
    await runtime.settle()
    assert ran == ["kept"] and dropped.cancelled() and kept.done()
    assert not runtime.busy("asr")
    with pytest.raises(ValueError, match="unknown stage"):
        await runtime.run("gpu", ran.append, "x")


async def test_a_stream_yields_item_by_item_and_stopping_early_cancels_and_closes_it():
    runtime, produced, closed = InlineRuntime(), [], []

    def words():
        try:
            for word in ["one", "two", "three", "four"]:
                produced.append(word)
                yield word
        finally:
            closed.append(True)

    cancel = threading.Event()
    assert [w async for w in runtime.stream("llm", words, cancel)] == ["one", "two", "three", "four"]
    assert closed == [True] and not cancel.is_set()
    produced.clear()
    cancel = threading.Event()
    stream = runtime.stream("llm", words, cancel)
    assert await anext(stream) == "one"
    await stream.aclose()
    assert produced == ["one"] and cancel.is_set() and closed == [True, True]


async def test_a_stream_stops_once_its_cancel_event_is_set():
    runtime, cancel = InlineRuntime(), threading.Event()

    def count():
        n = 0
        while True:
            n += 1
            if n == 3:
                cancel.set()  # the model is told to stop (say, the response was cancelled)
            yield n

    assert [n async for n in runtime.stream("llm", count, cancel)] == [1, 2, 3]


async def test_a_paused_stage_holds_its_jobs_until_resumed_while_others_run():
    runtime = InlineRuntime()
    runtime.pause("llm", after=2)
    cancel = threading.Event()
    got: list[int] = []

    async def consume() -> None:
        async for n in runtime.stream("llm", lambda: iter(range(5)), cancel):
            got.append(n)

    consumer = asyncio.ensure_future(consume())
    other = asyncio.ensure_future(runtime.run("tts", lambda: "spoken"))
    await runtime.settle()
    assert got == [0, 1] and not consumer.done() and other.result() == "spoken"
    assert runtime.busy("llm")
    runtime.resume("llm")
    await runtime.settle()
    assert got == [0, 1, 2, 3, 4] and consumer.done()


async def test_settle_runs_chained_work_and_returns_while_tasks_wait_on_the_outside():
    runtime = InlineRuntime()
    outside: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def chain() -> None:
        steps.append(await runtime.run("vad", lambda: "heard"))
        steps.append(await runtime.run("asr", lambda: "words"))
        runtime.spawn(answer())

    async def answer() -> None:
        steps.append(await runtime.run("llm", lambda: "reply"))
        steps.append(await outside)  # e.g. a network answer

    runtime.spawn(chain())
    await runtime.settle()
    assert steps == ["heard", "words", "reply"]
    outside.set_result("network")
    await runtime.settle()
    assert steps[-1] == "network"


async def test_the_manual_clock_fires_timers_in_order_as_it_advances():
    runtime, fired = InlineRuntime(start=100.0), []
    runtime.call_later(0.3, lambda: fired.append(("b", runtime.now())))
    runtime.call_later(0.1, lambda: fired.append(("a", runtime.now())))
    cancelled = runtime.call_later(0.2, lambda: fired.append(("never", runtime.now())))
    cancelled.cancel()

    def chained() -> None:  # a timer that sets another one within the span, and starts work
        fired.append(("c", runtime.now()))
        runtime.call_later(0.05, lambda: fired.append(("d", runtime.now())))
        runtime.spawn(runtime.run("tts", lambda: fired.append(("work", runtime.now()))))

    runtime.call_later(0.4, chained)
    assert runtime.now() == 100.0
    await runtime.advance(0.25)
    assert fired == [("a", 100.1)] and runtime.now() == 100.25
    await runtime.advance(1)
    assert fired == [("a", 100.1), ("b", 100.3), ("c", 100.4), ("work", 100.4), ("d", 100.45)]
    assert runtime.now() == 101.25


async def test_a_spawned_task_that_fails_is_logged(caplog):
    runtime = InlineRuntime()

    async def broken() -> None:
        raise RuntimeError("lost?")

    with caplog.at_level(logging.ERROR, logger="openrealtime.runtime"):
        runtime.spawn(broken(), name="broken")
        await runtime.settle()
    assert any("task broken failed" in r.getMessage() for r in caplog.records)


async def test_close_cancels_the_jobs_not_run():
    runtime = InlineRuntime()
    runtime.pause("asr")
    job = asyncio.ensure_future(runtime.run("asr", lambda: "never"))
    await runtime.settle()
    runtime.close()
    await runtime.settle()
    assert job.cancelled() and not runtime.busy("asr")


async def test_the_loops_ready_queue_it_reads_is_there():
    """settle() reads asyncio's private `BaseEventLoop._ready` (runtime_inline.ready_callbacks): still a
    deque that holds what call_soon scheduled."""
    loop = asyncio.get_running_loop()
    ready = ready_callbacks(loop)
    handle = loop.call_soon(lambda: None)
    assert handle in ready
    handle.cancel()
