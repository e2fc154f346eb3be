"""An MCP tool used end to end by the real default language model (Qwen2.5-Coder-1.5B): the model
calls a remote server's tool, the server runs it on a real MCP server, the next response
answers from its output. (`tool_choice` names the server: sampled at the session's temperature the
1.5B model answers in words instead of calling a tool about 1 time in 6.)"""

from __future__ import annotations

import pytest

from openrealtime.engines.local.llm import LlamaCppLLM
from tests.mcp_server import running_mcp_server
from tests.unit.test_engine_turns import make_engine, send, settle

pytestmark = pytest.mark.models


async def test_the_local_model_calls_a_remote_mcp_tool_and_answers_from_its_output():
    llm = LlamaCppLLM("qwen2.5-1.5b")
    try:
        with running_mcp_server() as url:
            engine, t = make_engine({"type": "realtime", "output_modalities": ["text"], "tools": [
                {"type": "mcp", "server_label": "weather", "server_url": url, "require_approval": "never",
                 "allowed_tools": ["get_weather"]}]}, llm=llm, webrtc=False)
            await settle(t, "mcp_list_tools.completed", timeout=30)
            send(engine, type="conversation.item.create", item={
                "type": "message", "role": "user",
                "content": [{"type": "input_text", "text": "What's the weather like in Paris right now?"}]})
            send(engine, type="response.create",
                 response={"tool_choice": {"type": "mcp", "server_label": "weather"}})
            await settle(t, "response.done", timeout=120)
            call = t.of("response.output_item.done")[0]["item"]
            assert call["type"] == "mcp_call" and call["name"] == "get_weather", call
            assert "paris" in call["arguments"].lower() and "sunny in Paris" in call["output"]
            send(engine, type="response.create")
            await settle(t, "response.done", count=2, timeout=120)
            answer = t.of("response.done")[1]["response"]["output"][0]["content"][0]["text"].lower()
            assert any(word in answer for word in ("21", "sunny", "degrees")), answer
            engine.close()
    finally:
        llm.close()
