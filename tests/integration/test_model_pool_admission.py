"""The shared model pools on one server (`--llm-max-sessions`, `--stt-max-sessions`; no cluster store: the
leases are counted in the process): a WebRTC call and a WebSocket session each hold a lease per stage
they use while they live; beyond a pool's limit a new call or session gets 429 `model_capacity_exceeded`
with Retry-After in OpenAI's error shape; a transcription session needs only speech-to-text; once a
session ends the pool admits again."""

import json

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from openrealtime.api.admission import RETRY_AFTER_S
from openrealtime.api.embedded import embedded_server
from openrealtime.client.rtc import RealtimeRtcClient
from tests.support import assert_openai_error, server_settings, wait_for, ws_event

KEY = "sk-test-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def server():
    settings = server_settings(engine="echo", api_keys=[KEY], llm_max_sessions=1, stt_max_sessions=2)
    async with embedded_server(settings) as srv:
        yield srv


def ws_url(srv, query: str = "model=gpt-realtime") -> str:
    return srv.url.replace("http://", "ws://") + "/v1/realtime?" + query


async def refused_ws(srv, query: str = "model=gpt-realtime") -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(ws_url(srv, query), additional_headers=HEADERS):
            pass
    response = info.value.response
    assert response.status_code == 429 and response.headers["Retry-After"] == str(RETRY_AFTER_S)
    error = json.loads(response.body)["error"]
    assert (error["code"], error["type"]) == ("model_capacity_exceeded", "rate_limit_exceeded"), error
    assert set(error) == {"message", "type", "param", "code"}


async def leases(srv, stage: str) -> int:
    pools = srv.state.health.pools
    return await pools.store.lease_count(pools.pool(stage))


async def test_a_call_holds_its_leases_while_it_lives_and_a_full_pool_refuses(server):
    call = RealtimeRtcClient(server.url, api_key=KEY)
    try:
        assert (await call.connect()).status_code == 201
        await call.next_event("session.created", timeout=20)
        assert [await leases(server, s) for s in ("llm", "stt")] == [1, 1]
        await refused_ws(server)  # the llm pool is full
        async with httpx.AsyncClient(base_url=server.url, headers=HEADERS) as http:
            resp = await http.post("/v1/realtime/calls", content=b"v=0\r\n", headers={"Content-Type": "application/sdp"})
        assert_openai_error(resp, 429, "model_capacity_exceeded")
        assert resp.headers["Retry-After"] == str(RETRY_AFTER_S)
        async with connect(ws_url(server, "intent=transcription"), additional_headers=HEADERS) as transcribing:
            await ws_event(transcribing, "session.created")  # only speech-to-text: its pool has room
            assert await leases(server, "stt") == 2
            await refused_ws(server, "intent=transcription")  # now that one is full too
    finally:
        await call.close()
    await wait_for(lambda: _no_leases(server), timeout=15, what="the call's and the session's leases given back")
    async with connect(ws_url(server), additional_headers=HEADERS) as again:
        await ws_event(again, "session.created")
        assert await leases(server, "llm") == 1
    await wait_for(lambda: _no_leases(server), timeout=15, what="the session's lease given back")


async def _no_leases(srv) -> bool:
    return [await leases(srv, s) for s in ("llm", "stt")] == [0, 0]


async def test_without_a_limit_nothing_is_counted():
    settings = server_settings(engine="echo", api_keys=[KEY])
    async with embedded_server(settings) as srv:
        assert srv.state.health.pools is None
        async with connect(ws_url(srv), additional_headers=HEADERS) as ws:
            await ws_event(ws, "session.created")
