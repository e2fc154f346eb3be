"""openai-python (the official SDK, unmodified) against our server: `realtime.connect()` over the
WebSocket (session.update, text turn, spoken turn from a WAV, function-call round trip), plus
`client_secrets.create`, `calls.create` (WebRTC signaling), the `call_id` sideband and `calls.hangup`.
Every server event the SDK receives is also validated against the SDK's own types."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from openai import AsyncOpenAI
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from tests.compat.conftest import KEY, pcm24k_from_wav
from tests.support import piper_wav, running_mcp_server

SERVER_EVENT = TypeAdapter(RealtimeServerEvent)
INSTRUCTIONS = "You are a helpful assistant. Answer in one short sentence."
WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Get the current weather for a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def client_for(server) -> AsyncOpenAI:
    ws_base = server.url.replace("http://", "ws://") + "/v1"
    return AsyncOpenAI(base_url=server.url + "/v1", api_key=KEY, websocket_base_url=ws_base, max_retries=0)


async def next_of(conn, type_: str, seen: list, timeout: float = 240.0):
    """Receive until an event of `type_` (every event is checked against the SDK's types)."""
    async with asyncio.timeout(timeout):
        while True:
            raw = await conn.recv_bytes()
            data = json.loads(raw)
            SERVER_EVENT.validate_python(data)  # strict: our wire shapes match openai-python's models
            event = conn.parse_event(raw)
            seen.append(event)
            assert event.type != "error", data
            if event.type == type_:
                return event


async def test_websocket_session_text_audio_and_function_call(compat_server, model_stack, tmp_path):
    client = client_for(compat_server)
    seen: list = []
    async with client.realtime.connect(model="gpt-realtime") as conn:
        created = await next_of(conn, "session.created", seen)
        assert created.session.model == "gpt-realtime"
        await conn.session.update(session={
            "type": "realtime", "instructions": INSTRUCTIONS, "output_modalities": ["text"],
            "audio": {"input": {"transcription": {"model": "whisper-1",  # a vocabulary hint, as the API allows:
                                                  "prompt": "Questions about capital cities of countries."},
                                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}},
            "tools": [WEATHER_TOOL], "tool_choice": "auto"})
        updated = await next_of(conn, "session.updated", seen)
        assert updated.session.instructions == INSTRUCTIONS and updated.session.tools[0].name == "get_weather"

        # 1. a text turn
        await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Say hello in three words."}]})
        await conn.response.create(response={"tool_choice": "none"})
        done = await next_of(conn, "response.done", seen)
        assert done.response.status == "completed"
        text = done.response.output[0].content[0].text
        assert text and any(e.type == "response.output_text.delta" for e in seen)

        # 2. a spoken turn: Piper speech appended as base64 PCM 24 kHz, server VAD commits, answer in audio
        await conn.session.update(session={"type": "realtime", "output_modalities": ["audio"]})
        await next_of(conn, "session.updated", seen)
        wav = piper_wav(model_stack, tmp_path / "q.wav", "What is the capital of France?")
        pcm = bytes(24 * 2 * 300) + pcm24k_from_wav(wav) + bytes(24 * 2 * 1200)
        for i in range(0, len(pcm), 9600):  # 200 ms per event
            await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i:i + 9600]).decode())
        seen.clear()
        transcript = await next_of(conn, "conversation.item.input_audio_transcription.completed", seen)
        assert "capital" in transcript.transcript.lower(), transcript.transcript
        done = await next_of(conn, "response.done", seen)
        answer = done.response.output[0].content[0].transcript
        assert "paris" in answer.lower(), answer
        audio = b"".join(base64.b64decode(e.delta) for e in seen if e.type == "response.output_audio.delta")
        assert len(audio) > 24000 * 2 * 0.3, "at least 0.3 s of spoken answer as response.output_audio.delta"
        types = [e.type for e in seen]
        assert types.index("input_audio_buffer.speech_started") < types.index("input_audio_buffer.committed")

        # 3. a function call round trip (the real model decides to call the tool)
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await next_of(conn, "session.updated", seen)
        await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "What is the weather in Paris right now?"}]})
        await conn.response.create(response={"tool_choice": "required"})
        done = await next_of(conn, "response.done", seen)
        call = done.response.output[0]
        assert call.type == "function_call" and call.name == "get_weather", done
        assert "paris" in json.loads(call.arguments)["city"].lower()
        await conn.conversation.item.create(item={"type": "function_call_output", "call_id": call.call_id,
                                                  "output": json.dumps({"temp_c": 21, "sky": "sunny"})})
        await conn.response.create()
        done = await next_of(conn, "response.done", seen)
        final = done.response.output[0]
        assert final.type == "message", done
        assert "21" in final.content[0].text or "sunny" in final.content[0].text.lower(), final.content[0].text


async def test_websocket_mcp_tool_runs_on_the_server(compat_server):
    """An MCP server as a session tool: listed, called by the real model, run by our server; every
    MCP event and item the SDK receives validates against its own types."""
    client = client_for(compat_server)
    seen: list = []
    with running_mcp_server() as url:
        async with client.realtime.connect(model="gpt-realtime") as conn:
            await next_of(conn, "session.created", seen)
            await conn.session.update(session={
                "type": "realtime", "output_modalities": ["text"], "instructions": INSTRUCTIONS,
                "tools": [{"type": "mcp", "server_label": "weather", "server_url": url,
                           "allowed_tools": ["get_weather"], "require_approval": "never"}]})
            listed = await next_of(conn, "mcp_list_tools.completed", seen)
            item = next(e.item for e in seen if e.type == "conversation.item.added" and e.item.type == "mcp_list_tools")
            assert item.id == listed.item_id
            await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "What is the weather in Paris right now?"}]})
            await conn.response.create(response={"tool_choice": {"type": "mcp", "server_label": "weather"}})
            done = await next_of(conn, "response.done", seen)
            call = done.response.output[0]
            assert call.type == "mcp_call" and call.name == "get_weather" and "sunny in Paris" in call.output, done
            assert any(e.type == "response.mcp_call.completed" and e.item_id == call.id for e in seen)
            await conn.response.create()
            done = await next_of(conn, "response.done", seen)
            answer = done.response.output[0].content[0].text.lower()
            assert any(word in answer for word in ("21", "sunny", "degrees")), answer


async def test_client_secret_webrtc_call_sideband_and_hangup(compat_server):
    client = client_for(compat_server)
    secret = await client.realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 600},
        session={"type": "realtime", "instructions": "Be brief.", "output_modalities": ["text"]})
    assert secret.value.startswith("ek_") and secret.session.instructions == "Be brief."

    # calls.create posts the offer (multipart sdp + session) and gets the answer; the call id is in Location
    pc = RTCPeerConnection()
    channel = pc.createDataChannel("oai-events")
    received: asyncio.Queue = asyncio.Queue()
    channel.on("message", lambda m: received.put_nowait(json.loads(m)))
    pc.addTransceiver("audio", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    try:
        raw = await client.realtime.calls.with_raw_response.create(
            sdp=pc.localDescription.sdp, session={"type": "realtime", "instructions": "Be brief."})
        assert raw.http_response.status_code == 201
        call_id = raw.headers["location"].rsplit("/", 1)[-1]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=raw.http_response.text, type="answer"))
        first = await asyncio.wait_for(received.get(), 15)
        assert first["type"] == "session.created"

        # the SDK's sideband: connect(call_id=...) sees the call's events and drives its engine
        seen: list = []
        async with client.realtime.connect(call_id=call_id) as side:
            created = await next_of(side, "session.created", seen, timeout=10)
            assert created.session.instructions == "Be brief."
            await side.session.update(session={"type": "realtime", "instructions": "From the sideband."})
            updated = await next_of(side, "session.updated", seen, timeout=10)
            assert updated.session.instructions == "From the sideband."
            while (event := await asyncio.wait_for(received.get(), 10))["type"] != "session.updated":
                pass
            assert event["session"]["instructions"] == "From the sideband."  # the WebRTC client saw it too

            await client.realtime.calls.hangup(call_id)
            with pytest.raises(Exception):  # the sideband closes when the call ends
                await asyncio.wait_for(side.recv(), 10)
        assert compat_server.state.calls.get(call_id) is None
    finally:
        await pc.close()
