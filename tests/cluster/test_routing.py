"""Every public route on every node (in-process nodes on one real redis-server, real aiortc clients):
calls are placed by load and answered with the owner's own candidates, hangup, call details and the
sideband reach the owner from any node, the call list covers the cluster, draining and full nodes
take no calls, and with Redis down new calls are answered where they arrive."""

from __future__ import annotations

import re
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from openrealtime.api.embedded import embedded_server
from openrealtime.cluster.auth import NodeSigner
from openrealtime.cluster.redis_store import RedisStore
from openrealtime.client.rtc import RealtimeRtcClient
from tests.support import assert_openai_error, server_settings, speechlike, wait_for, ws_event

SECRET = "routing-cluster-secret-0123456789"
KEY = {"Authorization": "Bearer key"}
CALLER_IP = "127.0.0.2"


@asynccontextmanager
async def cluster(redis, *specs: dict):
    """In-process echo nodes (one per spec of setting overrides) on `redis`, all registered and ready."""
    async with AsyncExitStack() as stack:
        servers = []
        for i, spec in enumerate(specs, 1):
            settings = server_settings(engine="echo", api_keys=["key"], redis_url=redis.url, cluster_secret=SECRET,
                                       node_id=f"n{i}", **spec)
            servers.append(await stack.enter_async_context(embedded_server(settings)))
        view = RedisStore.from_url(redis.url)
        stack.push_async_callback(view.close)
        names = {s.settings.node_id for s in servers}
        await wait_for(lambda: _ready_nodes(view, names), what="every node registered and ready")
        await wait_for(lambda: all(set(router(s).known) == names for s in servers), what="every node seen by all")
        stack.push_async_callback(_close_clients, clients := [])
        yield servers, view, clients


def router(server):
    return server.server.config.app.state.cluster_router


async def _ready_nodes(view, names: set[str]) -> bool:
    return {n.node_id for n in await view.live_nodes() if n.ready} == names


async def _close_clients(clients) -> None:
    for client in clients:
        await client.close()


async def call_via(server, clients: list, path: str = "/v1/realtime/calls") -> RealtimeRtcClient:
    """A connected call POSTed to `server` from 127.0.0.2 (the nodes talk to each other from 127.0.0.1)."""
    client = RealtimeRtcClient(server.url, api_key="key")
    clients.append(client)
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=CALLER_IP), timeout=30) as http:
        resp = await client.connect(http, path=path)
    assert resp.status_code == 201, resp.text
    await client.next_event("session.created")
    client.answer_sdp = resp.text
    return client


def owner_of(servers, call_id: str):
    return next(s for s in servers if s.state.calls.get(call_id) is not None)


def candidate_ports(sdp: str) -> set[int]:
    return {int(m.group(1)) for m in re.finditer(r"a=candidate:\S+ \d \S+ \d+ \S+ (\d+) typ host", sdp)}


async def test_calls_are_spread_and_answered_by_their_owner_with_its_own_candidates(own_redis):
    async with cluster(own_redis, {}, {}) as (servers, view, clients):
        n1, n2 = servers
        placed = [await call_via(n1, clients) for _ in range(4)]  # every POST arrives at n1
        owners = [owner_of(servers, c.call_id) for c in placed]
        assert {o.settings.node_id for o in owners} == {"n1", "n2"}  # n1 gets no preference
        for client, owner in zip(placed, owners):
            assert candidate_ports(client.answer_sdp) == {owner.state.mux.udp_port} | (
                {owner.state.mux.tcp_port} if owner.state.mux.tcp_enabled else set())
            assert await view.call_node(client.call_id) == owner.settings.node_id
            assert owner.state.calls.get(client.call_id).client == CALLER_IP  # the caller's, also when forwarded
        for client in placed:  # media flows to the owner directly: the echo comes back
            client.mic.play(speechlike(1.0).tobytes())
        await wait_for(lambda: all(c.audio.voiced_frames > 10 for c in placed), what="every call echoes")


async def test_hangup_details_and_sideband_reach_the_owner_from_any_node_and_a_full_cluster_says_so(own_redis):
    async with cluster(own_redis, {"max_calls": 1}, {"max_calls": 1}) as (servers, view, clients):
        first = await call_via(servers[0], clients)
        client = await call_via(servers[0], clients)  # the first call's node is full: the other one's
        owner = owner_of(servers, client.call_id)
        n1 = owner_of(servers, first.call_id)  # asked about a call it does not have
        assert n1 is not owner
        n2 = owner
        ws_url = n1.url.replace("http", "ws") + f"/v1/realtime?call_id={client.call_id}"
        full = RealtimeRtcClient(n1.url, api_key="key")  # every node is full: the usual 429
        clients.append(full)
        assert_openai_error(await full.connect(), 429, "too_many_calls")
        async with httpx.AsyncClient() as http:
            details = await http.get(f"{n1.url}/v1/realtime/calls/{client.call_id}", headers=KEY)
            assert details.status_code == 200 and details.json()["node"] == n2.settings.node_id
            listed = (await http.get(f"{n1.url}/v1/realtime/calls", headers=KEY)).json()["data"]
            assert sorted(c["node"] for c in listed) == ["n1", "n2"]
            assert {c["id"] for c in listed} == {first.call_id, client.call_id}
            async with connect(ws_url, additional_headers=KEY, subprotocols=["realtime"]) as ws:
                assert ws.subprotocol == "realtime"
                created = await ws_event(ws, "session.created")  # the owner's session
                assert created["session"]["id"] == n2.state.calls.get(client.call_id).engine.id
                await ws.send('{"type": "session.update", "session": {"type": "realtime", "instructions": "Hi."}}')
                assert (await ws_event(ws, "session.updated"))["session"]["instructions"] == "Hi."
                assert (await client.next_event("session.updated"))["session"]["instructions"] == "Hi."
                hung = await http.post(f"{n1.url}/v1/realtime/calls/{client.call_id}/hangup", headers=KEY)
                assert hung.status_code == 200
                with pytest.raises(ConnectionClosed):
                    while True:
                        await ws.recv()
                assert ws.close_code == 1000  # the owner's close code, through n1
            await wait_for(lambda: n2.state.calls.get(client.call_id) is None, what="the call ended on n2")
            assert_openai_error(await http.post(f"{n1.url}/v1/realtime/calls/{client.call_id}/hangup", headers=KEY),
                                404, "call_not_found")
        with pytest.raises(Exception) as refused:  # the sideband of an ended call: 404 from wherever asked
            async with connect(ws_url, additional_headers=KEY):
                pass
        assert getattr(refused.value, "response", None) is not None and refused.value.response.status_code == 404


async def test_draining_and_full_nodes_take_no_calls_and_beta_posts_are_placed_too(own_redis):
    async with cluster(own_redis, {}, {"max_calls": 1}, {}) as (servers, view, clients):
        n1, n2, n3 = servers
        n1.state.health.draining = True  # n1 still receives POSTs (a load balancer may lag): it forwards them
        await wait_for(lambda: _node_draining(view, "n1"), what="n1 published as draining")
        placed = [await call_via(n1, clients, path="/v1/realtime?model=gpt-realtime") for _ in range(3)]
        owners = [owner_of(servers, c.call_id).settings.node_id for c in placed]
        assert "n1" not in owners and owners.count("n2") == 1 and owners.count("n3") == 2
        # each beta POST reached its owner as a beta call: beta clients get `conversation.created` too
        for client in placed:
            await client.next_event("conversation.created")


async def _node_draining(view, node_id: str) -> bool:
    return any(n.node_id == node_id and n.draining for n in await view.live_nodes())


async def test_with_redis_down_new_calls_are_answered_where_they_arrive(own_redis):
    async with cluster(own_redis, {}, {}) as (servers, view, clients):
        n1, n2 = servers
        before = await call_via(n1, clients)
        own_redis.kill()
        for _ in range(3):
            client = await call_via(n2, clients)
            assert owner_of(servers, client.call_id) is n2
        async with httpx.AsyncClient() as http:  # the node table last seen finds the owner without Redis
            other = n2 if owner_of(servers, before.call_id) is n1 else n1
            details = await http.get(f"{other.url}/v1/realtime/calls/{before.call_id}", headers=KEY)
            assert details.status_code == 200 and details.json()["id"] == before.call_id


async def test_a_request_with_a_bad_node_signature_is_refused(own_redis):
    async with cluster(own_redis, {}) as ((n1,), view, clients):
        target = "/v1/realtime/calls"
        forged = NodeSigner("not-the-cluster-secret-at-all", "n9").headers("POST", target, b"v=0\r\n")
        async with httpx.AsyncClient() as http:
            resp = await http.post(n1.url + target, content=b"v=0\r\n",
                                   headers={**KEY, **forged, "Content-Type": "application/sdp"})
        assert_openai_error(resp, 401, "invalid_node_signature")
