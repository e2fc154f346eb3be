"""Responses delegation in one pass with the stock openai-python SDK: with `delegation.responses.model` equal to
the session's model, the voice model itself calls the backend's tools (no second language-model pass). The
wire is that of responses delegation: `session.delegation.created {target: responses}` and valid Responses
events in `response.event` (checked strictly by the Reader) for the application's function, answered with
`response.item.create` + `response.create`, and for an MCP tool (a real FastMCP server) that the server runs
itself, the answer following on its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from openrealtime.engines.base import ChatRequest
from tests.live.conftest import START, Reader, client_for, live_server, send_pcm
from tests.live.test_live_delegation import TURN, WEATHER_TOOL, RoutedLlm, _call, _text, function_call_answered
from tests.support import running_mcp_server


class OnePassLlm(RoutedLlm):
    """The voice model of a one-pass session: a user turn calls `get_weather` (whichever tool offers it); a
    tool's output is read out. Records every request."""

    def answer(self, request: ChatRequest) -> Iterator[Any]:
        last = request.messages[-1]
        names = {t["function"]["name"] for t in request.tools}
        if last["role"] == "tool":
            yield from _text(f"Here it is: {last['content']}")
        elif last["role"] == "user" and "get_weather" in names:
            yield from _call("get_weather", '{"city": "Paris"}')
        else:
            yield from _text("One moment.")


async def test_one_pass_function_call_then_the_answer_is_spoken():
    llm = OnePassLlm()
    delegation = {"type": "responses", "responses": {"model": "gpt-live-1", "tools": [WEATHER_TOOL]}}
    async with live_server(llm) as server:
        async with client_for(server).live.connect() as conn:
            reader = Reader(conn)
            await conn.session.start(session={**START, "delegation": delegation})
            await reader.next("session.started")
            created = await function_call_answered(conn, reader)
            second = await reader.next(lambda e: e["type"] == "response.event" and e["event"]["type"] ==
                                       "response.completed" and e["event"]["response"]["id"] != created["response_id"])
            assert second["delegation_id"] == created["id"]
            text = [e["event"]["text"] for e in reader.of("response.event")
                    if e["event"]["type"] == "response.output_text.done"]
            assert text == ['Here it is: {"temperature": 21}']
            await reader.next(lambda e: '21}' in reader.text("session.output_transcript.delta"))
            numbers = [e["event"]["sequence_number"] for e in reader.of("response.event")]
            start = numbers.index(0, 1)
            assert numbers == list(range(start)) + list(range(len(numbers) - start))
    # one pass: every model request is the voice model's (its tools are the backend's; no `delegate`)
    assert all({t["function"]["name"] for t in r.tools} == {"get_weather"} for r in llm.requests)


async def test_one_pass_mcp_tool_runs_on_the_server_and_the_answer_follows():
    llm = OnePassLlm()
    with running_mcp_server() as url:
        mcp = {"type": "mcp", "server_label": "weather", "server_url": url, "allowed_tools": ["get_weather"],
               "require_approval": "never"}
        delegation = {"type": "responses", "responses": {"model": "gpt-live-1", "tools": [mcp]}}
        async with live_server(llm, mcp_allow=["127.0.0.1"]) as server:
            async with client_for(server).live.connect() as conn:
                reader = Reader(conn)
                await conn.session.start(session={**START, "delegation": delegation})
                await reader.next("session.started")
                await reader.drain(1.0)  # the MCP server's tools are listed in the background
                await send_pcm(conn, TURN)
                created = (await reader.next("session.delegation.created"))["delegation"]
                call = (await reader.next(lambda e: e["type"] == "response.event" and e["event"]["type"] ==
                                          "response.output_item.done"))["event"]["item"]
                assert call["type"] == "mcp_call" and call["server_label"] == "weather"
                assert call["output"] == "It is 21 degrees and sunny in Paris." and call["status"] == "completed"
                kinds = [e["event"]["type"] for e in reader.of("response.event")]
                assert kinds[-3:] == ["response.mcp_call_arguments.done", "response.mcp_call.completed",
                                      "response.output_item.done"]
                await reader.next(lambda e: "sunny in Paris." in reader.text("session.output_transcript.delta"))
                answer = await reader.next(lambda e: e["type"] == "response.event" and e["event"]["type"] ==
                                           "response.completed" and e["event"]["response"]["id"]
                                           != created["response_id"])
                assert answer["delegation_id"] == created["id"]


async def test_mcp_tools_outside_one_pass_are_refused_by_name():
    mcp = {"type": "mcp", "server_label": "weather", "server_url": "http://127.0.0.1:9/mcp"}
    async with live_server() as server:
        async with client_for(server).live.connect() as conn:
            reader = Reader(conn)
            await conn.session.start(session={**START, "delegation": {"type": "responses", "responses": {
                "model": "gpt-5-mini", "tools": [WEATHER_TOOL, mcp]}}}, event_id="s1")
            error = (await reader.next("error"))["error"]
            assert error["code"] == "unsupported_tool" and error["param"] == "session.delegation.responses.tools[1]"
            assert "one-pass" in error["message"] and error["client_event_id"] == "s1"
