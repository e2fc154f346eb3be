"""Servers started with --redis-url: they register and heartbeat, map their calls, share ek_ secrets,
fail ek_ checks closed while Redis is down and re-register by themselves once it is back."""

from __future__ import annotations

from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from websockets.asyncio.client import connect

from openrealtime.api.embedded import embedded_server
from openrealtime.client.rtc import RealtimeRtcClient
from openrealtime.cluster.redis_store import RedisStore
from tests.support import assert_openai_error, server_settings, wait_for, ws_event

SECRET = "cluster-secret-for-the-tests"


@asynccontextmanager
async def nodes(redis, *names: str, **overrides):
    """In-process echo servers joined into one cluster on `redis`, and a store client to look at it."""
    async with AsyncExitStack() as stack:
        servers = [await stack.enter_async_context(embedded_server(server_settings(
            engine="echo", redis_url=redis.url, cluster_secret=SECRET, node_id=name, **overrides)))
            for name in names]
        view = RedisStore.from_url(redis.url)
        stack.push_async_callback(view.close)
        yield servers, view


async def live(view) -> dict:
    return {n.node_id: n for n in await view.live_nodes()}


async def mint(server, instructions: str) -> str:
    async with httpx.AsyncClient() as http:
        r = await http.post(server.url + "/v1/realtime/client_secrets", headers={"Authorization": "Bearer key"},
                            json={"session": {"type": "realtime", "instructions": instructions}})
    assert r.status_code == 200, r.text
    return r.json()["value"]


async def post_call(server, token: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(server.url + "/v1/realtime/calls", content=b"v=0\r\n",
                               headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"})


async def test_nodes_register_with_their_state_and_leave_at_shutdown(own_redis):
    async with nodes(own_redis, "n1") as ((n1,), view):
        async with embedded_server(server_settings(engine="echo", redis_url=own_redis.url, cluster_secret=SECRET,
                                                   node_id="n2", internal_url="http://10.9.0.2:8000", max_calls=7)):
            found = await wait_for(lambda: _with_nodes(view, {"n1", "n2"}), what="both nodes registered")
            assert found["n1"].internal_url == f"http://127.0.0.1:{n1.settings.port}"  # the advertised address
            n2 = found["n2"]
            assert (n2.internal_url, n2.max_calls, n2.calls) == ("http://10.9.0.2:8000", 7, 0)
            await wait_for(lambda: _node_field(view, "n2", "ready"), what="n2 reported ready")
        assert set(await live(view)) == {"n1"}  # deregistered at shutdown, not left to expire


async def _with_nodes(view, names: set[str]) -> dict | None:
    found = await live(view)
    return found if set(found) == names else None


async def _node_field(view, node_id: str, field: str):
    found = await live(view)
    return node_id in found and getattr(found[node_id], field)


async def test_an_ek_minted_on_one_node_works_on_another(own_redis):
    async with nodes(own_redis, "n1", "n2") as ((n1, n2), view):
        token = await mint(n1, "Minted on n1.")
        async with connect(n2.url.replace("http", "ws") + "/v1/realtime",
                           additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            created = await ws_event(ws, "session.created")
        assert created["session"]["instructions"] == "Minted on n1."
        assert_openai_error(await post_call(n2, token[:-2] + "xx"), 401, "invalid_api_key")
        assert all(token not in key for key in await view.client.keys("*"))  # kept by hash


async def test_calls_are_mapped_to_their_node_while_they_live(own_redis):
    async with nodes(own_redis, "n1") as ((n1,), view):
        client = RealtimeRtcClient(n1.url, api_key="key")
        try:
            assert (await client.connect()).status_code == 201
            await client.next_event("session.created")
            await wait_for(lambda: _owner_is(view, client.call_id, "n1"), what="the call mapped to n1")
            async with httpx.AsyncClient() as http:
                r = await http.post(f"{n1.url}/v1/realtime/calls/{client.call_id}/hangup",
                                    headers={"Authorization": "Bearer key"})
            assert r.status_code == 200
            await wait_for(lambda: _owner_is(view, client.call_id, None), what="the ended call unmapped")
        finally:
            await client.close()


async def _owner_is(view, call_id: str, node_id: str | None) -> bool:
    return await view.call_node(call_id) == node_id


async def test_redis_down_fails_ek_closed_and_nodes_come_back_by_themselves(own_redis):
    async with nodes(own_redis, "n1", "n2") as ((n1, n2), view):
        await wait_for(lambda: _with_nodes(view, {"n1", "n2"}), what="both nodes registered")
        token = await mint(n1, "Before the outage.")
        client = RealtimeRtcClient(n1.url, api_key="key")  # a call that lives through the outage
        try:
            assert (await client.connect()).status_code == 201
            await client.next_event("session.created")
            own_redis.kill()
            error = assert_openai_error(await post_call(n2, token), 503, "server_not_ready")
            assert "cluster store" in error["message"]
            async with httpx.AsyncClient() as http:
                minted = await http.post(n1.url + "/v1/realtime/client_secrets", json={},
                                         headers={"Authorization": "Bearer key"})
            assert_openai_error(minted, 503, "server_not_ready")
            # an API key does not need the store (the bad SDP gets past auth to the offer check)
            assert_openai_error(await post_call(n2, "key"), 400)
            own_redis.start()  # empty: the nodes must register again, and n1 re-assert its call
            await wait_for(lambda: _with_nodes(view, {"n1", "n2"}), what="both nodes re-registered")
            owner = "n1" if n1.state.calls.get(client.call_id) is not None else "n2"  # placed by load
            await wait_for(lambda: _owner_is(view, client.call_id, owner), what="the owner's call re-asserted")
            fresh = await mint(n1, "After the outage.")
            async with connect(n2.url.replace("http", "ws") + "/v1/realtime",
                               additional_headers={"Authorization": f"Bearer {fresh}"}) as ws:
                assert (await ws_event(ws, "session.created"))["session"]["instructions"] == "After the outage."
        finally:
            await client.close()


async def test_a_draining_node_says_so(own_redis):
    async with nodes(own_redis, "n1") as ((n1,), view):
        async with connect(n1.url.replace("http", "ws") + "/v1/realtime",
                           additional_headers={"Authorization": "Bearer key"}) as ws:
            await ws_event(ws, "session.created")  # a live session keeps the drain going
            n1.state.lifecycle.start_drain()
            await wait_for(lambda: _node_field(view, "n1", "draining"), what="n1 published as draining")
