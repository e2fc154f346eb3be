"""Ephemeral client secrets: minting, validation, use on /v1/realtime/calls, expiry."""

import time

import httpx
import pytest

from openrealtime.client.rtc import RealtimeRtcClient

from tests.support import assert_openai_error


async def mint(server, body, key="test"):
    async with httpx.AsyncClient() as http:
        return await http.post(server.url + "/v1/realtime/client_secrets", json=body,
                               headers={"Authorization": f"Bearer {key}"})


async def test_mint_defaults(echo_server):
    before = int(time.time())
    r = await mint(echo_server, {"session": {"type": "realtime", "instructions": "Be terse."}})
    after = int(time.time())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["value"].startswith("ek_") and len(body["value"]) == 35
    assert before + 600 <= body["expires_at"] <= after + 600
    session = body["session"]
    assert session["object"] == "realtime.session" and session["id"].startswith("sess_")
    assert session["instructions"] == "Be terse."
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"


@pytest.mark.parametrize("body,param", [
    ({"expires_after": {"seconds": 5}}, "expires_after.seconds"),
    ({"expires_after": {"seconds": 7201}}, "expires_after.seconds"),
    ({"session": {"type": "realtime", "tool_choice": "sometimes"}}, None),
    ({"session": {"type": "bogus"}}, "session.type"),
    ({"surprise": 1}, "surprise"),
])
async def test_mint_invalid(echo_server, body, param):
    err = assert_openai_error(await mint(echo_server, body), 400)
    if param:
        assert err["param"] == param


async def test_secret_applies_session_and_expires(echo_server):
    body = (await mint(echo_server, {"expires_after": {"seconds": 10},
                                     "session": {"type": "realtime", "instructions": "From the secret."}})).json()
    client = RealtimeRtcClient(echo_server.url, api_key=body["value"], encoding="sdp")
    resp = await client.connect()
    assert resp.status_code == 201, resp.text
    created = await client.next_event("session.created")
    assert created["session"]["instructions"] == "From the secret."
    await client.close()
    # an expired secret is refused
    (await echo_server.state.store.get(body["value"])).expires_at = int(time.time()) - 1
    client2 = RealtimeRtcClient(echo_server.url, api_key=body["value"], encoding="sdp")
    resp = await client2.connect()
    assert_openai_error(resp, 401, "invalid_api_key")
    await client2.close()


async def test_ephemeral_key_cannot_mint(echo_server):
    body = (await mint(echo_server, {})).json()
    assert_openai_error(await mint(echo_server, {}, key=body["value"]), 401)
