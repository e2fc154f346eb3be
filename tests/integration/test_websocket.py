"""The Realtime WebSocket interface over a real socket, with scripted models (fast): auth and
subprotocols, audio formats, truncation, bad frames, slow clients, expiry, sideband, beta shapes."""

import asyncio
import base64
import json

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from openrealtime.api import ws_transport
from openrealtime.api.embedded import embedded_server
from openrealtime.client.rtc import RealtimeRtcClient
from tests.support import ScriptedLlm, fake_stack, server_settings, silence, speech

KEY = "sk-test-key"


@pytest.fixture
async def server():
    async with embedded_server(server_settings(engine="local", api_keys=[KEY]),
                               models=fake_stack(llm=ScriptedLlm("Paris is the capital of France."))) as srv:
        yield srv


def ws_url(srv, query: str = "model=gpt-realtime") -> str:
    return srv.url.replace("http://", "ws://") + "/v1/realtime" + (f"?{query}" if query else "")


def auth(key: str = KEY) -> dict:
    return {"Authorization": f"Bearer {key}"}


async def recv(ws, type_: str | None = None, timeout: float = 10.0) -> dict:
    """The next event (of `type_`, skipping others)."""
    async with asyncio.timeout(timeout):
        while True:
            event = json.loads(await ws.recv())
            if type_ is None or event["type"] == type_:
                return event


async def collect(ws, until: str, timeout: float = 10.0) -> list[dict]:
    events = []
    async with asyncio.timeout(timeout):
        while not events or events[-1]["type"] != until:
            events.append(json.loads(await ws.recv()))
    return events


def send(ws, **event):
    return ws.send(json.dumps(event))


async def handshake_error(url: str, **kw) -> tuple[int, dict]:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, **kw):
            pass
    response = info.value.response
    return response.status_code, json.loads(response.body)


# ---- handshake & auth ------------------------------------------------------------------------------
async def test_bearer_session_created_with_query_model(server):
    async with connect(ws_url(server, "model=gpt-realtime-mini"), additional_headers=auth()) as ws:
        created = await recv(ws)
        assert created["type"] == "session.created"
        assert created["session"]["model"] == "gpt-realtime-mini"
        assert created["session"]["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
        await send(ws, type="session.update", session={"type": "realtime", "instructions": "Be brief."})
        updated = await recv(ws)
        assert updated["type"] == "session.updated" and updated["session"]["instructions"] == "Be brief."


async def test_browser_subprotocols_authenticate_and_realtime_is_echoed(server):
    protocols = ["realtime", f"openai-insecure-api-key.{KEY}", "openai-organization.org_1", "openai-project.proj_1",
                 "openai-agents-sdk.0.20.0"]
    async with connect(ws_url(server), subprotocols=protocols) as ws:
        assert ws.subprotocol == "realtime"
        assert (await recv(ws))["type"] == "session.created"


@pytest.mark.parametrize("headers,protocols", [
    ({}, None),
    ({"Authorization": "Bearer wrong"}, None),
    ({}, ["realtime", "openai-insecure-api-key.wrong"]),
    ({"Authorization": "Bearer ek_0123456789abcdef0123456789abcdef"}, None),
])
async def test_bad_auth_is_a_401_in_openai_shape(server, headers, protocols):
    status, body = await handshake_error(ws_url(server), additional_headers=headers, subprotocols=protocols)
    assert status == 401
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == "invalid_api_key"


async def test_ephemeral_key_applies_its_stored_session(server):
    async with httpx.AsyncClient() as http:
        minted = (await http.post(server.url + "/v1/realtime/client_secrets", headers=auth(), json={
            "session": {"type": "realtime", "instructions": "Speak like a pirate.",
                        "audio": {"output": {"format": {"type": "audio/pcmu"}}}}})).json()
    protocols = ["realtime", "openai-insecure-api-key." + minted["value"]]
    async with connect(ws_url(server, ""), subprotocols=protocols) as ws:
        session = (await recv(ws, "session.created"))["session"]
        assert session["instructions"] == "Speak like a pirate."
        assert session["audio"]["output"]["format"] == {"type": "audio/pcmu"}


# ---- frames ----------------------------------------------------------------------------------------
async def test_bad_frames_get_error_events_and_the_socket_stays_open(server):
    async with connect(ws_url(server), additional_headers=auth(), max_size=None) as ws:
        await recv(ws, "session.created")
        await ws.send(b'{"type": "session.update"}')
        assert (await recv(ws, "error"))["error"]["code"] == "invalid_frame_type"
        await ws.send('{"type": "session.update", ')
        assert (await recv(ws, "error"))["error"]["code"] == "invalid_json"
        await send(ws, type="no.such.event", event_id="evt_1")
        err = (await recv(ws, "error"))["error"]
        assert err["code"] == "invalid_value" and err["event_id"] == "evt_1"
        big = json.dumps({"type": "input_audio_buffer.append", "event_id": "evt_big", "audio": "A" * (16 << 20)})
        await ws.send(big)
        err = (await recv(ws, "error", timeout=30))["error"]
        assert err["code"] == "message_too_large" and err["event_id"] == "evt_big"
        await send(ws, type="session.update", session={"type": "realtime", "instructions": "still here"})
        assert (await recv(ws, "session.updated"))["session"]["instructions"] == "still here"


# ---- audio -----------------------------------------------------------------------------------------
def _g711(pcm: bytes, law: str) -> bytes:
    from openrealtime.audio.convert import g711_encode
    return g711_encode(pcm, law)


@pytest.mark.parametrize("fmt", ["audio/pcm", "audio/pcmu", "audio/pcma"])
async def test_audio_turn_in_each_format(server, fmt):
    format_obj = {"type": fmt, "rate": 24000} if fmt == "audio/pcm" else {"type": fmt}
    async with connect(ws_url(server), additional_headers=auth()) as ws:
        await recv(ws, "session.created")
        await send(ws, type="session.update", session={"type": "realtime", "audio": {
            "input": {"format": format_obj, "turn_detection": None, "transcription": {"model": "whisper-1"}},
            "output": {"format": format_obj}}})
        await recv(ws, "session.updated")
        pcm = speech(600)
        data = pcm if fmt == "audio/pcm" else _g711(pcm, fmt.split("/")[1])
        for i in range(0, len(data), 4800):
            await send(ws, type="input_audio_buffer.append", audio=base64.b64encode(data[i:i + 4800]).decode())
        await send(ws, type="input_audio_buffer.commit")
        committed = await recv(ws, "input_audio_buffer.committed")
        transcript = await recv(ws, "conversation.item.input_audio_transcription.completed")
        assert transcript["item_id"] == committed["item_id"]
        await send(ws, type="response.create")
        events = await collect(ws, "response.done")
        audio = b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta")
        done = events[-1]["response"]
        assert done["status"] == "completed"
        assert done["output"][0]["content"][0]["transcript"] == "Paris is the capital of France."
        seconds = len(audio) / (48000 if fmt == "audio/pcm" else 8000)
        assert 0.2 < seconds < 2.0, (fmt, len(audio))  # ToneTts: 60 ms per word
        assert not any(e["type"].startswith("output_audio_buffer.") for e in events)  # WebRTC only


async def test_client_truncate_is_honoured_exactly(server):
    async with connect(ws_url(server), additional_headers=auth()) as ws:
        await recv(ws, "session.created")
        await send(ws, type="conversation.item.create", item={
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Capital of France?"}]})
        await send(ws, type="response.create")
        events = await collect(ws, "response.done")
        item_id = events[-1]["response"]["output"][0]["id"]
        audio_ms = sum(len(base64.b64decode(e["delta"])) for e in events
                       if e["type"] == "response.output_audio.delta") // 48
        await send(ws, type="conversation.item.truncate", item_id=item_id, content_index=0,
                   audio_end_ms=audio_ms + 500, event_id="evt_long")
        err = (await recv(ws, "error"))["error"]
        assert err["param"] == "audio_end_ms" and err["event_id"] == "evt_long"
        await send(ws, type="conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=120)
        truncated = await recv(ws, "conversation.item.truncated")
        assert truncated == {**truncated, "item_id": item_id, "content_index": 0, "audio_end_ms": 120}
        await send(ws, type="conversation.item.retrieve", item_id=item_id)
        item = (await recv(ws, "conversation.item.retrieved"))["item"]
        assert len(base64.b64decode(item["content"][0]["audio"])) == 120 * 48


async def test_server_vad_turn_over_appended_audio(server):
    async with connect(ws_url(server), additional_headers=auth()) as ws:
        await recv(ws, "session.created")
        pcm = silence(300) + speech(700) + silence(900)
        for i in range(0, len(pcm), 960):  # 20 ms chunks, as a microphone would send
            await send(ws, type="input_audio_buffer.append", audio=base64.b64encode(pcm[i:i + 960]).decode())
        started = await recv(ws, "input_audio_buffer.speech_started")
        stopped = await recv(ws, "input_audio_buffer.speech_stopped")
        assert started["item_id"] == stopped["item_id"]
        done = await recv(ws, "response.done")
        assert done["response"]["status"] == "completed"


# ---- backpressure & lifetime -------------------------------------------------------------------------
async def test_a_client_that_stops_reading_is_closed_4001_without_stalling_others(server, monkeypatch):
    monkeypatch.setattr(ws_transport, "MAX_PENDING_BYTES", 2 * 1024 * 1024)
    text = "x" * 200_000
    async with connect(ws_url(server), additional_headers=auth(), max_queue=1, max_size=None) as slow, \
            connect(ws_url(server), additional_headers=auth()) as healthy:
        await recv(slow, "session.created")
        await recv(healthy, "session.created")
        await send(slow, type="conversation.item.create", item={
            "id": "item_big", "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
        for _ in range(400):  # ~80 MB of replies that `slow` never reads
            await send(slow, type="conversation.item.retrieve", item_id="item_big")
        await send(healthy, type="session.update", session={"type": "realtime", "instructions": "ok"})
        assert (await recv(healthy, "session.updated", timeout=5))["session"]["instructions"] == "ok"
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(30):
                while True:
                    await slow.recv()
        assert slow.close_code == 4001, slow.close_code


async def test_max_session_duration_closes_4000_after_an_error_event():
    async with embedded_server(server_settings(engine="local", max_call_duration_s=1.0),
                               models=fake_stack()) as srv:
        async with connect(ws_url(srv), additional_headers=auth("any")) as ws:
            await recv(ws, "session.created")
            err = await recv(ws, "error", timeout=5)
            assert err["error"]["code"] == "session_expired"
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 4000


# ---- sideband --------------------------------------------------------------------------------------
async def test_sideband_observes_and_drives_a_webrtc_call(server):
    rtc = RealtimeRtcClient(server.url, api_key=KEY, session={"type": "realtime", "output_modalities": ["text"]})
    assert (await rtc.connect()).status_code == 201
    await rtc.next_event("session.created")
    call = server.state.calls.get(rtc.call_id)
    url = ws_url(server, f"call_id={rtc.call_id}")
    before = call.engine.events.listeners
    try:
        async with connect(url, additional_headers=auth()) as side1, connect(url, additional_headers=auth()) as side2:
            for side in (side1, side2):
                created = await recv(side)
                assert created["type"] == "session.created" and created["session"]["id"] == call.engine.id
            assert call.engine.events.listeners == before + 2
            # the WebRTC client's events reach both sidebands
            rtc.send({"type": "session.update", "session": {"type": "realtime", "instructions": "From the browser."}})
            for side in (side1, side2):
                assert (await recv(side, "session.updated"))["session"]["instructions"] == "From the browser."
            # a sideband's events drive the same engine; everyone sees the outcome
            await send(side1, type="conversation.item.create", item={
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Capital of France?"}]})
            await send(side1, type="response.create")
            for side in (side1, side2):
                done = await recv(side, "response.done")
                assert done["response"]["output"][0]["content"][0]["text"] == "Paris is the capital of France."
            assert (await rtc.next_event("response.done"))["response"]["id"] == done["response"]["id"]
        await asyncio.sleep(0.2)
        assert call.engine.events.listeners == before  # both detached
        # hanging up the call closes its sidebands normally
        async with connect(url, additional_headers=auth()) as side:
            await recv(side, "session.created")
            async with httpx.AsyncClient() as http:
                assert (await http.post(f"{server.url}/v1/realtime/calls/{rtc.call_id}/hangup",
                                        headers=auth())).status_code == 200
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(side.recv(), 10)
            assert side.close_code == 1000
    finally:
        await rtc.close()


async def test_sideband_unknown_call_is_404_and_ephemeral_keys_are_refused(server):
    status, body = await handshake_error(ws_url(server, "call_id=rtc_u1_0000"), additional_headers=auth())
    assert status == 404 and body["error"]["code"] == "call_not_found"
    async with httpx.AsyncClient() as http:
        minted = (await http.post(server.url + "/v1/realtime/client_secrets", headers=auth(), json={})).json()
    status, _ = await handshake_error(ws_url(server, "call_id=rtc_u1_0000"), additional_headers=auth(minted["value"]))
    assert status == 401


# ---- beta ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["header", "subprotocol"])
async def test_beta_shapes(server, how):
    kw = ({"additional_headers": {**auth(), "OpenAI-Beta": "realtime=v1"}} if how == "header" else
          {"subprotocols": ["realtime", f"openai-insecure-api-key.{KEY}", "openai-beta.realtime-v1"]})
    async with connect(ws_url(server, "model=gpt-4o-realtime-preview"), **kw) as ws:
        session = (await recv(ws, "session.created"))["session"]
        assert session["input_audio_format"] == "pcm16" and session["modalities"] == ["text", "audio"]
        assert "audio" not in session and session["model"] == "gpt-4o-realtime-preview"
        assert (await recv(ws))["type"] == "conversation.created"
        await send(ws, type="session.update", session={
            "modalities": ["text"], "voice": "verse", "input_audio_format": "g711_ulaw",
            "output_audio_format": "g711_alaw", "temperature": 0.7, "max_response_output_tokens": 200,
            "turn_detection": None, "input_audio_transcription": {"model": "whisper-1"}, "instructions": "Be brief."})
        session = (await recv(ws, "session.updated"))["session"]
        assert session["modalities"] == ["text"] and session["voice"] == "verse"
        assert session["input_audio_format"] == "g711_ulaw" and session["output_audio_format"] == "g711_alaw"
        assert session["max_response_output_tokens"] == 200 and session["turn_detection"] is None
        await send(ws, type="conversation.item.create", item={
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Capital of France?"}]})
        await send(ws, type="response.create", response={"modalities": ["text"], "temperature": 0.6})
        events = await collect(ws, "response.done")
        types = [e["type"] for e in events]
        assert "conversation.item.created" in types and "conversation.item.added" not in types
        assert "conversation.item.done" not in types
        assert "response.text.delta" in types and "response.text.done" in types
        assert not any(t.startswith("response.output_") and "item" not in t for t in types), types
        done = events[-1]["response"]
        assert done["modalities"] == ["text"] and done["output"][0]["content"][0]["type"] == "text"
        # a beta assistant item with `text` content is accepted
        await send(ws, type="conversation.item.create", item={
            "type": "message", "role": "assistant", "content": [{"type": "text", "text": "Noted."}]})
        created = await recv(ws, "conversation.item.created")
        assert created["item"]["content"][0]["type"] == "text"


async def test_beta_webrtc_signaling_on_post_v1_realtime(server):
    rtc = RealtimeRtcClient(server.url, api_key=KEY, encoding="sdp")
    try:
        resp = await rtc.connect(path="/v1/realtime?model=gpt-4o-realtime-preview")
        assert resp.status_code == 201 and resp.headers["content-type"].startswith("application/sdp")
        assert resp.headers["location"].startswith("/v1/realtime/calls/rtc_")
        created = await rtc.next_event("session.created")
        assert created["session"]["modalities"] == ["text", "audio"] and "audio" not in created["session"]
        assert (await rtc.next_event())["type"] == "conversation.created"
        rtc.send({"type": "session.update", "session": {"modalities": ["text"], "instructions": "Be brief."}})
        assert (await rtc.next_event("session.updated"))["session"]["modalities"] == ["text"]
    finally:
        await rtc.close()
