"""The shared model pool across real node processes on a real redis-server (`--llm-max-sessions 2` on
each): sessions on either node count against the one pool, a full pool refuses new sessions and calls
on every node with 429 `model_capacity_exceeded`, a session that ends gives its lease back at once, and
the leases of a node killed with SIGKILL expire so that the pool admits again by itself. The same pool
on one host's `--workers 2` and their SQLite store: calls on both workers count, and a killed worker's
leases leave with it."""

from __future__ import annotations

import json
import os
import signal
from contextlib import AsyncExitStack

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from openrealtime.cluster.model_pools import ModelPools
from tests.support import wait_for, ws_event
from tests.support.cluster_calls import AUTH, calls_listed, node_pid, node_processes, talking_call
from tests.support.serve_process import ServeProcess

LIMIT = ("--llm-max-sessions", "2")
POOL = ModelPools.pool("llm")


async def session(stack: AsyncExitStack, node: ServeProcess):
    """A WebSocket session on `node`, admitted (it holds its lease until `stack` closes it)."""
    ws = await stack.enter_async_context(connect(node.ws_url, additional_headers=AUTH))
    await ws_event(ws, "session.created")
    return ws


async def refused(node: ServeProcess) -> dict:
    """A new WebSocket session on `node` is refused with 429 and Retry-After; its error."""
    with pytest.raises(InvalidStatus) as info:
        async with connect(node.ws_url, additional_headers=AUTH):
            pass
    response = info.value.response
    assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0
    return json.loads(response.body)["error"]


async def test_a_full_pool_refuses_on_either_node_until_a_session_ends(own_redis):
    async with node_processes(own_redis, "n1", "n2", extra=LIMIT) as (nodes, view, _):
        async with AsyncExitStack() as stack:
            on_n1 = await session(stack, nodes["n1"])
            await session(stack, nodes["n2"])
            assert await view.lease_count(POOL) == 2
            for node in nodes.values():
                assert (await refused(node))["code"] == "model_capacity_exceeded"
                async with httpx.AsyncClient(timeout=10) as http:  # a call, wherever it is placed
                    resp = await http.post(node.url + "/v1/realtime/calls", content=b"v=0\r\n",
                                           headers={**AUTH, "Content-Type": "application/sdp"})
                assert resp.status_code == 429 and resp.headers["Retry-After"], resp.text
                assert resp.json()["error"]["code"] == "model_capacity_exceeded"
            await on_n1.close()
            await wait_for(lambda: _leases_are(view, 1), timeout=10, what="the ended session's lease given back")
            await session(stack, nodes["n2"])  # the other node admits at once
            async with httpx.AsyncClient(timeout=10) as http:
                metrics = (await http.get(nodes["n2"].url + "/metrics", headers=AUTH)).text
            assert 'openrealtime_model_pool_limit{stage="llm"} 2.0' in metrics
            assert 'openrealtime_model_pool_refused_total{stage="llm"}' in metrics


async def test_a_killed_nodes_leases_expire_and_the_pool_admits_again(own_redis):
    async with node_processes(own_redis, "n1", "n2", extra=LIMIT) as (nodes, view, _):
        async with AsyncExitStack() as stack:
            await session(stack, nodes["n2"])
            await session(stack, nodes["n2"])
            assert (await refused(nodes["n1"]))["code"] == "model_capacity_exceeded"
            nodes["n2"].proc.kill()  # SIGKILL: its leases are not given back, nor renewed
            await wait_for(lambda: _leases_are(view, 0), timeout=20, what="the dead node's leases expired")
            await session(stack, nodes["n1"])
            await session(stack, nodes["n1"])
            assert (await refused(nodes["n1"]))["code"] == "model_capacity_exceeded"


async def _leases_are(view, n: int) -> bool:
    return await view.lease_count(POOL) == n


async def test_workers_share_the_pool_and_a_killed_workers_leases_leave_with_it():
    host = ServeProcess("--workers", "2", "--engine", "echo", "--udp-port", "0", "--tcp-port", "0", *LIMIT)
    clients: list = []
    try:
        await host.ready()
        calls = [await talking_call(host.url, clients) for _ in range(2)]  # placed one on each worker
        listed = await calls_listed(host.url)
        assert len(set(listed.values())) == 2, listed
        assert (await refused(host))["code"] == "model_capacity_exceeded"
        async with httpx.AsyncClient(timeout=10) as http:
            resp = await http.post(host.url + "/v1/realtime/calls", content=b"v=0\r\n",
                                   headers={**AUTH, "Content-Type": "application/sdp"})
        assert resp.status_code == 429 and resp.json()["error"]["code"] == "model_capacity_exceeded", resp.text
        victim = listed[calls[0].call_id]
        os.kill(node_pid(victim, host.log()), signal.SIGKILL)  # the supervisor removes it from the store
        async with AsyncExitStack() as stack:
            await wait_for(lambda: _admits(stack, host), timeout=30, what="the pool admits again")
    finally:
        for client in clients:
            await client.close()
        host.kill()


async def _admits(stack: AsyncExitStack, node: ServeProcess) -> bool:
    try:
        await session(stack, node)
    except InvalidStatus:
        return False
    return True
