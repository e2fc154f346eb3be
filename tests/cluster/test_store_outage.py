"""The store's engine going away: operations raise `StoreUnavailable`, and work again once it is back."""

from __future__ import annotations

import sqlite3
import time

import pytest

from openrealtime.cluster.redis_store import RedisStore
from openrealtime.cluster.sqlite_store import SqliteStore
from openrealtime.cluster.store import NodeRecord, StoreUnavailable

NODE = NodeRecord(node_id="n1", internal_url="http://10.0.0.1:8001")


async def test_redis_restart_raises_while_down_then_reconnects(own_redis):
    store = RedisStore.from_url(own_redis.url)
    try:
        assert await store.heartbeat(NODE, ttl_s=10) is False
        await store.set_call("rtc_1", "n1")
        own_redis.kill()
        for operation in (store.ping(), store.heartbeat(NODE, ttl_s=10), store.live_nodes(),
                          store.get_secret("ek_abc"), store.put_secret("ek_abc", "{}", time.time() + 60),
                          store.call_node("rtc_1"), store.acquire("llm", 1, "n1", 10)):
            with pytest.raises(StoreUnavailable, match="Redis is unreachable"):
                await operation
        own_redis.start()  # same port, empty (no persistence): the node must register again
        assert await store.heartbeat(NODE, ttl_s=10) is False  # the same client, reconnected
        assert await store.call_node("rtc_1") is None  # lost with Redis until the node re-asserts it
        assert await store.set_call("rtc_1", "n1")
        assert [n.node_id for n in await store.live_nodes()] == ["n1"]
        assert await store.call_node("rtc_1") == "n1"
    finally:
        await store.close()


async def test_sqlite_locked_past_the_busy_timeout_raises(tmp_path):
    path = tmp_path / "cluster.sqlite3"
    store = SqliteStore(path, busy_timeout_s=0.2)
    try:
        await store.heartbeat(NODE, ttl_s=10)
        other = sqlite3.connect(path, isolation_level=None)  # another process holding the write lock
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreUnavailable, match="unavailable"):
            await store.heartbeat(NODE, ttl_s=10)
        other.execute("ROLLBACK")
        other.close()
        assert await store.heartbeat(NODE, ttl_s=10) is True
    finally:
        await store.close()
