"""The runtime's stage worker pools: `busy()` tells a stage's in-flight work, including work whose caller
gave up; model loading in a thread of its own."""

from __future__ import annotations

import asyncio
import threading
import time

from openrealtime.runtime import Runtime, run_in_model_thread
from openrealtime.session import speculation
from tests.support import silence, speech
from tests.unit.test_engine_speculation import PrefillLlm
from tests.unit.test_engine_turns import feed, make_engine, settle


async def test_busy_while_a_job_is_queued_or_running_even_if_its_caller_is_cancelled():
    workers = Runtime()
    started, release = threading.Event(), threading.Event()

    def job() -> None:
        started.set()
        release.wait(5)

    assert not workers.busy("asr")
    task = asyncio.ensure_future(workers.run("asr", job))
    assert await asyncio.to_thread(started.wait, 5)  # the job runs in the stage's thread
    assert workers.busy("asr")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and workers.busy("asr"), "the job still runs in its thread"
    release.set()
    # the stage has one thread: a job after it ends after its bookkeeping (done callbacks run in that thread)
    await asyncio.wrap_future(workers.pool("asr").submit(lambda: None))
    assert not workers.busy("asr")
    workers.close()


async def test_busy_is_cleared_when_the_job_fails():
    workers = Runtime()

    def boom() -> None:
        raise RuntimeError("model failed")

    try:
        await workers.run("asr", boom)
    except RuntimeError:
        pass
    assert not workers.busy("asr")


async def test_prefix_warming_waits_while_another_transcription_runs(monkeypatch):
    monkeypatch.setattr(speculation, "WARM_FIRST_MS", 300)
    monkeypatch.setattr(speculation, "WARM_EVERY_MS", 300)
    llm = PrefillLlm("Sure.")
    engine, t = make_engine({"type": "realtime", "audio": {"input": {
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 300}}}}, llm=llm)
    monkeypatch.setattr(engine.runtime, "busy", lambda stage: stage == "asr")  # another session's transcription
    await feed(engine, silence(300) + speech(1200) + silence(500))
    await settle(engine)
    assert engine.stats["prefix_warmings"] == 0 and engine.stats["prefix_warmings_deferred"] > 0
    assert llm.prefills == []


async def test_run_in_model_thread_delivers_the_loaders_exception():
    """A model that fails to load must fail the awaiting start-up (it once hung it: the loop callback
    referred to the except block's variable after Python had unbound it)."""
    import pytest

    started = threading.Event()

    def broken_loader():
        started.set()
        raise RuntimeError("model.bin is not a model")

    task = asyncio.ensure_future(run_in_model_thread(broken_loader))
    await asyncio.sleep(0)  # the thread starts
    started.wait(10)
    time.sleep(0.3)  # hold the loop so the thread leaves its except block before the loop runs the callback
    with pytest.raises(RuntimeError, match="not a model"):
        await asyncio.wait_for(task, 30)
    assert await asyncio.wait_for(run_in_model_thread(lambda: 42), 30) == 42
