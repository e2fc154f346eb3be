"""@openai/agents-realtime (the official Agents SDK, stock) over its OpenAIRealtimeWebSocket transport
from Node: a spoken turn sent with sendAudio, an interrupt (response.cancel + conversation.item.truncate),
and a tool defined with the SDK's tool() helper."""

import pytest

from tests.compat.conftest import KEY, run_node
from tests.support import piper_wav


@pytest.mark.timeout(660)  # the Node client's own limit (600 s) is the clearer failure
async def test_agents_sdk_websocket_spoken_turn_interrupt_and_tool(compat_server, model_stack, node_js, tmp_path):
    wav = piper_wav(model_stack, tmp_path / "q.wav", "What is the capital of France?")
    url = compat_server.url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"
    result = await run_node("ws_agent.mjs", url, KEY, str(wav), timeout=600)
    assert "failure" not in result, result
    assert result["errors"] == [], result
    assert result["session_tools"] == ["get_weather"], result
    assert result["transcription"]["prompt"] == "Questions about capital cities of countries.", result
    assert "capital" in result["transcript"].lower(), result
    assert result["answer_status"] == "completed" and "paris" in result["answer"].lower(), result
    assert result["answer_audio_bytes"] > 24000 * 2 * 0.3, result

    interrupt = result["interrupt"]
    assert 0 <= interrupt["truncated_audio_end_ms"] <= interrupt["audio_ms_received"] + 1, result
    assert interrupt["response_status"] == "cancelled" and interrupt["status_reason"] == "client_cancelled", result

    assert [c.lower() for c in result["tool_calls"]] == ["paris"], result
    answer = result["tool_answer"] or ""
    assert "21" in answer or "sunny" in answer.lower(), result
