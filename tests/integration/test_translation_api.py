"""The translation routes' edges on a server without models (engine echo): client secrets are minted and
validated like /v1/realtime/client_secrets, each kind of `ek_` secret opens only its own kind of session,
and a refused translation handshake is an HTTP reply in the OpenAI error shape."""

import json

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.support import assert_openai_error

SECRETS = "/v1/realtime/translations/client_secrets"


async def post(server, path: str, body, key: str = "test") -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(server.url + path, json=body, headers={"Authorization": f"Bearer {key}"})


async def handshake_error(server, query: str, key: str = "test") -> tuple[int, dict]:
    url = server.url.replace("http://", "ws://") + "/v1/realtime/translations" + query
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, additional_headers={"Authorization": f"Bearer {key}"}):
            pass
    return info.value.response.status_code, json.loads(info.value.response.body)


async def test_mint_a_translation_secret(echo_server):
    r = await post(echo_server, SECRETS, {"session": {"model": "gpt-realtime-translate",
                                                      "audio": {"output": {"language": "fr"}}},
                                          "expires_after": {"anchor": "created_at", "seconds": 60}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["value"].startswith("ek_") and set(body) == {"value", "expires_at", "session"}
    session = body["session"]
    assert session["type"] == "translation" and session["id"].startswith("sess_")
    assert session["audio"]["output"]["language"] == "fr" and session["output_modalities"] == ["text"]
    assert "French" in session["notice"]  # the echo server has no voice at all


@pytest.mark.parametrize("body,param", [
    ({}, "session"),
    ({"session": {"audio": {}}}, "session.model"),
    ({"session": {"model": "m", "type": "realtime"}}, "session.type"),
    ({"session": {"model": "m", "audio": {"output": {"language": 7}}}}, "session.audio.output.language"),
    ({"session": {"model": "m"}, "expires_after": {"seconds": 5}}, "expires_after.seconds"),
])
async def test_mint_invalid(echo_server, body, param):
    assert assert_openai_error(await post(echo_server, SECRETS, body), 400)["param"] == param


async def test_each_secret_opens_only_its_own_kind_of_session(echo_server):
    translation = (await post(echo_server, SECRETS, {"session": {"model": "m"}})).json()["value"]
    realtime = (await post(echo_server, "/v1/realtime/client_secrets", {"session": {"type": "realtime"}})).json()["value"]
    assert_openai_error(await post(echo_server, SECRETS, {"session": {"model": "m"}}, key=translation), 401)
    status, body = await handshake_error(echo_server, "?model=m", key=realtime)
    assert status == 401 and "/v1/realtime/client_secrets" in body["error"]["message"]
    url = echo_server.url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, additional_headers={"Authorization": f"Bearer {translation}"}):
            pass
    assert info.value.response.status_code == 401
    calls = await post(echo_server, "/v1/realtime/calls", {"sdp": "v=0\r\n"}, key=translation)
    assert_openai_error(calls, 401, "invalid_api_key")


async def test_refused_handshakes(echo_server):
    assert (await handshake_error(echo_server, ""))[1]["error"]["param"] == "model"
    assert (await handshake_error(echo_server, "?model=m&intent=transcription"))[1]["error"]["param"] == "intent"
    status, body = await handshake_error(echo_server, "?model=m")  # the echo server has no models
    assert status == 501 and body["error"]["code"] == "translation_unavailable"
    assert (await handshake_error(echo_server, "?model=m", key="ek_unknown"))[0] == 401
