"""A real aiortc peer calls the server: signaling encodings, events on `oai-events`, audio."""

import asyncio
import json
import re

import httpx
import pytest

from openrealtime.client.rtc import RealtimeRtcClient
from tests.support import server_settings, speechlike, wait_for


@pytest.mark.parametrize("encoding", ["multipart", "sdp", "json"])
async def test_encodings_and_session_created(echo_server, encoding):
    session = {"type": "realtime", "instructions": "Hello there.", "audio": {"output": {"voice": "marin"}}}
    client = RealtimeRtcClient(echo_server.url, session=None if encoding == "sdp" else session, encoding=encoding)
    resp = await client.connect()
    assert resp.status_code == 201, resp.text
    assert re.fullmatch(r"rtc_[0-9a-f]{32}", client.call_id)
    created = await client.next_event()
    assert created["type"] == "session.created", "session.created is the first event"
    assert re.fullmatch(r"event_[A-Za-z0-9]{21}", created["event_id"])
    s = created["session"]
    assert s["object"] == "realtime.session" and re.fullmatch(r"sess_[A-Za-z0-9]{21}", s["id"])
    assert s["expires_at"] > 0
    assert s["audio"]["input"]["turn_detection"]["silence_duration_ms"] > 0
    assert s["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    if encoding != "sdp":
        assert s["instructions"] == "Hello there." and s["audio"]["output"]["voice"] == "marin"
    await client.close()


async def test_typed_multipart_parts_and_model_query(echo_server):
    client = RealtimeRtcClient(echo_server.url)
    await client.pc.setLocalDescription(await client.pc.createOffer())
    async with httpx.AsyncClient() as http:
        r = await http.post(echo_server.url + "/v1/realtime/calls", headers={"Authorization": "Bearer k"}, files={
            "sdp": ("offer.sdp", client.pc.localDescription.sdp, "application/sdp"),
            "session": ("s.json", json.dumps({"type": "realtime", "model": "gpt-realtime-mini"}), "application/json"),
        })
        assert r.status_code == 201, r.text
        r2 = await http.post(echo_server.url + "/v1/realtime/calls/" + r.headers["location"].split("/")[-1] + "/hangup",
                             headers={"Authorization": "Bearer k"})
        assert r2.status_code == 200
    await client.close()


async def test_events_and_errors(echo_server):
    client = RealtimeRtcClient(echo_server.url, session={"type": "realtime"})
    await client.connect()
    await client.next_event("session.created")

    client.send({"type": "session.update", "event_id": "ev_1",
                 "session": {"type": "realtime", "instructions": "Be brief.",
                             "audio": {"input": {"turn_detection": None}}}})
    updated = await client.next_event("session.updated")
    assert updated["session"]["instructions"] == "Be brief."
    assert updated["session"]["audio"]["input"]["turn_detection"] is None

    client.channel.send("{this is not json")
    err = await client.next_event("error")
    assert err["error"]["type"] == "invalid_request_error" and err["error"]["code"] == "invalid_json"

    client.send({"event_id": "ev_2"})
    err = await client.next_event("error")
    assert err["error"]["code"] == "invalid_event" and err["error"]["event_id"] == "ev_2"

    client.send({"type": "scooby.dooby.doo", "event_id": "ev_3"})
    err = await client.next_event("error")
    assert err["error"]["code"] == "invalid_value" and err["error"]["param"] == "type"
    assert err["error"]["event_id"] == "ev_3"

    client.send({"type": "session.update", "event_id": "ev_4",
                 "session": {"type": "realtime", "audio": {"output": {"speed": 3}}}})
    err = await client.next_event("error")
    assert err["error"]["param"] == "session.audio.output.speed" and err["error"]["event_id"] == "ev_4"

    big = json.dumps({"type": "session.update", "session": {"type": "realtime", "instructions": "x" * 300_000}})
    # a misbehaving peer ignores our advertised max-message-size (aiortc would refuse to send it)
    client.pc.sctp._remote_max_message_size = 1 << 30
    client.channel.send(big)
    err = await client.next_event("error")
    assert err["error"]["code"] == "message_too_large"

    # the session goes on after all of that
    client.send({"type": "session.update", "session": {"type": "realtime", "instructions": "Still fine."}})
    assert (await client.next_event("session.updated"))["session"]["instructions"] == "Still fine."
    await client.close()


async def test_echo_audio_and_hangup(echo_server):
    client = RealtimeRtcClient(echo_server.url, session={"type": "realtime"})
    await client.connect()
    await client.next_event("session.created")
    client.mic.play(speechlike(1.0).tobytes())
    call = echo_server.state.calls.get(client.call_id)
    await wait_for(lambda: client.audio.voiced_frames > 10, 10, interval=0.05,
                   what="the echo came back on the server's track")
    assert call.inbound.voiced_frames > 10, "the server decoded our audio"

    async with httpx.AsyncClient() as http:
        r = await http.post(f"{echo_server.url}/v1/realtime/calls/{client.call_id}/hangup",
                            headers={"Authorization": "Bearer x"})
    assert r.status_code == 200
    await asyncio.wait_for(call.closed.wait(), 5)
    assert echo_server.state.calls.get(client.call_id) is None
    assert call.stats.end_reason == "hangup"
    await client.close()


async def test_connect_timeout_reaps_call():
    from openrealtime.api.embedded import embedded_server

    async with embedded_server(server_settings(engine="echo", connect_timeout_s=0.5)) as server:
        client = RealtimeRtcClient(server.url)
        await client.pc.setLocalDescription(await client.pc.createOffer())
        async with httpx.AsyncClient() as http:  # POST the offer but never apply the answer
            r = await http.post(server.url + "/v1/realtime/calls", headers={"Authorization": "Bearer x"},
                                files={"sdp": (None, client.pc.localDescription.sdp)})
        call = server.state.calls.get(r.headers["location"].split("/")[-1])
        await asyncio.wait_for(call.closed.wait(), 5)
        assert call.stats.end_reason == "connect_timeout"
        assert len(server.state.calls) == 0
        await client.close()


async def test_max_duration_ends_call_with_error():
    from openrealtime.api.embedded import embedded_server

    async with embedded_server(server_settings(engine="echo", max_call_duration_s=1.5)) as server:
        client = RealtimeRtcClient(server.url)
        await client.connect()
        await client.next_event("session.created")
        err = await client.next_event("error", timeout=5)
        assert err["error"]["code"] == "session_expired"
        call = server.state.calls.get(client.call_id) or None
        if call is not None:
            await asyncio.wait_for(call.closed.wait(), 5)
        await client.close()
