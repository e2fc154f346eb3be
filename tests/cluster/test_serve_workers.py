"""`openrealtime serve --workers 2` as a real process tree on one host (no Redis: the workers share the
embedded SQLite store): calls through the one HTTP port are spread over the workers and controlled
through any of them; a worker killed with SIGKILL mid-call takes only its own calls along, is
restarted, and every new call still connects; SIGTERM drains every worker and the host exits 0.
With --redis-url each worker is a node of that cluster."""

from __future__ import annotations

import os
import signal

import httpx

from openrealtime.cluster.redis_store import RedisStore
from tests.support import wait_for
from tests.support.cluster_calls import AUTH, calls_listed, node_pid, packets_lost, serving_nodes, talking_call
from tests.support.serve_process import ServeProcess


async def test_workers_share_the_port_spread_calls_and_survive_one_being_killed():
    host = ServeProcess("--workers", "2", "--engine", "echo", "--udp-port", "0", "--tcp-port", "0")
    clients: list = []
    try:
        await host.ready()
        await wait_for(lambda: _serving_is(host.url, 2), timeout=60, what="both workers serving")
        calls = [await talking_call(host.url, clients) for _ in range(4)]
        listed = await calls_listed(host.url)
        assert set(listed) == {c.call_id for c in calls}
        assert len(set(listed.values())) == 2  # spread over both workers, whichever received the POST
        await wait_for(lambda: all(c.audio.voiced_frames > 20 for c in calls), what="every call echoes")

        async with httpx.AsyncClient(timeout=10) as http:  # control through whichever worker accepts
            for call in calls:
                details = await http.get(f"{host.url}/v1/realtime/calls/{call.call_id}", headers=AUTH)
                assert details.status_code == 200 and details.json()["node"] == listed[call.call_id]

        victim = listed[calls[0].call_id]
        doomed = [c for c in calls if listed[c.call_id] == victim]
        survivors = [c for c in calls if listed[c.call_id] != victim]
        before = {c.call_id: c.audio.voiced_frames for c in survivors}
        os.kill(node_pid(victim, host.log()), signal.SIGKILL)
        fresh = [await talking_call(host.url, clients) for _ in range(3)]  # every new call connects meanwhile
        assert all(c.call_id for c in fresh)
        after_kill = await wait_for(lambda: _calls_without(host.url, {c.call_id for c in doomed}), timeout=30,
                                    what="the killed worker's calls gone from the registry")
        assert {c.call_id for c in survivors} <= set(after_kill)
        await wait_for(lambda: all(c.audio.voiced_frames > before[c.call_id] + 50 for c in survivors),
                       what="the other worker's calls go on talking")
        for call in survivors:
            assert await packets_lost(call) == 0
        async with httpx.AsyncClient(timeout=10) as http:
            gone = await http.get(f"{host.url}/v1/realtime/calls/{doomed[0].call_id}", headers=AUTH)
            assert gone.status_code == 404
        await wait_for(lambda: _serving_is(host.url, 2), timeout=60, what="the killed worker restarted")
        assert "restarting" in host.log()

        host.signal(signal.SIGTERM)  # drain: live calls go on until they end
        async with httpx.AsyncClient(timeout=10) as http:
            await wait_for(lambda: _status(http, host.url + "/readyz", 503), what="draining on every worker")
            for call in survivors + fresh:
                hung = await http.post(f"{host.url}/v1/realtime/calls/{call.call_id}/hangup", headers=AUTH)
                assert hung.status_code == 200, hung.text
        assert await host.exit_code(timeout=60) == 0
    finally:
        for client in clients:
            await client.close()
        host.kill()


async def _serving_is(url: str, n: int) -> bool:
    try:
        return await serving_nodes(url) == n
    except httpx.HTTPError:
        return False


async def _calls_without(url: str, gone: set[str]) -> dict | None:
    listed = await calls_listed(url)
    return None if gone & set(listed) else listed


async def _status(http: httpx.AsyncClient, url: str, status: int) -> bool:
    try:
        return (await http.get(url)).status_code == status
    except httpx.TransportError:  # a draining worker closes its idle keep-alive connections: ask again
        return False


async def test_workers_with_redis_are_nodes_of_that_cluster(own_redis):
    host = ServeProcess("--workers", "2", "--engine", "echo", "--node-id", "hostA", "--udp-port", "0",
                        "--tcp-port", "0", env={"OPENREALTIME_REDIS_URL": own_redis.url,
                                                "OPENREALTIME_CLUSTER_SECRET": "workers-redis-cluster-secret"})
    view = RedisStore.from_url(own_redis.url)
    clients: list = []
    try:
        await host.ready()
        nodes = await wait_for(lambda: _nodes(view, {"hostA-w0", "hostA-w1"}), timeout=60, what="both workers joined")
        urls = {n.internal_url for n in nodes}
        assert len(urls) == 2 and all(u.startswith("http://127.0.0.1:") for u in urls)  # each its own internal port
        call = await talking_call(host.url, clients)
        assert await view.call_node(call.call_id) in {"hostA-w0", "hostA-w1"}
    finally:
        for client in clients:
            await client.close()
        host.kill()
        await view.close()


async def _nodes(view, names: set[str]):
    nodes = await view.live_nodes()
    return nodes if {n.node_id for n in nodes if n.ready} == names else None
