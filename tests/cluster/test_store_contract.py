"""The `ClusterStore` contract, run against RedisStore (a real redis-server) and SqliteStore alike."""

from __future__ import annotations

import asyncio
import time

import pytest

from openrealtime.cluster.store import ClusterStore, Lease, NodeRecord, secret_digest
from tests.support import wait_for

SHORT_TTL_S = 0.3  # expiry tests wait for this to run out (bounded by wait_for, never timed)


def node(node_id: str, **fields) -> NodeRecord:
    return NodeRecord(node_id=node_id, internal_url=f"http://{node_id}.internal:8001", **fields)


async def live_ids(store) -> list[str]:
    return [n.node_id for n in await store.live_nodes()]


async def test_both_stores_implement_the_protocol(store):
    assert isinstance(store, ClusterStore)


async def test_heartbeat_registers_then_refreshes_the_record(store):
    before = time.time()
    assert await store.heartbeat(node("n1", calls=2, max_calls=64, loop_lag_s=0.004), ttl_s=5) is False
    assert await store.heartbeat(node("n1", calls=3, max_calls=64, draining=True), ttl_s=5) is True
    (record,) = await store.live_nodes()
    assert (record.node_id, record.internal_url, record.calls, record.max_calls, record.draining) == \
        ("n1", "http://n1.internal:8001", 3, 64, True)
    assert record.updated_at >= before
    with pytest.raises(ValueError):
        await store.heartbeat(node("n1"), ttl_s=11)  # a dead node must leave placement within 10 s


async def test_a_node_that_stops_heartbeating_leaves_live_nodes(store):
    await store.heartbeat(node("steady"), ttl_s=10)
    await store.heartbeat(node("dying"), ttl_s=SHORT_TTL_S)
    assert await live_ids(store) == ["dying", "steady"]
    await wait_for(lambda: _without(store, "dying"), what="the silent node leaving live_nodes")
    assert await live_ids(store) == ["steady"]
    # heartbeating again registers it afresh
    assert await store.heartbeat(node("dying"), ttl_s=10) is False
    assert await live_ids(store) == ["dying", "steady"]


async def _without(store, node_id: str) -> bool:
    return node_id not in await live_ids(store)


async def test_call_map_follows_calls_and_their_node(stores):
    n1, n2 = stores(), stores()  # two nodes' clients of one store
    await n1.heartbeat(node("n1"), ttl_s=10)
    await n2.heartbeat(node("n2"), ttl_s=10)
    assert await n1.set_call("rtc_a", "n1") and await n1.set_call("rtc_b", "n1")
    assert await n2.call_node("rtc_a") == "n1"
    assert await n2.set_call("rtc_a", "n2") is False  # a live node's call is not taken over
    assert await n1.set_call("rtc_a", "n1") is True  # re-asserting one's own call is fine
    await n2.remove_call("rtc_a", "n2")  # only the owner removes it
    assert await n2.call_node("rtc_a") == "n1"
    await n1.remove_call("rtc_a", "n1")
    assert await n2.call_node("rtc_a") is None
    assert await n2.call_node("rtc_b") == "n1"
    await n1.deregister("n1")  # all of a node's calls go with it
    assert await n2.call_node("rtc_b") is None
    assert await live_ids(n2) == ["n2"]


async def test_a_dead_nodes_calls_are_gone_and_do_not_come_back(stores):
    dead, other = stores(), stores()
    await dead.heartbeat(node("dead"), ttl_s=SHORT_TTL_S)
    await other.heartbeat(node("other"), ttl_s=10)
    await dead.set_call("rtc_x", "dead")
    await wait_for(lambda: _call_gone(other, "rtc_x"), what="the dead node's call leaving the map")
    assert await other.set_call("rtc_x", "other") is True  # its id may be taken by a live node
    await other.remove_call("rtc_x", "other")
    await dead.set_call("rtc_y", "dead")  # written after expiry, before anyone noticed
    await wait_for(lambda: _without(other, "dead"), what="the dead node leaving live_nodes")
    # the node comes back (a partition healed): it starts with no calls and re-asserts the ones it has
    assert await dead.heartbeat(node("dead"), ttl_s=10) is False
    assert await other.call_node("rtc_y") is None


async def _call_gone(store, call_id: str) -> bool:
    return await store.call_node(call_id) is None


async def test_client_secrets_are_kept_by_hash_until_they_expire(stores):
    minting, checking = stores(), stores()
    token, expires_at = "ek_" + "A1b2C3d4" * 4, time.time() + 600
    await minting.put_secret(token, '{"session":{"type":"realtime"}}', expires_at)
    assert await checking.get_secret(token) == '{"session":{"type":"realtime"}}'
    assert await checking.get_secret(token[:-1] + "x") is None
    dumped = await stores.dump()
    assert secret_digest(token) in dumped and token not in dumped  # stored by SHA-256, never the token
    short = "ek_" + "Z9y8X7w6" * 4
    await minting.put_secret(short, "{}", time.time() + SHORT_TTL_S)
    assert await checking.get_secret(short) == "{}"
    await wait_for(lambda: _secret_gone(checking, short), what="the short-lived secret expiring")
    await minting.put_secret("ek_expired", "{}", time.time() - 1)  # already expired: never readable
    assert await checking.get_secret("ek_expired") is None


async def _secret_gone(store, token: str) -> bool:
    return await store.get_secret(token) is None


async def test_leases_are_counted_across_nodes(stores):
    a, b = stores(), stores()
    first = await a.acquire("llm", limit=2, holder="a", ttl_s=30)
    second = await b.acquire("llm", limit=2, holder="b", ttl_s=30)
    assert isinstance(first, Lease) and isinstance(second, Lease) and first != second
    assert await a.acquire("llm", limit=2, holder="a", ttl_s=30) is None
    assert await b.acquire("tts", limit=1, holder="b", ttl_s=30) is not None  # pools are separate
    assert await a.lease_count("llm") == 2
    await a.release(first)
    assert await b.lease_count("llm") == 1
    assert await b.acquire("llm", limit=2, holder="b", ttl_s=30) is not None


async def test_concurrent_acquires_never_exceed_the_limit(stores):
    clients = [stores() for _ in range(3)]
    results = await asyncio.gather(*(clients[i % 3].acquire("pool", limit=4, holder=f"n{i % 3}", ttl_s=30)
                                     for i in range(12)))
    assert sum(r is not None for r in results) == 4
    assert await clients[0].lease_count("pool") == 4


async def test_a_dead_holders_leases_expire_and_a_live_one_renews(stores):
    dead, live = stores(), stores()
    lost = await dead.acquire("llm", limit=1, holder="dead", ttl_s=SHORT_TTL_S)
    assert lost is not None
    assert await live.acquire("llm", limit=1, holder="live", ttl_s=30) is None  # full while the lease lives
    held = await wait_for(lambda: live.acquire("llm", limit=1, holder="live", ttl_s=SHORT_TTL_S),
                          what="the dead holder's lease expiring")
    assert await dead.renew(lost, ttl_s=30) is None  # too late: it expired and was taken
    for _ in range(3):  # renewed within its TTL, it outlives it
        held = await live.renew(held, ttl_s=30)
        assert held is not None
    assert await dead.acquire("llm", limit=1, holder="dead", ttl_s=30) is None


async def test_deregistering_releases_the_nodes_leases(stores):
    leaving, staying = stores(), stores()
    await leaving.heartbeat(node("leaving"), ttl_s=10)
    assert await leaving.acquire("stt", limit=1, holder="leaving", ttl_s=60) is not None
    await leaving.deregister("leaving")
    assert await staying.acquire("stt", limit=1, holder="staying", ttl_s=60) is not None
