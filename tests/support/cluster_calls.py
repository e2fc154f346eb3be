"""Calls and probes for cluster tests against real node processes: the node processes on one Redis, a
talking aiortc call (the echo engine sends it back), its RTP loss, the call list and the cluster gauges
as any node reports them."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import asynccontextmanager

import httpx

from openrealtime.client.rtc import RealtimeRtcClient
from openrealtime.cluster.redis_store import RedisStore
from tests.support.audio import speechlike
from tests.support.serve_process import ServeProcess
from tests.support.waiting import wait_for

KEY = "sk-test"  # ServeProcess's API key
AUTH = {"Authorization": f"Bearer {KEY}"}
SECRET = "node-failures-cluster-secret-42"


@asynccontextmanager
async def node_processes(redis, *names: str, extra: tuple[str, ...] = (), redis_url: str | None = None,
                         placed: Callable[[str], dict] | None = None):
    """`openrealtime serve --engine echo --redis-url …` per name, all registered; (nodes by name, a view of
    the store, a list for the aiortc clients to close). `redis_url`: how the nodes reach Redis (default:
    as the test does); `placed`: more ServeProcess arguments per node name (a host and a namespace)."""
    env = {"OPENREALTIME_REDIS_URL": redis_url or redis.url, "OPENREALTIME_CLUSTER_SECRET": SECRET}
    nodes = {name: ServeProcess("--engine", "echo", "--node-id", name, "--tcp-port", "0", *extra, env=env,
                                **(placed(name) if placed else {}))
             for name in names}
    view = RedisStore.from_url(redis.url)
    clients: list = []
    try:
        for node in nodes.values():
            await node.ready()
        await wait_for(lambda: live_nodes_are(view, set(names)), timeout=30, what="every node registered")
        yield nodes, view, clients
    finally:
        for client in clients:
            await client.close()
        for node in nodes.values():
            node.kill()
        await view.close()


def node_pid(node_id: str, log: str) -> int:
    """The pid of the worker running `node_id`, from its `--workers` supervisor's log (the latest start)."""
    starts = [line for line in log.splitlines() if "worker started" in line and f"node={node_id} " in line]
    return int(starts[-1].split("pid=")[1].split()[0])


async def live_nodes_are(view: RedisStore, names: set[str]) -> bool:
    """The store's live, ready nodes are exactly `names`."""
    return {n.node_id for n in await view.live_nodes() if n.ready} == names


async def talking_call(base_url: str, clients: list, seconds: float = 60.0,
                       path: str = "/v1/realtime/calls") -> RealtimeRtcClient:
    """A connected call through `base_url` that talks for `seconds` (added to `clients` for closing)."""
    client = RealtimeRtcClient(base_url, api_key=KEY)
    clients.append(client)
    resp = await client.connect(path=path)
    assert resp.status_code == 201, resp.text
    await client.next_event("session.created", timeout=20)
    client.mic.play(speechlike(seconds, steady=True).tobytes())
    return client


async def spread_calls(via: ServeProcess, clients: list, names: set[str], at_least: int = 4) -> dict[str, str]:
    """Talking calls through `via` until every node in `names` owns one; call id → node."""
    listed: dict[str, str] = {}
    while len(listed) < at_least or set(listed.values()) != names:
        assert len(listed) < 12, f"calls not spread over {names}: {listed}"
        await talking_call(via.url, clients)
        listed = await calls_listed(via.url)
    return listed


async def talking(clients: list, ids: set[str], *, lossless: bool = True) -> None:
    """The calls `ids` keep receiving audio, with no RTP packet lost so far (unless not `lossless`: calls
    that lost what was sent while cut off talk again)."""
    calls = [c for c in clients if c.call_id in ids]
    before = {c.call_id: c.audio.voiced_frames for c in calls}
    await wait_for(lambda: all(c.audio.voiced_frames > before[c.call_id] + 50 for c in calls),
                   what="the calls go on talking")
    for call in calls:
        assert not lossless or await packets_lost(call) == 0, call.call_id


async def packets_lost(client: RealtimeRtcClient) -> int:
    """RTP packets the call's inbound audio lost so far (sequence gaps)."""
    report = await client.pc.getStats()
    return sum(s.packetsLost for s in report.values() if getattr(s, "type", "") == "inbound-rtp")


async def calls_listed(base_url: str) -> dict[str, str]:
    """Call id → node, from GET /v1/realtime/calls on whichever node `base_url` reaches."""
    async with httpx.AsyncClient(timeout=10) as http:
        resp = await http.get(base_url + "/v1/realtime/calls", headers=AUTH)
    assert resp.status_code == 200, resp.text
    return {c["id"]: c["node"] for c in resp.json()["data"]}


async def serving_nodes(base_url: str) -> int:
    """`openrealtime_cluster_nodes{state="serving"}` as the node `base_url` reaches sees it."""
    return int(await _metric(base_url, 'openrealtime_cluster_nodes{state="serving"}'))


async def routed(base_url: str, route: str) -> int:
    """`openrealtime_cluster_routed_total{route=…}` of the node `base_url` reaches."""
    return int(await _metric(base_url, f'openrealtime_cluster_routed_total{{route="{route}"}}'))


async def _metric(base_url: str, sample: str) -> float:
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(base_url + "/metrics", headers=AUTH)).text
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0
