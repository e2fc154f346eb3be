"""Limits on every route of a real server over real HTTP, WebSocket and WebRTC (openrealtime/limits.py):
request heads, bodies (declared or chunked), JSON nesting, WebSocket frames, data-channel messages and
image data URLs. Each refusal is OpenAI's error shape (HTTP) or an `error` event, and the session
that received it goes on working."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import zlib
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from openrealtime import limits
from openrealtime.client.rtc import RealtimeRtcClient
from tests.support import assert_openai_error, wait_for, ws_event

OFFER = (Path(__file__).parent.parent / "fixtures" / "chromium-156-offer.sdp").read_text()
AUTH = {"Authorization": "Bearer test"}
DEEP = 100_000  # nesting levels of the hostile JSON below


def deep(levels: int = DEEP) -> str:
    return "[" * levels + "]" * levels


def png_declaring(width: int, height: int) -> bytes:
    """A decompression bomb: a few hundred bytes whose header declares width × height RGB pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\0" * (1 + 3 * width) * 2, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", rows))


BOMB_URL = "data:image/png;base64," + base64.b64encode(png_declaring(50_000, 50_000)).decode()


def image_item(url: str, event_id: str = "evt_img") -> dict:
    return {"type": "conversation.item.create", "event_id": event_id, "item": {
        "type": "message", "role": "user", "content": [{"type": "input_image", "image_url": url}]}}


async def raw_request(server, head: bytes, body: bytes = b"") -> bytes:
    """Send bytes on a fresh TCP connection; the server's reply (until it closes or 5 s of quiet)."""
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head + body)
        await writer.drain()
        out = b""
        while b"\r\n\r\n" not in out or len(out) < out.index(b"\r\n\r\n") + 4 + _length(out):
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            if not chunk:
                break
            out += chunk
        return out
    finally:
        writer.close()


def _length(reply: bytes) -> int:
    for line in reply.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def reply_json(reply: bytes) -> tuple[int, dict]:
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


async def assert_server_serves(server):
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(server.url + "/v1/realtime/client_secrets", json={}, headers=AUTH)
        assert r.status_code == 200 and r.json()["value"].startswith("ek_")


# ---- request heads ---------------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [
    {f"x-h{i}": "v" for i in range(limits.MAX_HEADER_COUNT + 1)},
    {"x-big": "v" * (limits.MAX_HEADER_FIELD_BYTES + 1)},
    {f"x-h{i}": "v" * (limits.MAX_HEADER_FIELD_BYTES - 100)  # each fits, all of them do not
     for i in range(limits.MAX_HEADER_BYTES // (limits.MAX_HEADER_FIELD_BYTES - 100) + 1)},
], ids=["count", "one", "total"])
async def test_request_heads_over_the_limits_get_431_on_every_route(echo_server, headers):
    async with httpx.AsyncClient(timeout=10) as http:
        for method, path in (("POST", "/v1/realtime/calls"), ("POST", "/v1/realtime/client_secrets"),
                             ("GET", "/v1/realtime/calls"), ("GET", "/metrics"), ("GET", "/healthz"),
                             ("POST", "/v1/tools/inspect-sdp"), ("GET", "/")):
            r = await http.request(method, echo_server.url + path, headers={**AUTH, **headers}, content=b"")
            assert_openai_error(r, 431, "request_header_fields_too_large")
    url = echo_server.url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, additional_headers={**AUTH, **headers}):
            pass
    assert info.value.response.status_code == 431
    assert json.loads(info.value.response.body)["error"]["code"] == "request_header_fields_too_large"
    await assert_server_serves(echo_server)


async def test_urls_over_the_limit_get_414(echo_server):
    long = "x" * limits.MAX_URL_BYTES
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.get(f"{echo_server.url}/v1/realtime/calls/rtc_{long}", headers=AUTH)
        assert_openai_error(r, 414, "request_uri_too_long")
        r = await http.post(f"{echo_server.url}/v1/realtime/calls?model={long}", headers=AUTH, content=OFFER)
        assert_openai_error(r, 414, "request_uri_too_long")
    with pytest.raises(InvalidStatus) as info:
        async with connect(echo_server.url.replace("http://", "ws://") + f"/v1/realtime?call_id=rtc_{long}",
                           additional_headers=AUTH):
            pass
    assert info.value.response.status_code == 414
    await assert_server_serves(echo_server)


async def test_a_request_head_past_the_parser_limit_is_cut_off(echo_server):
    lines = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"a" * 1000) for i in range(4 * limits.MAX_HEADER_BYTES // 1000))
    reply = await raw_request(echo_server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n")
    assert reply == b"" or reply.split(b" ")[1] in (b"400", b"431")
    await assert_server_serves(echo_server)


# ---- bodies ----------------------------------------------------------------------------------------
async def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(echo_server):
    for path in ("/v1/realtime/calls", "/v1/realtime/client_secrets", "/v1/realtime"):
        head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test\r\nContent-Type: application/sdp\r\n"
                f"Content-Length: {10 * limits.MAX_BODY_BYTES}\r\n\r\n").encode()
        status, body = reply_json(await raw_request(echo_server, head))  # no body sent: the reply comes anyway
        assert status == 413 and body["error"]["code"] == "request_too_large", body


def _chunks(total: int, size: int = 64 * 1024):
    async def gen():
        sent = 0
        while sent < total:
            yield b"a" * min(size, total - sent)
            sent += size
    return gen()


async def test_chunked_bodies_over_the_limit_are_refused(echo_server):
    over = limits.MAX_BODY_BYTES + 1
    async with httpx.AsyncClient(timeout=30) as http:
        for path, ctype, size in (("/v1/realtime/calls", "application/sdp", over),
                                  ("/v1/realtime/calls", "multipart/form-data; boundary=xyz", over),
                                  ("/v1/realtime/calls", "application/json", over),
                                  ("/v1/realtime/client_secrets", "application/json", over),
                                  ("/v1/tools/inspect-sdp", "application/sdp", limits.MAX_SDP_BYTES + 1)):
            r = await http.post(echo_server.url + path, content=_chunks(size),
                                headers={**AUTH, "Content-Type": ctype})
            assert "content-length" not in r.request.headers  # chunked: the size is only known as it arrives
            assert_openai_error(r, 413, "request_too_large")
    await assert_server_serves(echo_server)


# ---- JSON nesting ----------------------------------------------------------------------------------
async def test_deep_json_bodies_get_400(echo_server):
    async with httpx.AsyncClient(timeout=30) as http:
        url = echo_server.url
        r = await http.post(url + "/v1/realtime/client_secrets", headers={**AUTH, "Content-Type": "application/json"},
                            content='{"session": {"type": "realtime", "tools": ' + deep() + "}}")
        assert_openai_error(r, 400, "invalid_json")
        r = await http.post(url + "/v1/realtime/calls", headers={**AUTH, "Content-Type": "application/json"},
                            content=json.dumps({"sdp": OFFER})[:-1] + ', "session": {"x": ' + deep() + "}}")
        assert_openai_error(r, 400, "invalid_json")
        r = await http.post(url + "/v1/realtime/calls", headers=AUTH,
                            files={"sdp": (None, OFFER), "session": (None, '{"tools": ' + deep() + "}")})
        assert_openai_error(r, 400, "invalid_json", "session")
        r = await http.post(url + "/v1/tools/inspect-sdp", headers={**AUTH, "Content-Type": "application/json"},
                            content=deep(limits.MAX_JSON_DEPTH + 1))
        assert_openai_error(r, 400, "invalid_json")
    await assert_server_serves(echo_server)


# ---- WebSocket sessions ----------------------------------------------------------------------------


async def assert_session_works(send, next_event):
    await send({"type": "session.update", "session": {"type": "realtime", "instructions": "still here"}})
    assert (await next_event("session.updated"))["session"]["instructions"] == "still here"


async def test_websocket_events_over_the_limits_get_error_events(echo_server):
    url = echo_server.url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"
    async with connect(url, additional_headers=AUTH, max_size=None) as ws:
        async def send(event):
            await ws.send(json.dumps(event))

        def next_event(kind):
            return ws_event(ws, kind)

        await ws_event(ws, "session.created")
        await ws.send('{"type": "session.update", "event_id": "evt_deep", "session": ' + deep() + "}")
        err = (await ws_event(ws, "error"))["error"]
        assert (err["code"], err["event_id"]) == ("invalid_json", "evt_deep")
        await send(image_item(BOMB_URL))
        err = (await ws_event(ws, "error"))["error"]
        assert (err["code"], err["param"], err["event_id"]) == ("invalid_value", "item.content.0.image_url", "evt_img")
        assert "50000×50000" in err["message"]
        await send({"type": "response.create", "event_id": "evt_tools", "response": {
            "tools": [{"type": "function", "name": f"f{i}"} for i in range(limits.MAX_TOOLS + 1)]}})
        assert (await ws_event(ws, "error"))["error"]["param"] == "response.tools"
        await assert_session_works(send, next_event)
        await ws.send("x" * (limits.WS_MAX_FRAME_BYTES + 1))  # past the transport's frame limit: closed
        with pytest.raises(ConnectionClosed) as info:
            async with asyncio.timeout(30):
                while True:
                    await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009


# ---- WebRTC data channel ---------------------------------------------------------------------------
async def test_data_channel_messages_over_the_limits_get_error_events(echo_server):
    client = RealtimeRtcClient(echo_server.url, session={"type": "realtime"})
    assert (await client.connect()).status_code == 201
    try:
        await client.next_event("session.created")

        async def send(event):
            client.send(event)

        await send(image_item(BOMB_URL))
        err = (await client.next_event("error"))["error"]
        assert (err["code"], err["param"]) == ("invalid_value", "item.content.0.image_url")
        client.channel.send('{"type": "session.update", "session": ' + deep(10_000) + "}")
        assert (await client.next_event("error"))["error"]["code"] == "invalid_json"
        client.pc.sctp._remote_max_message_size = 1 << 20  # a peer that ignores the advertised max-message-size
        client.channel.send(json.dumps({"type": "input_audio_buffer.append", "audio": "A" * 300_000}))
        assert (await client.next_event("error", timeout=20))["error"]["code"] == "message_too_large"
        await assert_session_works(send, client.next_event)
    finally:
        await client.close()


async def test_a_data_channel_peer_past_the_receive_window_is_cut_off(echo_server):
    """A peer that ignores both our max-message-size and receive window (aiortc's sender does not look at
    the window) sends one 4 MiB message: the server aborts the SCTP association instead of buffering it."""
    client = RealtimeRtcClient(echo_server.url, session={"type": "realtime"})
    assert (await client.connect()).status_code == 201
    try:
        await client.next_event("session.created")
        client.pc.sctp._remote_max_message_size = 8 << 20
        client.channel.send("x" * (4 << 20))

        async def channel_closed():
            return client.channel.readyState == "closed"
        # a bound, not a speed: 4 MiB through aiortc's pure-Python SCTP takes long on a loaded machine
        await wait_for(channel_closed, timeout=120, what="the data channel closed by the server")
    finally:
        await client.close()
    other = RealtimeRtcClient(echo_server.url, session={"type": "realtime"})  # the server goes on serving
    assert (await other.connect()).status_code == 201
    try:
        await other.next_event("session.created")
        async def send(event):
            other.send(event)

        await assert_session_works(send, other.next_event)
    finally:
        await other.close()
