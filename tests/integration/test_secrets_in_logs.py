"""Secrets never reach the logs, /metrics or the call list: a whole session against a real
`openrealtime serve` process logging at DEBUG (text and JSON), its stderr read afterwards.

The session covers every place a secret passes through: an API key (and a wrong one) on HTTP and on
WebSocket handshakes, an `ek_` client secret minted with an MCP tool that carries `authorization` and
`headers`, a WebRTC call and a WebSocket session opened with it (the browser subprotocol form), MCP
listings that the MCP server only answers with the right credentials, a sideband, `/metrics` and the
call list. Session objects show MCP credentials as "[redacted]"; sent back that way, they keep their
values."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from openrealtime.api.embedded import free_port
from openrealtime.client.rtc import RealtimeRtcClient
from tests.support import build_server, serving, wait_for

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sk-live-4f0c2d9e8b7a6f5e4d3c2b1a"
WRONG_KEY = "sk-wrong-9a8b7c6d5e4f3a2b1c0d"
MCP_TOKEN = "mcptok-3f9a1c7e5b"  # short: the end of a WebSocket frame that a DEBUG log shows holds all of it
MCP_HEADER = "hdrval-8e2d4b6a0c"
REDACTED = "[redacted]"


def requiring_credentials(app):
    """The MCP app, answering 401 unless both credentials are on the request."""
    async def guarded(scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if headers.get(b"authorization") != f"Bearer {MCP_TOKEN}".encode() or \
                    headers.get(b"x-api-key") != MCP_HEADER.encode():
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b"unauthorized"})
                return
        await app(scope, receive, send)
    return guarded


@pytest.fixture(scope="module")
def mcp_url():
    with serving(requiring_credentials(build_server().streamable_http_app())) as url:
        yield url


def mcp_tool(url: str) -> dict:
    return {"type": "mcp", "server_label": "weather", "server_url": url, "authorization": MCP_TOKEN,
            "headers": {"X-Api-Key": MCP_HEADER}, "require_approval": "never"}


async def recv(ws, type_: str, timeout: float = 15.0) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            event = json.loads(await ws.recv())
            if event["type"] in (type_, "mcp_list_tools.failed"):
                assert event["type"] == type_, event
                return event


async def rtc_event(client: RealtimeRtcClient, type_: str) -> dict:
    while True:
        event = await client.next_event(timeout=15)
        if event["type"] in (type_, "mcp_list_tools.failed"):
            assert event["type"] == type_, event
            return event


def assert_redacted(session: dict) -> None:
    tool = next(t for t in session["tools"] if t["type"] == "mcp")
    assert tool["authorization"] == REDACTED and tool["headers"] == {"X-Api-Key": REDACTED}, tool


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_no_secret_in_logs_metrics_or_the_call_list(tmp_path, mcp_url, log_format):
    port = free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "openrealtime", "serve", "--engine", "echo", "--port", str(port),
             "--udp-port", str(free_port(kind=socket.SOCK_DGRAM)), "--tcp-port", str(free_port()),
             "--api-key", API_KEY, "--log-level", "debug", "--log-format", log_format],
            cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT,
            env={**os.environ, "OPENREALTIME_MCP_ALLOW": "127.0.0.1"})  # the MCP server listens on loopback
    url = f"http://127.0.0.1:{port}"
    ws_base = url.replace("http://", "ws://") + "/v1/realtime"
    key = {"Authorization": f"Bearer {API_KEY}"}
    try:
        async with httpx.AsyncClient(timeout=15) as http:
            async def ready():
                assert proc.poll() is None, log_path.read_text()[-3000:]
                try:
                    return (await http.get(url + "/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False
            await wait_for(ready, timeout=60, what="server ready")

            # a wrong key, over HTTP and a WebSocket handshake
            assert (await http.get(url + "/v1/realtime/calls",
                                   headers={"Authorization": f"Bearer {WRONG_KEY}"})).status_code == 401
            with pytest.raises(InvalidStatus):
                async with connect(ws_base + "?model=gpt-realtime",
                                   subprotocols=["realtime", "openai-insecure-api-key." + WRONG_KEY]):
                    pass

            # an ek_ minted with MCP credentials: the answer shows they are set, not what they are
            r = await http.post(url + "/v1/realtime/client_secrets", headers=key,
                                json={"session": {"type": "realtime", "tools": [mcp_tool(mcp_url)]}})
            assert r.status_code == 200, r.text
            ek = r.json()["value"]
            assert_redacted(r.json()["session"])

            # a WebRTC call with it, as a browser would: the server lists the tools with the credentials
            client = RealtimeRtcClient(url, api_key=ek)
            assert (await client.connect()).status_code == 201
            try:
                created = await rtc_event(client, "session.created")
                assert_redacted(created["session"])
                await rtc_event(client, "mcp_list_tools.completed")
                # the session sent back as shown keeps the credentials (a changed token would list again)
                echoed = {k: v for k, v in created["session"].items() if k in ("type", "tools")}
                client.send({"type": "session.update", "session": {**echoed, "instructions": "Be brief."}})
                assert_redacted((await rtc_event(client, "session.updated"))["session"])

                # a WebSocket session with the same ek_ (browser subprotocols) whose session.update ends
                # with the MCP token: the WebSocket layer's DEBUG log shows each frame's first and last bytes
                async with connect(ws_base + "?model=gpt-realtime",
                                   subprotocols=["realtime", "openai-insecure-api-key." + ek]) as ws:
                    assert_redacted((await recv(ws, "session.created"))["session"])
                    tool = mcp_tool(mcp_url)
                    token = tool.pop("authorization")
                    tool = {**tool, "server_label": "weather2", "authorization": token}  # the last key
                    text = json.dumps({"type": "session.update", "session": {"type": "realtime", "tools": [tool]}},
                                      separators=(",", ":"))
                    assert text.endswith(f'{MCP_TOKEN}"}}]}}}}')
                    await ws.send(text)
                    assert_redacted((await recv(ws, "session.updated"))["session"])
                    await recv(ws, "mcp_list_tools.completed")

                # a sideband on the call (API key), then the operator's views
                async with connect(f"{ws_base}?call_id={client.call_id}", additional_headers=key) as sideband:
                    assert_redacted((await recv(sideband, "session.created"))["session"])
                    await sideband.send(json.dumps({"type": "session.update", "session": {
                        "type": "realtime", "tools": [mcp_tool(mcp_url)]}}))
                    await recv(sideband, "session.updated")
                metrics = (await http.get(url + "/metrics", headers=key)).text
                calls = (await http.get(url + "/v1/realtime/calls", headers=key)).text
                call = (await http.get(f"{url}/v1/realtime/calls/{client.call_id}", headers=key)).text
                assert "session.update" in call  # the recent events, client events included
                await http.post(f"{url}/v1/realtime/calls/{client.call_id}/hangup", headers=key)
            finally:
                await client.close()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    logs = log_path.read_text()
    assert "DEBUG" in logs or '"level": "debug"' in logs  # the whole session was logged at DEBUG
    assert "sec-websocket-protocol" in logs.lower()  # including the handshake headers (redacted below)
    secrets = {"API key": API_KEY, "wrong API key": WRONG_KEY, "ek_ value": ek, "ek_ secret part": ek[3:],
               "MCP authorization": MCP_TOKEN, "MCP header": MCP_HEADER}
    for where, text in (("logs", logs), ("/metrics", metrics), ("call list", calls), ("call", call)):
        for what, secret in secrets.items():
            assert secret not in text, f"{what} found in {where}"
