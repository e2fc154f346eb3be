"""The MCP client against a real MCP server (FastMCP over Streamable HTTP, both answer styles)."""

from __future__ import annotations

import pytest

from openrealtime.engines.mcp_client import McpClient, McpError
from tests.support import lingering_stream_app, local_egress, running_mcp_server, serving


@pytest.fixture(params=["event-stream", "json", "legacy-sse"])
def mcp_url(request):
    with running_mcp_server(json_response=request.param == "json", legacy_sse=request.param == "legacy-sse") as url:
        yield url


async def test_lists_and_calls_tools(mcp_url):
    async with McpClient(mcp_url, egress=local_egress()) as client:
        tools = {t.name: t for t in await client.list_tools()}
        assert set(tools) == {"get_weather", "add", "broken"}
        assert tools["get_weather"].description == "Current weather in a city."
        assert tools["get_weather"].input_schema["properties"]["city"]["type"] == "string"
        assert tools["add"].as_info()["annotations"]["readOnlyHint"] is True
        assert await client.call_tool("get_weather", {"city": "Paris"}) == "It is 21 degrees and sunny in Paris."
        assert await client.call_tool("add", {"a": 2, "b": 3}) == "5"


async def test_tool_failures_and_bad_calls_are_typed_errors(mcp_url):
    async with McpClient(mcp_url, egress=local_egress()) as client:
        with pytest.raises(McpError) as failed:
            await client.call_tool("broken", {})
        assert failed.value.kind == "tool_execution_error" and "offline" in failed.value.message
        assert failed.value.as_item_error() == {"type": "tool_execution_error", "message": failed.value.message}
        with pytest.raises(McpError) as unknown:
            await client.call_tool("no_such_tool", {})
        assert unknown.value.kind in ("protocol_error", "tool_execution_error")


async def test_an_unreachable_or_wrong_server_is_an_http_error():
    with running_mcp_server() as url:
        async with McpClient(url.replace("/mcp", "/nope"), egress=local_egress()) as client:
            with pytest.raises(McpError) as wrong:
                await client.list_tools()
            assert wrong.value.kind == "http_error" and wrong.value.code == 404
            assert wrong.value.as_item_error()["code"] == 404
    async with McpClient("http://127.0.0.1:9/mcp", timeout_s=2, egress=local_egress()) as client:
        with pytest.raises(McpError) as down:
            await client.list_tools()
        assert down.value.kind == "http_error" and "could not reach" in down.value.message


async def test_an_answer_is_read_without_waiting_for_the_stream_to_end():
    import asyncio

    with serving(lingering_stream_app(linger_s=120)) as url:
        async with McpClient(url, timeout_s=300, egress=local_egress()) as client:
            tools = await asyncio.wait_for(client.list_tools(), timeout=60)
    assert [t.name for t in tools] == ["ping"]


async def test_a_restarted_server_gets_a_new_session():
    with running_mcp_server() as url:
        async with McpClient(url, egress=local_egress()) as client:
            assert len(await client.list_tools()) == 3
            client._session_id = "a-session-the-server-never-issued"  # as after a server restart: 404
            assert await client.call_tool("add", {"a": 1, "b": 2}) == "3"
            assert client._session_id != "a-session-the-server-never-issued"


@pytest.mark.parametrize("behaviour", ["silent", "keepalive", "drop"])
async def test_a_hung_or_dropping_server_fails_in_bounded_time(behaviour):
    """A server that accepts the request and never answers, keeps an event stream alive without the
    answer, or cuts the connection: a typed http_error (the session's mcp_call / listing fails), no hang."""
    import asyncio

    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        if behaviour == "drop":
            writer.transport.abort()
            return
        if behaviour == "keepalive":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            try:
                while True:
                    writer.write(b"9\r\n: ping\n\n\n\r\n")
                    await writer.drain()
                    await asyncio.sleep(0.1)
            except ConnectionError:
                return
        await reader.read()  # silent until the client gives up

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with McpClient(f"http://127.0.0.1:{port}/mcp", egress=local_egress(), timeout_s=1.0) as client:
            with pytest.raises(McpError) as failed:
                await asyncio.wait_for(client.list_tools(), 30)
        assert failed.value.kind == "http_error"
        assert f"127.0.0.1:{port}" in failed.value.message
    finally:
        server.close()
