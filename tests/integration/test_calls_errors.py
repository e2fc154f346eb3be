"""Bad input on the signaling routes: always a 4xx in OpenAI's error shape, never a 500,
and a call already in progress is not affected."""

import json
from pathlib import Path

import httpx
import pytest

from openrealtime.api.embedded import embedded_server
from openrealtime.client.rtc import RealtimeRtcClient
from openrealtime.config import Settings
from tests.support import assert_openai_error, server_settings

OFFER = (Path(__file__).parent.parent / "fixtures" / "chromium-156-offer.sdp").read_text()
AUTH = {"Authorization": "Bearer test"}


def sdp_post(server, content: bytes | str, ctype: str = "application/sdp", headers=AUTH):
    return httpx.post(server.url + "/v1/realtime/calls", content=content,
                      headers={**headers, "Content-Type": ctype}, timeout=10)


BAD_OFFERS = {
    "empty": "",
    "garbage": "hello world",
    "not_sdp_lines": "v=0\r\nthis is not sdp\r\n",
    "no_bundle": OFFER.replace("a=group:BUNDLE 0 1 2\r\n", "").replace("a=group:BUNDLE 0 1 2\n", ""),
    "no_audio": OFFER.split("m=audio")[0] + "m=video" + OFFER.split("m=video")[1],
    "no_fingerprint": "\n".join(ln for ln in OFFER.splitlines() if not ln.startswith("a=fingerprint")),
}


@pytest.fixture
async def live_call(echo_server):
    client = RealtimeRtcClient(echo_server.url, session={"type": "realtime"})
    resp = await client.connect()
    assert resp.status_code == 201
    await client.next_event("session.created")
    yield client
    await client.close()


async def assert_still_alive(client: RealtimeRtcClient):
    client.send({"type": "session.update", "session": {"type": "realtime", "instructions": "still here"}})
    event = await client.next_event("session.updated")
    assert event["session"]["instructions"] == "still here"


@pytest.mark.parametrize("name", sorted(BAD_OFFERS))
async def test_bad_offers(echo_server, live_call, name):
    resp = await httpx.AsyncClient().post(echo_server.url + "/v1/realtime/calls", content=BAD_OFFERS[name],
                                          headers={**AUTH, "Content-Type": "application/sdp"})
    err = assert_openai_error(resp, 400)
    assert err["type"] == "invalid_request_error"
    assert err["code"] in ("invalid_offer", "missing_required_parameter")
    await assert_still_alive(live_call)


async def test_body_errors(echo_server, live_call):
    async with httpx.AsyncClient(timeout=10) as http:
        url = echo_server.url + "/v1/realtime/calls"
        r = await http.post(url, content=b"v=0\r\n\xff\xfe", headers={**AUTH, "Content-Type": "application/sdp"})
        assert_openai_error(r, 400, "invalid_encoding", "sdp")
        r = await http.post(url, content=b"v=0\r\n" + b"a" * (1024 * 1024 + 10),
                            headers={**AUTH, "Content-Type": "application/sdp"})
        assert_openai_error(r, 413, "request_too_large")
        r = await http.post(url, content=OFFER, headers={**AUTH, "Content-Type": "text/plain"})
        assert_openai_error(r, 415, "unsupported_media_type")
        r = await http.post(url, headers=AUTH, files={"sdp": (None, OFFER), "session": (None, "{not json")})
        assert_openai_error(r, 400, "invalid_json", "session")
        r = await http.post(url, headers=AUTH, files={"session": (None, "{}")})
        assert_openai_error(r, 400, "missing_required_parameter", "sdp")
        bad_session = {"type": "realtime", "audio": {"output": {"speed": 7}}}
        r = await http.post(url, headers=AUTH, files={"sdp": (None, OFFER), "session": (None, json.dumps(bad_session))})
        assert_openai_error(r, 400, "invalid_value", "session.audio.output.speed")
        r = await http.post(url, headers=AUTH, files={"sdp": (None, OFFER),
                                                      "session": (None, json.dumps({"type": "realtime", "nope": 1}))})
        assert_openai_error(r, 400, "unknown_parameter", "session.nope")
        r = await http.post(url, headers=AUTH, json={"sdp": 5})
        assert_openai_error(r, 400, "missing_required_parameter", "sdp")
        r = await http.post(url, headers=AUTH, content=b"{", )
        assert r.status_code in (400, 415)
        r = await http.post(url + "/rtc_0123/hangup", headers=AUTH)
        assert_openai_error(r, 404, "call_not_found")
    await assert_still_alive(live_call)


async def test_auth_with_keys():
    async with embedded_server(server_settings(engine="echo", api_keys=["sk-right"])) as server:
        async with httpx.AsyncClient(timeout=10) as http:
            url = server.url + "/v1/realtime/calls"
            r = await http.post(url, content=OFFER, headers={"Content-Type": "application/sdp"})
            assert_openai_error(r, 401, "invalid_api_key")
            r = await http.post(url, content=OFFER, headers={"Authorization": "Bearer sk-wrong",
                                                             "Content-Type": "application/sdp"})
            assert_openai_error(r, 401, "invalid_api_key")
            r = await http.post(url, content=OFFER, headers={"Authorization": "Bearer ek_unknown",
                                                             "Content-Type": "application/sdp"})
            assert_openai_error(r, 401, "invalid_api_key")
            r = await http.post(server.url + "/v1/realtime/client_secrets", json={},
                                headers={"Authorization": "Bearer sk-wrong"})
            assert_openai_error(r, 401)
            r = await http.post(url, content=OFFER, headers={"Authorization": "Bearer sk-right",
                                                             "Content-Type": "application/sdp"})
            assert r.status_code == 201


def test_public_bind_without_keys_refused():
    settings = Settings(host="0.0.0.0", port=0)
    with pytest.raises(SystemExit, match="--api-key"):
        settings.check()
    Settings(host="0.0.0.0", port=0, insecure_no_auth=True).check()
    Settings(host="0.0.0.0", port=0, api_keys=["k"]).check()


async def test_a_custom_voice_the_server_does_not_have_is_refused_when_the_call_is_made():
    """`audio.output.voice: {"id": ...}` (2026) must name one of the server's voices (session/voices.py):
    the call and a client secret are refused at once with 400 naming the field."""
    from tests.support import fake_stack
    from tests.unit.test_fields_2026 import CatalogTts

    stack = fake_stack()
    stack.tts = CatalogTts()
    session = {"type": "realtime", "audio": {"output": {"voice": {"id": "voice_unknown"}}}}
    async with embedded_server(server_settings(engine="local"), models=stack) as server:
        async with httpx.AsyncClient(timeout=10) as http:
            reply = await http.post(server.url + "/v1/realtime/calls", headers=AUTH,
                                    files={"sdp": (None, OFFER), "session": (None, json.dumps(session))})
            assert_openai_error(reply, 400, param="session.audio.output.voice")
            minted = await http.post(server.url + "/v1/realtime/client_secrets", headers=AUTH,
                                     json={"session": session})
            assert_openai_error(minted, 400, param="session.audio.output.voice")
            session["audio"]["output"]["voice"] = {"id": "en_US-joe-medium"}
            minted = await http.post(server.url + "/v1/realtime/client_secrets", headers=AUTH,
                                     json={"session": session})
            assert minted.status_code == 200, minted.text
