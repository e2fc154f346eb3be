"""The model pools (cluster/model_pools.py) of two nodes on one cluster store, Redis and SQLite: one count
for both, a node that stops renewing loses its leases to the other, and with Redis down a node admits
against its own count and takes the leases once Redis is back."""

from __future__ import annotations

import asyncio

import pytest

from openrealtime.cluster.model_pools import ModelPools, PoolFull
from openrealtime.cluster.redis_store import RedisStore
from tests.support import wait_for


async def test_two_nodes_count_against_one_pool_and_a_silent_nodes_leases_expire(stores):
    a = ModelPools({"llm": 2}, stores(), "node-a", ttl_s=0.5, renew_s=0.1)
    b = ModelPools({"llm": 2}, stores(), "node-b", ttl_s=0.5, renew_s=0.1)
    try:
        a.start()  # a renews; b never will (a node that died)
        ended = asyncio.Event()
        with await a.take() as seat:
            seat.keep_until(ended)
        await b.take()
        with pytest.raises(PoolFull):
            await a.take()
        await wait_for(lambda: _admits(a), timeout=10, what="b's lease expired")
        assert await a.store.lease_count(a.pool("llm")) == 2  # a's first seat was renewed all along
    finally:
        await a.close()
        await b.close()


async def _admits(pools: ModelPools) -> bool:
    try:
        await pools.take()
    except PoolFull:
        return False
    return True


async def test_with_redis_down_a_node_admits_against_its_own_count_then_takes_the_leases(own_redis):
    pools = ModelPools({"llm": 2}, RedisStore.from_url(own_redis.url, prefix="pools:"), "node-a")
    try:
        own_redis.kill()
        seats = [await pools.take(), await pools.take()]
        assert all(s.leases["llm"] is None for s in seats)  # admitted, not leased
        with pytest.raises(PoolFull):
            await pools.take()  # its own count is at the limit
        own_redis.start()
        assert await pools.renew_all()
        assert all(s.leases["llm"] is not None for s in seats)
        assert await pools.store.lease_count(pools.pool("llm")) == 2
    finally:
        await pools.close()
        await pools.store.close()
