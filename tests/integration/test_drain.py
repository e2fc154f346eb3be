"""Graceful drain and fatal start-up, on a real `openrealtime serve` process with real signals.

SIGTERM: `/readyz` 503 at once, new calls and WebSocket sessions refused with 503 `server_shutting_down`
and `Retry-After`, the HTTP API still serving the live ones (call list, hangup, metrics, the sessions
themselves); at the drain timeout each session left gets an `error` event and a clean close (WebRTC:
the peer connection closes; WebSocket: 1012); exit 0 once none is left. A second signal stops at once.
A local model that cannot load exits non-zero, saying what to do."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from openrealtime.api.embedded import free_port
from openrealtime.client.rtc import RealtimeRtcClient
from tests.support import assert_openai_error, wait_for, ws_event
from tests.support.serve_process import ROOT, ServeProcess

AUTH = {"Authorization": "Bearer sk-drain"}


@pytest.fixture
def servers():
    started: list[ServeProcess] = []

    def start(*args: str, **kw) -> ServeProcess:
        server = ServeProcess(*args, api_key="sk-drain", **kw)
        started.append(server)
        return server
    yield start
    for server in started:
        server.kill()


async def connected_call(server: ServeProcess) -> RealtimeRtcClient:
    """A WebRTC call to `server` (aiortc), up to its session.created."""
    call = RealtimeRtcClient(server.url, api_key="sk-drain")
    assert (await call.connect()).status_code == 201
    await call.next_event("session.created", timeout=15)
    return call


async def test_sigterm_drains_live_sessions_then_exits_0(servers):
    server = servers("--engine", "echo", "--drain-timeout", "120")
    await server.ready()
    call = await connected_call(server)
    async with connect(server.ws_url, additional_headers=AUTH) as ws, httpx.AsyncClient(headers=AUTH) as http:
        await ws_event(ws, "session.created")
        server.signal(signal.SIGTERM)

        async def draining():
            return (await http.get(server.url + "/readyz")).status_code == 503
        await wait_for(draining, timeout=10, what="/readyz 503 after SIGTERM")
        ready = await http.get(server.url + "/readyz")
        assert ready.json()["status"] == "draining" and "shutting down" in ready.json()["reason"]
        assert (await http.get(server.url + "/healthz")).json() == {"status": "draining"}

        # new sessions are refused, with a hint to come back (elsewhere)
        refused = RealtimeRtcClient(server.url, api_key="sk-drain")
        answer = await refused.connect()
        await refused.close()
        assert_openai_error(answer, 503, code="server_shutting_down")
        assert answer.headers["retry-after"]
        with pytest.raises(InvalidStatus) as denied:
            async with connect(server.ws_url, additional_headers=AUTH):
                pass
        assert denied.value.response.status_code == 503
        assert json.loads(denied.value.response.body)["error"]["code"] == "server_shutting_down"

        # the live ones go on, and the HTTP API keeps serving them
        await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "instructions": "x"}}))
        await ws_event(ws, "session.updated")
        call.send({"type": "session.update", "session": {"type": "realtime", "instructions": "y"}})
        await call.next_event("session.updated")
        listed = (await http.get(server.url + "/v1/realtime/calls")).json()
        assert [c["id"] for c in listed["data"]] == [call.call_id]
        assert "openrealtime_draining 1.0" in (await http.get(server.url + "/metrics")).text
        assert server.proc.poll() is None

        assert (await http.post(f"{server.url}/v1/realtime/calls/{call.call_id}/hangup")).status_code == 200
        assert server.proc.poll() is None  # the WebSocket session is still live
    await call.close()
    assert await server.exit_code() == 0
    assert "drained" in server.log()


async def test_drain_timeout_closes_what_is_left_cleanly(servers):
    server = servers("--engine", "echo", "--drain-timeout", "1")
    await server.ready()
    call = await connected_call(server)
    closed = asyncio.Event()

    @call.pc.on("connectionstatechange")
    def _state() -> None:
        if call.pc.connectionState == "closed" or call.pc.connectionState == "failed":
            closed.set()

    async with connect(server.ws_url, additional_headers=AUTH) as ws:
        await ws_event(ws, "session.created")
        server.signal(signal.SIGTERM)
        error = await ws_event(ws, "error", timeout=20)
        assert error["error"]["code"] == "server_shutting_down"
        with pytest.raises(ConnectionClosed) as ended:
            await ws_event(ws, "never", timeout=20)
        assert ended.value.rcvd.code == 1012
    error = await call.next_event("error", timeout=20)
    assert error["error"]["code"] == "server_shutting_down"
    await asyncio.wait_for(closed.wait(), 30)  # DTLS close / the peer connection ended by the server
    await call.close()
    assert await server.exit_code() == 0


async def test_second_signal_stops_at_once(servers):
    server = servers("--engine", "echo", "--drain-timeout", "600")
    await server.ready()
    async with connect(server.ws_url, additional_headers=AUTH) as ws:
        await ws_event(ws, "session.created")
        server.signal(signal.SIGTERM)
        async with httpx.AsyncClient() as http:
            async def draining():
                return (await http.get(server.url + "/readyz")).status_code == 503
            await wait_for(draining, timeout=10, what="draining")
        assert server.proc.poll() is None
        server.signal(signal.SIGINT)
        code = await server.exit_code(timeout=30)
        assert code == 0
        with pytest.raises(ConnectionClosed):
            await ws_event(ws, "never", timeout=10)


def test_a_local_model_that_cannot_load_exits_non_zero(tmp_path):
    """A Whisper model.bin of the right size whose content is not a model (its marker valid): the server
    must not wait forever as 'loading' but exit, naming the stage and how to fix it."""
    from openrealtime.engines import assets

    cache = tmp_path / "cache"
    env = {**os.environ, assets.CACHE_ENV: str(cache)}
    try:
        os.environ[assets.CACHE_ENV] = str(cache)
        whisper = assets.whisper_base_dir()
    finally:
        os.environ.pop(assets.CACHE_ENV, None)
    model = whisper / "model.bin"
    size = model.stat().st_size
    with open(model, "r+b") as f:  # same size, not a model; the marker still says "verified"
        f.write(b"\0" * min(size, 1 << 20))
    port = free_port()
    proc = subprocess.run([sys.executable, "-m", "openrealtime", "serve", "--profile", "default", "--port", str(port),
                           "--udp-port", str(free_port(kind=socket.SOCK_DGRAM)), "--tcp-port", str(free_port())],
                          cwd=ROOT, env=env, capture_output=True, timeout=300)
    err = proc.stderr.decode()
    assert proc.returncode != 0, err[-3000:]
    assert f"the local stt model of profile 'default' failed to load from {model}" in err
    assert "openrealtime models verify --profile default" in err
