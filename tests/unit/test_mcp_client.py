"""The MCP client against a real MCP server (FastMCP over Streamable HTTP, both answer styles)."""

from __future__ import annotations

import pytest

from openrealtime.engines.mcp_client import McpClient, McpError
from tests.mcp_server import lingering_stream_app, local_egress, running_mcp_server, serving


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
