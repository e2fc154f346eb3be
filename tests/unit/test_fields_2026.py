"""The 2026 Realtime fields (openai-python 3.63; ../shared/spec/openai-realtime-deltas.md): accepted,
validated, echoed, and honoured where this server can — on the real session engine with scripted models."""

from __future__ import annotations

import base64

import pytest

from openrealtime.engines.base import ChatRequest
from openrealtime.engines.openai_compat.http import RemoteEndpoint
from openrealtime.engines.openai_compat.llm import OpenAICompatLLM
from openrealtime.protocol.errors import ProtocolError
from openrealtime.protocol.session import parse_session_config
from openrealtime.session.transcription import whisper_prompt
from openrealtime.session.voices import check_session_voice
from tests.support import ScriptedLlm, ScriptedStt, ToneTts, fake_stack, speech
from tests.unit.test_engine_turns import make_engine, send, settle

FULL_2026 = {
    "type": "realtime", "model": "gpt-realtime-2", "parallel_tool_calls": False, "reasoning": {"effort": "low"},
    "audio": {"input": {"noise_reduction": {"type": "far_field", "strength": 0.5},
                        "transcription": {"model": "gpt-transcribe", "languages": ["en", "de"],
                                          "keywords": ["Kwik Byte", "openrealtime"], "delay": "low"}},
              "output": {"voice": "marin"}},
    "tools": [{"type": "mcp", "server_label": "docs", "server_url": "https://mcp.example.com/mcp",
               "allowed_callers": ["direct"], "defer_loading": False}],
}


def test_every_2026_session_field_is_accepted_and_echoed():
    config = parse_session_config(FULL_2026)
    echoed = config.model_dump(mode="json")
    assert echoed["parallel_tool_calls"] is False and echoed["reasoning"] == {"effort": "low"}
    tc = echoed["audio"]["input"]["transcription"]
    assert tc["languages"] == ["en", "de"] and tc["keywords"] == ["Kwik Byte", "openrealtime"] and tc["delay"] == "low"
    assert echoed["audio"]["input"]["noise_reduction"] == {"type": "far_field", "strength": 0.5}
    assert echoed["tools"][0]["allowed_callers"] == ["direct"]
    # strength is 1 when noise reduction is first enabled
    plain = parse_session_config({"type": "realtime", "audio": {"input": {"noise_reduction": {"type": "near_field"}}}})
    assert plain.audio.input.noise_reduction.strength == 1.0


@pytest.mark.parametrize("session, param", [
    ({"reasoning": {"effort": "maximum"}}, "session.reasoning.effort"),
    ({"parallel_tool_calls": "sometimes"}, "session.parallel_tool_calls"),
    ({"audio": {"input": {"transcription": {"languages": ["english!"]}}}}, "session.audio.input.transcription.languages.0"),
    ({"audio": {"input": {"transcription": {"delay": "instant"}}}}, "session.audio.input.transcription.delay"),
    ({"audio": {"input": {"noise_reduction": {"type": "far_field", "strength": -1}}}},
     "session.audio.input.noise_reduction.strength"),
])
def test_bad_2026_values_are_refused_naming_the_field(session, param):
    with pytest.raises(ProtocolError) as err:
        parse_session_config({"type": "realtime", **session})
    assert err.value.param == param


async def test_session_update_echoes_the_2026_fields():
    engine, t = make_engine()
    send(engine, type="session.update", session={k: v for k, v in FULL_2026.items() if k not in ("tools", "model")})
    updated = t.events[-1]
    assert updated["type"] == "session.updated", updated
    assert updated["session"]["reasoning"] == {"effort": "low"} and updated["session"]["parallel_tool_calls"] is False
    assert updated["session"]["audio"]["input"]["transcription"]["keywords"] == ["Kwik Byte", "openrealtime"]


@pytest.mark.parametrize("tool, param, says", [
    ({"tunnel_id": "tun_1"}, "session.tools.0.tunnel_id", "Secure MCP Tunnels"),
    ({"server_url": "https://mcp.example.com/mcp", "defer_loading": True}, "session.tools.0.defer_loading",
     "tool search"),
    ({"server_url": "https://mcp.example.com/mcp", "allowed_callers": ["programmatic"]},
     "session.tools.0.allowed_callers", "direct"),
])
async def test_mcp_fields_this_server_cannot_honour_are_clear_errors(tool, param, says):
    engine, t = make_engine()
    send(engine, type="session.update", session={"type": "realtime", "tools": [
        {"type": "mcp", "server_label": "x", **tool}]})
    error = t.events[-1]
    assert error["type"] == "error" and error["error"]["param"] == param and says in error["error"]["message"]


async def test_reasoning_and_parallel_tool_calls_reach_the_model_request():
    llm = ScriptedLlm("Hi.")
    engine, t = make_engine({"type": "realtime", "reasoning": {"effort": "high"}, "tools": [
        {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]}, llm=llm)
    send(engine, type="response.create", response={"output_modalities": ["text"]})
    await settle(engine)
    assert llm.requests[-1].reasoning_effort == "high" and llm.requests[-1].parallel_tool_calls is None
    send(engine, type="response.create", response={"output_modalities": ["text"], "parallel_tool_calls": True,
                                                    "reasoning": {"effort": "minimal"}})
    await settle(engine)
    assert llm.requests[-1].reasoning_effort == "minimal" and llm.requests[-1].parallel_tool_calls is True


def test_a_remote_model_is_sent_reasoning_effort_and_parallel_tool_calls():
    llm = OpenAICompatLLM(RemoteEndpoint("http://127.0.0.1:9/v1", model="gpt-realtime-2"))
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    body = llm.build_body(ChatRequest(messages=[{"role": "user", "content": "hi"}], tools=tools,
                                      reasoning_effort="low", parallel_tool_calls=False))
    assert body["reasoning_effort"] == "low" and body["parallel_tool_calls"] is False
    plain = llm.build_body(ChatRequest(messages=[{"role": "user", "content": "hi"}]))
    assert "reasoning_effort" not in plain and "parallel_tool_calls" not in plain


@pytest.mark.parametrize("parallel, calls", [(False, 1), (True, 2), (None, 2)])
async def test_parallel_tool_calls_false_keeps_one_call_per_response(parallel, calls):
    two = [{"name": "get_weather", "arguments": '{"city": "Paris"}'},
           {"name": "get_weather", "arguments": '{"city": "Rome"}'}]
    session = {"type": "realtime", "tools": [{"type": "function", "name": "get_weather"}]}
    if parallel is not None:
        session["parallel_tool_calls"] = parallel
    engine, t = make_engine(session, llm=ScriptedLlm(two))
    send(engine, type="response.create", response={"output_modalities": ["text"]})
    await settle(engine)
    done = t.of("response.done")[-1]["response"]
    assert [o["type"] for o in done["output"]] == ["function_call"] * calls
    assert len(t.of("response.function_call_arguments.done")) == calls
    assert all(e["name"] == "get_weather" for e in t.of("response.function_call_arguments.done"))


async def test_keywords_and_languages_reach_the_transcription_and_the_language_is_reported():
    stt = ScriptedStt("Book a table at Kwik Byte.", language="en")
    engine, t = make_engine({"type": "realtime", "audio": {"input": {"turn_detection": None, "transcription": {
        "model": "gpt-transcribe", "prompt": "Restaurant bookings.", "keywords": ["Kwik Byte"],
        "languages": ["de", "en"]}}}})
    engine.models.stt = stt
    engine.transcriber.models = engine.models
    send(engine, type="input_audio_buffer.append", audio=base64.b64encode(speech(1000)).decode())
    send(engine, type="input_audio_buffer.commit")
    await settle(engine)
    assert stt.prompts[-1] == "Restaurant bookings. Kwik Byte" and stt.candidates[-1] == ["de", "en"]
    completed = t.of("conversation.item.input_audio_transcription.completed")[-1]
    assert completed["languages"] == [{"code": "en"}]


async def test_without_candidate_languages_no_languages_field_is_sent():
    engine, t = make_engine({"type": "realtime", "audio": {"input": {"turn_detection": None, "transcription": {
        "model": "whisper-1"}}}})
    send(engine, type="input_audio_buffer.append", audio=base64.b64encode(speech(1000)).decode())
    send(engine, type="input_audio_buffer.commit")
    await settle(engine)
    assert "languages" not in t.of("conversation.item.input_audio_transcription.completed")[-1]


def test_whisper_prompt_appends_keywords():
    assert whisper_prompt(None, None) is None
    assert whisper_prompt("Hi.", []) == "Hi."
    assert whisper_prompt(None, ["Qdrant", " Kwik Byte "]) == "Qdrant, Kwik Byte"
    assert whisper_prompt("About databases.", ["Qdrant"]) == "About databases. Qdrant"


class CatalogTts(ToneTts):
    def voice_ids(self) -> list[str]:
        return ["en_US-joe-medium"]


def test_a_custom_voice_must_be_a_configured_one():
    models = fake_stack()
    models.tts = CatalogTts()
    check_session_voice(parse_session_config({"type": "realtime", "audio": {"output": {"voice": {
        "id": "en_US-joe-medium"}}}}), models)
    check_session_voice(parse_session_config({"type": "realtime", "audio": {"output": {"voice": "marin"}}}), models)
    with pytest.raises(ProtocolError) as err:
        check_session_voice(parse_session_config({"type": "realtime", "audio": {"output": {"voice": {
            "id": "voice_123"}}}}), models)
    assert err.value.param == "session.audio.output.voice" and "en_US-joe-medium" in err.value.message
    # a TTS without a catalog (a remote server) decides itself
    check_session_voice(parse_session_config({"type": "realtime", "audio": {"output": {"voice": {
        "id": "voice_123"}}}}), fake_stack())


async def test_a_response_asking_for_an_unknown_custom_voice_is_refused():
    engine, t = make_engine()
    engine.models.tts = CatalogTts()
    send(engine, type="response.create", response={"audio": {"output": {"voice": {"id": "voice_999"}}}})
    error = t.events[-1]
    assert error["type"] == "error" and error["error"]["param"] == "response.audio.output.voice"
