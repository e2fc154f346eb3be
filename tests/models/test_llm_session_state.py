"""Per-session prompt state of the local LLM ends with the session: the server's session engine tells the
model (`forget_session`) when a session closes, so an ended session's KV snapshot is not kept (up to 4 of
them, hundreds of MB with the default model, until the LRU pushed them out), and telling it never waits
for the model while another session's reply holds it. Real models (the `test` profile), a real server."""

from __future__ import annotations

import json
import threading

import pytest
from websockets.asyncio.client import connect

from openrealtime.api.embedded import embedded_server
from openrealtime.engines.base import ChatRequest, TextDelta
from tests.support import server_settings, wait_for, ws_event

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def stack():
    from openrealtime.engines.stack import load_model_stack
    from openrealtime.runtime import call_in_model_thread

    loaded = call_in_model_thread(lambda: load_model_stack("test"))
    yield loaded
    loaded.close()


async def ask(ws, text: str) -> None:
    await ws.send(json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}))
    await ws.send(json.dumps({"type": "response.create", "response": {"output_modalities": ["text"],
                                                                      "max_output_tokens": 8}}))
    done = await ws_event(ws, "response.done", timeout=60)
    assert done["response"]["status"] in ("completed", "incomplete"), done  # incomplete: max_output_tokens


async def test_a_closed_session_leaves_no_prompt_state(stack):
    llm = stack.llm
    async with embedded_server(server_settings(engine="local", profile="test"), models=stack) as server:
        url = server.url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"
        headers = {"Authorization": "Bearer test"}
        async with connect(url, additional_headers=headers) as a, connect(url, additional_headers=headers) as b:
            a_id = (await ws_event(a, "session.created"))["session"]["id"]
            b_id = (await ws_event(b, "session.created"))["session"]["id"]
            await ask(a, "Name a colour.")
            await ask(b, "Name a fruit.")  # B takes the model over: A's KV cache is kept as a snapshot
            assert a_id in llm.cached_sessions
            await a.close()

            async def forgotten():
                return a_id not in llm.cached_sessions
            await wait_for(forgotten, timeout=10, what="A's snapshot dropped when A ended")
            await ask(b, "Name another one.")
        await wait_for(lambda: _none_of(llm, a_id, b_id), timeout=10, what="no snapshot of an ended session")


async def _none_of(llm, *keys) -> bool:
    return not set(keys) & set(llm.cached_sessions)


def test_forgetting_never_waits_for_a_busy_model(stack):
    llm = stack.llm
    never = threading.Event()
    list(llm.stream_chat(ChatRequest(messages=[{"role": "user", "content": "Hi."}], max_tokens=4,
                                     session_key="sess_ended"), never))
    # another session's reply holds the model: it is mid-generation (its consumer has read one token)
    reply = llm.stream_chat(ChatRequest(messages=[{"role": "user", "content": "Count from 1 to 100."}],
                                        max_tokens=200, session_key="sess_busy"), never)
    next(event for event in reply if isinstance(event, TextDelta))
    try:
        assert "sess_ended" in llm.cached_sessions  # snapshotted when sess_busy took the model over
        forget = threading.Thread(target=llm.forget_session, args=("sess_ended",))
        forget.start()
        forget.join(30)  # a hang guard, not a timing bound: it must not wait for the reply to end
        assert not forget.is_alive(), "forget_session waited for the model"
    finally:
        reply.close()  # the reply ends; the model is free
    forget.join()
    # queued while the model was busy: dropped before the next session's turn takes a snapshot
    list(llm.stream_chat(ChatRequest(messages=[{"role": "user", "content": "Bye."}], max_tokens=4,
                                     session_key="sess_next"), never))
    assert "sess_ended" not in llm.cached_sessions
    llm.forget_session("sess_busy")
    llm.forget_session("sess_next")
    assert llm.cached_sessions == ()
