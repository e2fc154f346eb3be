"""Failures of a cluster of real node processes on a real redis-server, with talking aiortc calls:
a node killed with SIGKILL mid-call, Redis killed and started again mid-call, a node drained."""

from __future__ import annotations

import signal

import httpx

from tests.support import wait_for
from tests.support.cluster_calls import (AUTH, calls_listed, live_nodes_are, node_processes, routed, spread_calls,
                                         talking, talking_call)


async def test_a_node_killed_mid_call_takes_only_its_calls_and_every_new_call_connects(own_redis):
    async with node_processes(own_redis, "n1", "n2") as (nodes, view, clients):
        listed = await spread_calls(nodes["n1"], clients, {"n1", "n2"})
        doomed = {c for c, n in listed.items() if n == "n2"}
        nodes["n2"].proc.kill()  # SIGKILL: its Redis key lives on for up to its TTL
        for _ in range(4):  # placed on n2 while its key is live: the forward fails and n1 answers
            await talking_call(nodes["n1"].url, clients)
        assert not doomed & set(await calls_listed(nodes["n1"].url))
        assert await routed(nodes["n1"].url, "forward_failed") >= 1  # n2 was tried, then skipped
        await talking(clients, {c for c, n in listed.items() if n == "n1"})
        async with httpx.AsyncClient(timeout=10) as http:
            gone = await http.post(f"{nodes['n1'].url}/v1/realtime/calls/{next(iter(doomed))}/hangup", headers=AUTH)
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "call_not_found"
        await wait_for(lambda: live_nodes_are(view, {"n1"}), timeout=12, what="n2 gone from the node list by its TTL")
        assert [await view.call_node(c) for c in doomed] == [None] * len(doomed)  # its calls left the map


async def test_redis_restarted_mid_call(own_redis):
    async with node_processes(own_redis, "n1", "n2") as (nodes, view, clients):
        listed = await spread_calls(nodes["n1"], clients, {"n1", "n2"}, at_least=2)
        own_redis.kill()
        await talking(clients, set(listed))  # media never touches Redis
        during = await talking_call(nodes["n2"].url, clients)  # placed where it arrives
        assert (await calls_listed(nodes["n2"].url))[during.call_id] == "n2"
        own_redis.start()  # empty: nodes re-register and re-assert their calls by themselves
        await wait_for(lambda: live_nodes_are(view, {"n1", "n2"}), timeout=15, what="both nodes re-registered")
        for call_id, node in listed.items():
            await wait_for(lambda: _owner_is(view, call_id, node), timeout=15, what=f"{call_id} mapped again")
        on_n1 = next(c for c, n in listed.items() if n == "n1")
        async with httpx.AsyncClient(timeout=10) as http:  # routed through the call map again
            hung = await http.post(f"{nodes['n2'].url}/v1/realtime/calls/{on_n1}/hangup", headers=AUTH)
        assert hung.status_code == 200, hung.text
        await talking(clients, set(listed) - {on_n1} | {during.call_id})


async def _owner_is(view, call_id: str, node: str) -> bool:
    return await view.call_node(call_id) == node


async def test_a_drained_node_takes_no_calls_keeps_its_own_and_leaves_when_they_end(own_redis):
    async with node_processes(own_redis, "n1", "n2") as (nodes, view, clients):
        listed = await spread_calls(nodes["n1"], clients, {"n1", "n2"}, at_least=2)
        on_n2 = {c for c, n in listed.items() if n == "n2"}
        nodes["n2"].signal(signal.SIGTERM)
        await wait_for(lambda: _draining(view, "n2"), what="n2 published as draining")
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.get(nodes["n2"].url + "/readyz")).status_code == 503
            for _ in range(3):  # POSTs that still reach n2 are forwarded
                call = await talking_call(nodes["n2"].url, clients)
                assert (await calls_listed(nodes["n1"].url))[call.call_id] == "n1"
            await talking(clients, on_n2)  # its own calls go on until they end
            for call_id in on_n2:
                hung = await http.post(f"{nodes['n1'].url}/v1/realtime/calls/{call_id}/hangup", headers=AUTH)
                assert hung.status_code == 200, hung.text
        assert await nodes["n2"].exit_code(timeout=30) == 0
        assert await live_nodes_are(view, {"n1"})  # deregistered at exit


async def _draining(view, node_id: str) -> bool:
    return any(n.node_id == node_id and n.draining for n in await view.live_nodes())
