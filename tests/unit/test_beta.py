"""Beta ↔ GA translation at the transport edge (protocol/beta.py), sans IO."""

import json

from openrealtime.protocol import beta
from openrealtime.protocol.client_events import SessionUpdateEvent
from openrealtime.protocol.session import RealtimeSessionConfig, session_object


def test_flat_session_update_becomes_ga_and_comes_back_flat():
    flat = {"modalities": ["text", "audio"], "voice": "verse", "input_audio_format": "g711_ulaw",
            "output_audio_format": "pcm16", "input_audio_transcription": {"model": "whisper-1"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 300}, "temperature": 0.7,
            "max_response_output_tokens": 300, "instructions": "Be brief.", "speed": 1.1,
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}]}
    ga = beta.client_to_ga({"type": "session.update", "session": flat})
    config = SessionUpdateEvent.model_validate(ga).apply(RealtimeSessionConfig())
    assert config.output_modalities == ["audio"] and config.audio.output.voice == "verse"
    assert config.audio.input.format.type == "audio/pcmu" and config.audio.output.format.type == "audio/pcm"
    assert config.max_output_tokens == 300 and config.audio.output.speed == 1.1
    back = beta.session_to_beta(session_object(config, id="sess_1", expires_at=0).model_dump(mode="json"))
    assert {k: back[k] for k in ("modalities", "voice", "input_audio_format", "output_audio_format",
                                 "max_response_output_tokens", "instructions")} == {
        "modalities": ["text", "audio"], "voice": "verse", "input_audio_format": "g711_ulaw",
        "output_audio_format": "pcm16", "max_response_output_tokens": 300, "instructions": "Be brief."}
    assert back["turn_detection"]["silence_duration_ms"] == 300 and "audio" not in back


def test_server_events_renamed_and_item_events_folded():
    assert beta.server_to_beta({"type": "conversation.item.done", "item": {}}) is None
    added = beta.server_to_beta({"type": "conversation.item.added", "item": {
        "type": "message", "role": "assistant", "content": [{"type": "output_audio", "transcript": "hi"}]}})
    assert added["type"] == "conversation.item.created" and added["item"]["content"][0]["type"] == "audio"
    for ga, old in [("response.output_audio.delta", "response.audio.delta"),
                    ("response.output_audio_transcript.done", "response.audio_transcript.done"),
                    ("response.output_text.delta", "response.text.delta")]:
        assert beta.server_to_beta({"type": ga})["type"] == old
    done = beta.server_to_beta({"type": "response.done", "response": {
        "id": "resp_1", "output_modalities": ["text"], "output": [
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "x"}]}],
        "audio": {"output": {"format": {"type": "audio/pcmu"}, "voice": "alloy"}}}})
    assert done["response"]["modalities"] == ["text"] and done["response"]["output_audio_format"] == "g711_ulaw"
    assert done["response"]["output"][0]["content"][0]["type"] == "text" and "audio" not in done["response"]


def test_session_created_is_followed_by_conversation_created():
    texts = beta.server_text_to_beta(json.dumps({"type": "session.created", "event_id": "event_1", "session": {
        "type": "realtime", "id": "sess_1", "output_modalities": ["audio"]}}), "conv_1")
    assert [json.loads(t)["type"] for t in texts] == ["session.created", "conversation.created"]
    assert json.loads(texts[1])["conversation"] == {"id": "conv_1", "object": "realtime.conversation"}


def test_unreadable_client_messages_pass_through_for_the_engine_to_report():
    assert beta.client_text_to_ga("{not json", 1000) == "{not json"
    assert beta.client_text_to_ga("x" * 2000, 1000) == "x" * 2000
    out = json.loads(beta.client_text_to_ga(json.dumps({"type": "response.create", "response": {
        "modalities": ["text"], "temperature": 0.5, "voice": "ash"}}), 10_000))
    assert out["response"] == {"output_modalities": ["text"], "audio": {"output": {"voice": "ash"}}}


def test_beta_selected_by_header_or_subprotocol():
    assert beta.wants_beta("realtime=v1", [])
    assert beta.wants_beta(None, ["realtime", "openai-beta.realtime-v1"])
    assert not beta.wants_beta(None, ["realtime"]) and not beta.wants_beta("assistants=v2", [])
