"""NodeAgent on a real SQLite store: what it publishes, how soon a drain shows, and what it redoes after
the store could not be written."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from openrealtime.cluster.agent import NodeAgent, NodeStatus
from openrealtime.cluster.sqlite_store import SqliteStore
from openrealtime.cluster.store import StoreUnavailable
from tests.support import wait_for


class Node:
    """The server-side state an agent reads: its calls, readiness, drain and loop lag samples."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.ready = True
        self.draining = False
        self.lag_samples: list[float] = []

    def status(self) -> NodeStatus:
        lag = self.lag_samples.pop(0) if self.lag_samples else 0.0
        return NodeStatus(calls=len(self.calls), max_calls=8, loop_lag_s=lag, ready=self.ready,
                          draining=self.draining)


@pytest.fixture
async def store(tmp_path):
    store = SqliteStore(tmp_path / "cluster.sqlite3", busy_timeout_s=0.2)
    yield store
    await store.close()


def agent_for(store, node: Node, **kw) -> NodeAgent:
    return NodeAgent(store, "n1", "http://10.0.0.1:8000", node.status, lambda: list(node.calls), **kw)


async def record(store):
    return next((n for n in await store.live_nodes() if n.node_id == "n1"), None)


async def test_a_heartbeat_reports_the_largest_loop_lag_since_the_last_one(store):
    node = Node()
    agent = agent_for(store, node)
    node.lag_samples = [0.004]
    assert await agent.beat()
    assert (await record(store)).loop_lag_s == 0.004
    node.lag_samples = [0.002, 0.030, 0.001]
    for _ in range(2):  # status reads between heartbeats (the drain poll) keep their lag
        agent._read_status()
    assert await agent.beat()
    assert (await record(store)).loop_lag_s == 0.030
    assert await agent.beat()
    assert (await record(store)).loop_lag_s == 0.0


async def test_readiness_calls_and_drain_are_published_without_waiting_for_the_interval(store):
    node = Node()
    node.ready = False
    agent = agent_for(store, node, ttl_s=10, interval_s=9)  # the interval alone would take 9 s
    agent.start()
    try:
        await wait_for(lambda: record(store), what="registered")
        assert not (await record(store)).ready
        node.ready = True
        await wait_for(lambda: _field(store, "ready"), timeout=5, what="ready published")
        node.calls = ["rtc_a", "rtc_b"]  # placement reads loads from heartbeats: a change goes out at once
        await wait_for(lambda: _field_is(store, "calls", 2), timeout=5, what="the number of calls published")
        node.draining = True
        await wait_for(lambda: _field(store, "draining"), timeout=5, what="draining published")
    finally:
        await agent.stop()
    assert await record(store) is None  # deregistered


async def _field(store, name: str):
    found = await record(store)
    return found is not None and getattr(found, name)


async def _field_is(store, name: str, value) -> bool:
    found = await record(store)
    return found is not None and getattr(found, name) == value


async def test_writes_the_store_missed_are_redone_at_the_next_heartbeat(store, tmp_path):
    node = Node()
    agent = agent_for(store, node)
    node.calls = ["rtc_old"]
    assert await agent.beat() and await store.call_node("rtc_old") == "n1"
    locker = sqlite3.connect(tmp_path / "cluster.sqlite3", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # the store cannot be written
    node.calls = ["rtc_new"]
    agent.call_ended("rtc_old")
    agent.call_added("rtc_new")
    await wait_for(lambda: not agent._writes, what="both call writes tried")
    assert await agent.beat() is False and agent.reachable is False  # no exception: calls go on
    locker.execute("ROLLBACK")
    locker.close()
    assert await agent.beat() and agent.reachable
    assert await store.call_node("rtc_old") is None
    assert await store.call_node("rtc_new") == "n1"


class SwallowingStore:
    """A store whose heartbeat turns a cancellation into a connection error, as redis-py can (redis-py#2028)."""

    def __init__(self, store) -> None:
        self.store = store
        self.inside = asyncio.Event()  # a heartbeat is in its store call

    def __getattr__(self, name):
        return getattr(self.store, name)

    async def heartbeat(self, record, ttl_s):
        self.inside.set()
        try:
            await asyncio.sleep(0.5)
        except asyncio.CancelledError:
            raise StoreUnavailable("Redis is unreachable (heartbeat): ConnectionError") from None
        finally:
            self.inside.clear()
        return await self.store.heartbeat(record, ttl_s)


async def test_a_cancellation_the_store_swallowed_still_ends_the_heartbeats(store):
    swallowing = SwallowingStore(store)
    agent = agent_for(swallowing, Node(), interval_s=0.1)
    agent.start()
    await asyncio.wait_for(swallowing.inside.wait(), 5)
    task = agent._task
    task.cancel()  # lands inside the store call, as at the serving loop's close
    await asyncio.wait({task}, timeout=5)
    assert task.done(), "the heartbeat loop went on after its cancellation was swallowed"
    agent._task = None

    stopping_store = SwallowingStore(store)
    stopping = agent_for(stopping_store, Node(), interval_s=0.1)
    stopping.start()
    await asyncio.wait_for(stopping_store.inside.wait(), 5)
    await asyncio.wait_for(stopping.stop(), 10)  # returns, and the node leaves the store
    assert await record(store) is None
