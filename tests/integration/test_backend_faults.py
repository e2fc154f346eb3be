"""Remote model backends that fail, hang, drop or stall — at start and mid-session — against a real
server over real HTTP and WebSocket (tests/fault_backend.py is the misbehaving model server).

What must hold: `/readyz` says which backend is down and the server recovers by itself when it
answers again; a response whose backend fails ends with `response.done` status `failed` naming the
backend; the session stays open and the next turn works once the backend is back."""

import asyncio
import json

import httpx
import pytest
from websockets.asyncio.client import connect

from openrealtime.api.embedded import embedded_server
from tests.support.fault_backend import REPLY, FaultBackend
from tests.support import server_settings, wait_for, ws_event


@pytest.fixture
def backend():
    b = FaultBackend()
    yield b
    b.close()


def remote_settings(backend: FaultBackend, **overrides):
    """Every model stage on the fault backend (only Silero VAD is local); short backend timeouts."""
    values = dict(engine="local", profile="test", llm_url=backend.url, llm_model="fault-llm", stt_url=backend.url,
                  tts_url=backend.url,
                  backend_first_token_timeout_s=1.5, backend_stall_timeout_s=1.0)
    values.update(overrides)
    return server_settings(**values)




async def collect(ws, until: str, timeout: float = 20.0) -> list[dict]:
    events: list[dict] = []
    async with asyncio.timeout(timeout):
        while not events or events[-1]["type"] != until:
            events.append(json.loads(await ws.recv()))
    return events


async def ask(ws, text: str = "Say hello.", modality: str = "text") -> list[dict]:
    await ws.send(json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}))
    await ws.send(json.dumps({"type": "response.create", "response": {"output_modalities": [modality]}}))
    return await collect(ws, "response.done")


AUTH = {"Authorization": "Bearer sk-any"}  # a loopback server without keys accepts any bearer


def ws_url(server) -> str:
    return server.url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"


async def test_backend_down_at_start_then_ready_by_itself(backend):
    backend.set(models="error")
    async with embedded_server(remote_settings(backend), wait_ready=False) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            async def degraded():
                r = await http.get("/readyz")
                return r if r.status_code == 503 and "returned 500" in r.json().get("reason", "") else None

            r = await wait_for(degraded, timeout=60, what="/readyz naming the llm backend")
            body = r.json()
            assert body["status"] == "degraded"
            assert backend.url in body["reason"] and "500" in body["reason"]
            assert (await http.get("/healthz")).json() == {"status": "degraded"}  # alive: 200
            refused = await http.post("/v1/realtime/calls", content="v=0\r\n",
                                      headers={"Content-Type": "application/sdp", **AUTH})
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "backend_unavailable"
            assert backend.url in refused.json()["error"]["message"]

            backend.set(models="ok", llm="error")  # listed, but its warm-up request fails: still not ready

            async def warmup_failed():
                r = await http.get("/readyz")
                return r.status_code == 503 and "chat/completions" in r.json()["reason"]
            await wait_for(warmup_failed, timeout=60, what="/readyz naming the failed warm-up")

            backend.set(llm="ok")  # the server answers again: ready without a restart

            async def ready():
                return (await http.get("/readyz")).status_code == 200
            await wait_for(ready, timeout=60, what="ready once the backend answers")
            assert (await http.get("/healthz")).json() == {"status": "ready"}
            assert "fault-llm" in server.state.models.description["llm"]

            # goes down again while serving: degraded, not ready, and back by itself
            backend.stop()

            async def down():
                r = await http.get("/readyz")
                return r.status_code == 503 and r.json()["status"] == "degraded"
            await wait_for(down, timeout=60, what="degraded once the backend stops answering")
            backend.start()
            await wait_for(ready, timeout=60, what="ready once the backend is back")


@pytest.mark.parametrize("fault, code, words", [
    ("hang", "backend_timeout", "sent no answer within 1.5 s"),
    ("stall", "backend_timeout", "stopped sending for 1 s"),
    ("keepalive", "backend_timeout", "sent no token within 1.5 s"),
    ("drop", "backend_error", "broke off"),
    ("error", "backend_error", "returned 500"),
    ("garbage", "backend_error", "without a finish_reason"),
])
async def test_llm_fault_mid_session_fails_the_response_and_the_session_goes_on(backend, fault, code, words):
    async with embedded_server(remote_settings(backend)) as server:
        async with connect(ws_url(server), additional_headers=AUTH) as ws:
            await ws_event(ws, "session.created")
            backend.set(llm=fault)
            events = await ask(ws)
            done = events[-1]["response"]
            assert done["status"] == "failed", done
            error = done["status_details"]["error"]
            assert error["code"] == code and error["type"] == "server_error"
            assert backend.url in error["message"] and words in error["message"], error["message"]
            assert (await ws_event(ws, "error"))["error"]["code"] == code  # follows response.done
            if fault in ("hang", "stall", "keepalive"):  # the abandoned request was closed, not left open
                await wait_for(_async(lambda: backend.disconnects["llm"] >= 1), timeout=10, what="request closed")

            backend.set(llm="ok")  # the backend is back: the very next turn works
            events = await ask(ws)
            done = events[-1]["response"]
            assert done["status"] == "completed"
            assert done["output"][0]["content"][0]["text"] == "".join(REPLY)


async def test_response_cancel_aborts_the_backend_request(backend):
    async with embedded_server(remote_settings(backend, backend_first_token_timeout_s=60)) as server:
        async with connect(ws_url(server), additional_headers=AUTH) as ws:
            await ws_event(ws, "session.created")
            backend.set(llm="hang")
            await ws.send(json.dumps({"type": "response.create", "response": {"output_modalities": ["text"]}}))
            await ws_event(ws, "response.created")
            await wait_for(_async(lambda: backend.count("llm") >= 1), timeout=10, what="request sent")
            await ws.send(json.dumps({"type": "response.cancel"}))
            done = await ws_event(ws, "response.done")
            assert done["response"]["status"] == "cancelled"
            await wait_for(_async(lambda: backend.disconnects["llm"] >= 1), timeout=10,
                           what="the backend request closed on cancel")


async def test_tts_failure_keeps_the_text_and_ends_the_audio(backend):
    async with embedded_server(remote_settings(backend)) as server:
        async with connect(ws_url(server), additional_headers=AUTH) as ws:
            await ws_event(ws, "session.created")
            backend.set(tts="drop")
            events = await ask(ws, modality="audio")
            types = [e["type"] for e in events]
            done = events[-1]["response"]
            assert done["status"] == "completed"
            assert done["output"][0]["content"][0]["transcript"] == "".join(REPLY)
            assert "response.output_audio.done" in types
            errors = [e["error"] for e in events if e["type"] == "error"]
            assert errors and errors[0]["code"] == "tts_error" and backend.url in errors[0]["message"]

            backend.set(tts="ok")
            events = await ask(ws, modality="audio")
            assert events[-1]["response"]["status"] == "completed"
            assert any(e["type"] == "response.output_audio.delta" for e in events)
            assert not any(e["type"] == "error" for e in events)


async def test_transcription_failure_is_reported_and_the_next_turn_works(backend):
    import base64

    import numpy as np

    async with embedded_server(remote_settings(backend)) as server:
        async with connect(ws_url(server), additional_headers=AUTH) as ws:
            await ws_event(ws, "session.created")
            await ws.send(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"},
                                                        "turn_detection": None}}}}))
            await ws_event(ws, "session.updated")
            tone = (np.sin(np.arange(24_000) / 24_000 * 2 * np.pi * 200) * 8000).astype("<i2").tobytes()
            for fault, expected in (("error", "failed"), ("hang", "failed"), ("ok", "completed")):
                backend.set(stt=fault)
                await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                          "audio": base64.b64encode(tone).decode()}))
                await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
                event = await ws_event(ws, f"conversation.item.input_audio_transcription.{expected}", timeout=30)
                if expected == "failed":
                    assert backend.url in event["error"]["message"]
                else:
                    assert event["transcript"] == "hello from the fault backend"


def _async(predicate):
    async def check():
        return predicate()
    return check
