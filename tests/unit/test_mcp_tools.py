"""MCP tools in a session: listing, calls run by the server, approvals — against a real MCP server
(FastMCP over Streamable HTTP); the language model is scripted so the calls are deterministic.

The session runs on the inline runtime: what it does by itself has happened once it settles
(`settle`). What waits on the MCP server's answer over the network is awaited as the event it ends
in (`sent`: no polling, a future the transport resolves)."""

from __future__ import annotations

import asyncio
import json

import pytest

from openrealtime.protocol.session import parse_session_config
from openrealtime.runtime_inline import InlineRuntime
from openrealtime.session.engine import SessionEngine
from tests.support import (
    RecordingTransport,
    ScriptedLlm,
    build_server,
    fake_stack,
    local_egress,
    running_mcp_server,
    serving,
)
from tests.unit.test_egress import listening
from tests.unit.test_engine_turns import send, settle

LOCAL = local_egress()  # the test MCP servers listen on 127.0.0.1: allowed as with --mcp-allow 127.0.0.1
NETWORK_TIMEOUT_S = 15.0


class SentEvents(list):
    """A recording transport's events, resolving the futures of `expect` as they go out."""

    def __init__(self) -> None:
        super().__init__()
        self._expected: list[tuple[str, int, asyncio.Future]] = []

    def append(self, event: dict) -> None:
        super().append(event)
        for type_, count, future in list(self._expected):
            if not future.done() and sum(e["type"] == type_ for e in self) >= count:
                future.set_result(None)
                self._expected.remove((type_, count, future))

    def expect(self, type_: str, count: int) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        if sum(e["type"] == type_ for e in self) >= count:
            future.set_result(None)
        else:
            self._expected.append((type_, count, future))
        return future


async def sent(engine, type_: str, count: int = 1) -> None:
    """Once the session has sent `count` events of `type_` (after the MCP server answered), settled."""
    events = engine.transport.events
    try:
        async with asyncio.timeout(NETWORK_TIMEOUT_S):
            await events.expect(type_, count)
    except TimeoutError:
        raise AssertionError(f"{count} × {type_} not sent within {NETWORK_TIMEOUT_S} s "
                             f"(sent: {[e['type'] for e in events]})") from None
    await settle(engine)


def make_engine(session: dict | None = None, *, llm=None, egress=LOCAL):
    """A session engine (scripted models) with an egress policy; egress=None: the engine's default."""
    transport = RecordingTransport()
    transport.events = SentEvents()
    engine = SessionEngine(transport, parse_session_config(session or {"type": "realtime"}),
                           models=fake_stack(llm=llm), egress=egress, runtime=InlineRuntime())
    engine.start()
    return engine, transport


@pytest.fixture(scope="module")
def mcp_url():
    with running_mcp_server() as url:
        yield url


def mcp_tool(url: str, **extra) -> dict:
    return {"type": "mcp", "server_label": "weather", "server_url": url, **extra}


async def configured(url: str, llm: ScriptedLlm, **tool):
    engine, t = make_engine({"type": "realtime", "output_modalities": ["text"], "tools": [mcp_tool(url, **tool)]},
                            llm=llm)
    await sent(engine, "mcp_list_tools.completed")
    return engine, t


async def test_tools_are_listed_into_the_conversation(mcp_url):
    engine, t = await configured(mcp_url, ScriptedLlm("Hi."), allowed_tools=["get_weather", "add"])
    types = t.types()
    added = next(e for e in t.of("conversation.item.added") if e["item"]["type"] == "mcp_list_tools")
    assert added["item"]["tools"] == [] and added["item"]["server_label"] == "weather"
    assert types.index("mcp_list_tools.in_progress") < types.index("mcp_list_tools.completed")
    done = next(e for e in t.of("conversation.item.done") if e["item"]["type"] == "mcp_list_tools")
    assert done["item"]["id"] == added["item"]["id"] == t.of("mcp_list_tools.completed")[0]["item_id"]
    assert {tool["name"] for tool in done["item"]["tools"]} == {"get_weather", "add"}  # allowed_tools
    # the same definition again (or by its label alone) is not listed again
    send(engine, type="session.update", session={"type": "realtime", "tools": [{"type": "mcp", "server_label": "weather"}]})
    await settle(engine)
    assert len(t.of("mcp_list_tools.in_progress")) == 1


async def test_a_call_runs_on_the_server_and_the_next_response_uses_its_output(mcp_url):
    llm = ScriptedLlm({"name": "get_weather", "arguments": '{"city": "Paris"}'}, "Sunny, 21 degrees.")
    engine, t = await configured(mcp_url, llm, require_approval="never")
    send(engine, type="conversation.item.create",
         item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]})
    send(engine, type="response.create")
    await sent(engine, "response.done")
    offered = [tool["function"]["name"] for tool in llm.requests[0].tools]
    assert set(offered) == {"get_weather", "add", "broken"}
    types = t.types()
    order = ["response.output_item.added", "response.mcp_call_arguments.delta", "response.mcp_call_arguments.done",
             "response.mcp_call.in_progress", "response.mcp_call.completed", "response.output_item.done",
             "response.done"]
    assert [types.index(x) for x in order] == sorted(types.index(x) for x in order), types
    item = t.of("response.output_item.done")[0]["item"]
    assert item["type"] == "mcp_call" and item["name"] == "get_weather" and item["server_label"] == "weather"
    assert json.loads(item["arguments"]) == {"city": "Paris"}
    assert item["output"] == "It is 21 degrees and sunny in Paris." and item.get("error") is None
    assert t.of("response.done")[0]["response"]["status"] == "completed"
    # as with OpenAI, the client asks for the answer; the model reads the tool's output
    send(engine, type="response.create")
    await settle(engine)
    messages = llm.requests[1].messages
    assert any(m["role"] == "tool" and "sunny in Paris" in m["content"] for m in messages), messages
    assert t.of("response.done")[1]["response"]["output"][0]["content"][0]["text"] == "Sunny, 21 degrees."


async def test_a_failing_tool_is_an_error_on_the_call_item(mcp_url):
    llm = ScriptedLlm({"name": "broken", "arguments": "{}"})
    engine, t = await configured(mcp_url, llm, require_approval="never")
    send(engine, type="response.create")
    await sent(engine, "response.done")
    assert t.of("response.mcp_call.failed") and not t.of("response.mcp_call.completed")
    item = t.of("response.output_item.done")[0]["item"]
    assert item["error"]["type"] == "tool_execution_error" and "offline" in item["error"]["message"]
    assert item.get("output") is None


async def test_approval_is_requested_by_default_and_an_approved_call_runs(mcp_url):
    llm = ScriptedLlm({"name": "add", "arguments": '{"a": 2, "b": 3}'}, "Five.")
    engine, t = await configured(mcp_url, llm)  # require_approval defaults to "always"
    send(engine, type="response.create")
    await settle(engine)
    request = t.of("response.output_item.done")[0]["item"]
    assert request["type"] == "mcp_approval_request" and request["name"] == "add"
    assert json.loads(request["arguments"]) == {"a": 2, "b": 3}
    assert not t.of("response.mcp_call.in_progress")  # nothing ran
    # an answer to an unknown request is an error
    send(engine, type="conversation.item.create",
         item={"type": "mcp_approval_response", "approval_request_id": "mcpr_nope", "approve": True})
    await settle(engine)
    assert t.of("error")[-1]["error"]["param"] == "item.approval_request_id"
    send(engine, type="conversation.item.create",
         item={"type": "mcp_approval_response", "approval_request_id": request["id"], "approve": True})
    await sent(engine, "response.mcp_call.completed")
    call = next(e["item"] for e in t.of("conversation.item.done") if e["item"]["type"] == "mcp_call")
    assert call["approval_request_id"] == request["id"] and call["output"] == "5"
    send(engine, type="response.create")
    await settle(engine)
    assert any(m["role"] == "tool" and m["content"] == "5" for m in llm.requests[1].messages)


async def test_a_declined_call_does_not_run_and_the_model_is_told(mcp_url):
    llm = ScriptedLlm({"name": "add", "arguments": '{"a": 1, "b": 1}'}, "OK, I won't.")
    engine, t = await configured(mcp_url, llm, require_approval={"always": {"tool_names": ["add"]}})
    send(engine, type="response.create")
    await settle(engine)
    request = t.of("response.output_item.done")[0]["item"]
    send(engine, type="conversation.item.create", item={
        "type": "mcp_approval_response", "approval_request_id": request["id"], "approve": False, "reason": "no"})
    send(engine, type="response.create")
    await settle(engine)
    assert not t.of("response.mcp_call.in_progress")
    tool_messages = [m for m in llm.requests[1].messages if m["role"] == "tool"]
    assert tool_messages and "declined" in tool_messages[0]["content"]


async def test_read_only_tools_skip_approval_when_configured(mcp_url):
    llm = ScriptedLlm({"name": "add", "arguments": '{"a": 4, "b": 4}'})
    engine, t = await configured(mcp_url, llm, require_approval={"never": {"read_only": True}})
    send(engine, type="response.create")
    await sent(engine, "response.done")
    assert t.of("response.output_item.done")[0]["item"]["output"] == "8"


async def test_unreachable_server_fails_its_listing_with_a_clear_error():
    engine, t = make_engine({"type": "realtime", "tools": [mcp_tool("http://127.0.0.1:9/mcp")]})
    await sent(engine, "mcp_list_tools.failed")
    error = t.of("error")[-1]["error"]
    assert error["code"] == "mcp_list_tools_failed" and "server_url" in error["message"]
    done = next(e for e in t.of("conversation.item.done") if e["item"]["type"] == "mcp_list_tools")
    assert done["item"]["tools"] == []
    # sending the definition again (say, once the server is up) lists it again
    send(engine, type="session.update", session={"type": "realtime", "tools": [mcp_tool("http://127.0.0.1:9/mcp")]})
    await sent(engine, "mcp_list_tools.failed", 2)


@pytest.mark.parametrize("tool, param", [
    ({"type": "mcp", "server_label": "cal", "connector_id": "connector_googlecalendar"}, "session.tools.0.connector_id"),
    ({"type": "mcp", "server_label": "nowhere"}, "session.tools.0.server_url"),
    ({"type": "mcp", "server_label": "x", "server_url": "ftp://example.com"}, "session.tools.0.server_url"),
])
async def test_definitions_that_cannot_be_served_are_rejected(tool, param):
    engine, t = make_engine()
    send(engine, type="session.update", session={"type": "realtime", "tools": [tool]})
    await settle(engine)
    assert t.of("error")[-1]["error"]["param"] == param
    assert not t.of("session.updated") and not t.of("mcp_list_tools.in_progress")


async def test_a_server_tool_choice_offers_only_that_servers_tools_and_requires_a_call(mcp_url):
    llm = ScriptedLlm({"name": "get_weather", "arguments": '{"city": "Oslo"}'})
    engine, t = make_engine({"type": "realtime", "output_modalities": ["text"], "tools": [
        mcp_tool(mcp_url, require_approval="never"),
        {"type": "function", "name": "set_timer", "parameters": {"type": "object", "properties": {}}}]}, llm=llm)
    await sent(engine, "mcp_list_tools.completed")
    send(engine, type="response.create", response={"tool_choice": {"type": "mcp", "server_label": "weather"}})
    await sent(engine, "response.done")
    request = llm.requests[0]
    assert {tool["function"]["name"] for tool in request.tools} == {"get_weather", "add", "broken"}
    assert request.tool_choice == "required"
    send(engine, type="response.create",
         response={"tool_choice": {"type": "mcp", "server_label": "weather", "name": "get_weather"}})
    await sent(engine, "response.done", 2)
    assert llm.requests[1].tool_choice == {"type": "function", "function": {"name": "get_weather"}}


async def test_a_server_on_an_internal_address_is_refused_naming_the_policy_and_the_flag():
    with listening() as listener:
        engine, t = make_engine({"type": "realtime", "tools": [mcp_tool(f"http://127.0.0.1:{listener.port}/mcp")]},
                                egress=None)  # the default policy of a session built without one
        await sent(engine, "mcp_list_tools.failed")
        error = t.of("error")[-1]["error"]
        assert error["code"] == "mcp_list_tools_failed" and error["type"] == "invalid_request_error"
        message = error["message"]
        assert "'weather'" in message and "egress policy" in message and "127.0.0.1 is a loopback address" in message
        assert "--mcp-allow HOST|CIDR" in message and "OPENREALTIME_MCP_ALLOW" in message
        done = next(e for e in t.of("conversation.item.done") if e["item"]["type"] == "mcp_list_tools")
        assert done["item"]["tools"] == []
        assert listener.connections == 0
        engine.close()


def redirecting_calls(inner, location: str):
    """An MCP server that answers `tools/call` with a redirect to `location` (the rest as usual)."""
    async def app(scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await inner(scope, receive, send)
        body, more = b"", True
        while more:
            event = await receive()
            body, more = body + event.get("body", b""), event.get("more_body", False)
        if json.loads(body).get("method") == "tools/call":
            await send({"type": "http.response.start", "status": 307, "headers": [(b"location", location.encode())]})
            await send({"type": "http.response.body", "body": b""})
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await inner(scope, replay, send)

    return app


async def test_a_call_redirected_to_an_internal_address_fails_with_the_items_error():
    with listening() as listener:
        app = redirecting_calls(build_server().streamable_http_app(), f"http://169.254.169.254:{listener.port}/")
        with serving(app) as url:
            llm = ScriptedLlm({"name": "get_weather", "arguments": '{"city": "Paris"}'})
            engine, t = await configured(url, llm, require_approval="never")
            send(engine, type="response.create")
            await sent(engine, "response.done")
            call = t.of("response.output_item.done")[0]["item"]
            assert call["type"] == "mcp_call" and call["output"] is None
            assert call["error"]["type"] == "http_error"
            assert "169.254.169.254 is a link-local (cloud metadata) address" in call["error"]["message"]
            assert "--mcp-allow" in call["error"]["message"]
            assert t.of("response.mcp_call.failed")
            engine.close()
        assert listener.connections == 0
