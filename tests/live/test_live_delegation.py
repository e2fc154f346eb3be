"""Delegation in OpenAI's Live API with the stock openai-python SDK (spec §5, items 8-9): the voice model hands a
task over with its `delegate` function; under client delegation the application gets
`session.delegation.created {target: client}` and answers with commentary that is spoken; under responses
delegation the backend (the server's language model) streams valid Responses events in `response.event`,
calls the application's function, and its answer, after `response.item.create` + `response.create`, is
spoken."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

from openrealtime.engines.base import ChatRequest, Finished, TextDelta, ToolCallDelta
from tests.live.conftest import START, Reader, client_for, live_server, send_pcm
from tests.support import silence, speech

TURN = silence(200) + speech(800) + silence(1200)
WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


class RoutedLlm:
    """A scripted model that answers by what it is asked, so the voice side and the backend (which run at
    once) each get their part whatever the order:
    - a request with `get_weather` (the backend): the function call, then, with its output, a sentence with it;
    - a request whose last message is the user's (the voice side, a new turn): a `delegate` call;
    - any other voice request: the last note from the application, read out ("... : <content>")."""

    supports_images = False

    def __init__(self) -> None:
        self.requests: list[ChatRequest] = []
        self.lock = threading.Lock()

    def stream_chat(self, request: ChatRequest, cancel: threading.Event) -> Iterator[Any]:
        with self.lock:
            self.requests.append(request)
        yield from self.answer(request)

    def answer(self, request: ChatRequest) -> Iterator[Any]:
        names = {t["function"]["name"] for t in request.tools}
        last = request.messages[-1]
        if "get_weather" in names:
            if last["role"] == "tool":
                yield from _text(f"In Paris it is {json.loads(last['content'])['temperature']} degrees.")
            else:
                yield from _call("get_weather", '{"city": "Paris"}')
        elif last["role"] == "user":
            yield from _call("delegate", '{"task": "Find the weather in Paris."}')
        else:
            notes = [m["content"] for m in request.messages if m["role"] == "system" and ": " in m["content"]]
            yield from _text(notes[-1].rsplit(": ", 1)[1] if len(notes) > 1 else "One moment.")


def _call(name: str, arguments: str) -> Iterator[Any]:
    yield ToolCallDelta(index=0, call_id=f"call_{name}", name=name)
    yield ToolCallDelta(index=0, arguments=arguments)
    yield Finished("tool_calls", input_tokens=20, output_tokens=8)


def _text(text: str) -> Iterator[Any]:
    for n, word in enumerate(text.split(" ")):
        yield TextDelta(word if n == 0 else " " + word)
    yield Finished("stop", input_tokens=20, output_tokens=len(text.split()))


async def test_client_delegation_then_commentary_is_spoken():
    async with live_server(RoutedLlm()) as server:
        async with client_for(server).live.connect() as conn:
            reader = Reader(conn)
            await conn.session.start(session={**START, "instructions": "Delegate weather questions."})
            await reader.next("session.started")
            await send_pcm(conn, TURN)
            created = await reader.next("session.delegation.created")
            delegation = created["delegation"]
            assert delegation["target"] == "client" and delegation["id"].startswith("deleg_")
            assert "response_id" not in delegation and created["offset_ms"] >= 1000
            await reader.next(lambda e: "moment." in reader.text("session.output_transcript.delta"))  # the ack
            await conn.session.thinking.append(content="The user is in Paris.", delegation_id=delegation["id"])
            await reader.next("session.thinking.appended")
            await conn.session.commentary.append(content="It is sunny in Paris today.",
                                                 delegation_id=delegation["id"], event_id="c1")
            assert (await reader.next("session.commentary.appended"))["client_event_id"] == "c1"
            await reader.next(lambda e: "sunny in Paris today." in reader.text("session.output_transcript.delta"))
            await reader.next("session.output_audio.delta")


def nested(kind: str):
    return lambda e: e["type"] == "response.event" and e["event"]["type"] == kind


async def function_call_answered(conn: Any, reader: Reader) -> dict[str, Any]:
    """Responses delegation on the wire, whichever model calls the tool: a turn, `session.delegation.created
    {target: responses}`, the response calling `get_weather` (Responses events in `response.event`),
    `response.create` refused until the app sends the output, then the output and `response.create`.
    Returns the delegation."""
    await send_pcm(conn, TURN)
    created = (await reader.next("session.delegation.created"))["delegation"]
    assert created["target"] == "responses" and created["response_id"].startswith("resp_")
    first = await reader.next(nested("response.created"))
    assert first["delegation_id"] == created["id"] and first["event"]["response"]["id"] == created["response_id"]
    done = (await reader.next(nested("response.function_call_arguments.done")))["event"]
    assert done["name"] == "get_weather" and json.loads(done["arguments"]) == {"city": "Paris"}
    call = (await reader.next(nested("response.output_item.done")))["event"]["item"]
    assert call["type"] == "function_call" and call["status"] == "completed"
    await reader.next(nested("response.completed"))
    await conn.response.create(event_id="early")  # the output is still missing
    assert (await reader.next("error"))["error"]["code"] == "function_call_output_missing"
    await conn.response.item.create(item={"type": "function_call_output", "call_id": call["call_id"],
                                          "output": json.dumps({"temperature": 21})})
    await conn.response.create()
    return created


async def test_responses_delegation_calls_the_apps_function_and_speaks_the_answer():
    llm = RoutedLlm()
    delegation = {"type": "responses", "responses": {"model": "gpt-5-mini", "instructions": "You know the weather.",
                                                     "tools": [WEATHER_TOOL]}}
    async with live_server(llm) as server:
        async with client_for(server).live.connect() as conn:
            reader = Reader(conn)  # validates every nested event as a Responses ResponseStreamEvent
            await conn.session.start(session={**START, "delegation": delegation})
            await reader.next("session.started")
            created = await function_call_answered(conn, reader)
            await reader.next(lambda e: e["type"] == "response.event" and e["event"]["type"] == "response.completed"
                              and e["event"]["response"]["id"] != created["response_id"])
            text = [e["event"]["text"] for e in reader.of("response.event")
                    if e["event"]["type"] == "response.output_text.done"]
            assert text == ["In Paris it is 21 degrees."]
            await reader.next(lambda e: "21 degrees." in reader.text("session.output_transcript.delta"))
            numbers = [e["event"]["sequence_number"] for e in reader.of("response.event")]
            second = numbers.index(0, 1)  # each backend response numbers its events from 0
            assert numbers == list(range(second)) + list(range(len(numbers) - second))
        backend = [r for r in llm.requests if r.tools and r.tools[0]["function"]["name"] == "get_weather"]
        assert backend[0].messages[0] == {"role": "system", "content": "You know the weather."}
        assert backend[0].messages[1] == {"role": "user", "content": "Find the weather in Paris."}
