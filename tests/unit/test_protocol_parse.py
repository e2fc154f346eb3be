"""parse_client_event: OpenAI error codes, params and event_id echo (spec §3, §4.1, §10b)."""

from __future__ import annotations

import json

import pytest

from openrealtime.protocol import (
    ConversationItemCreateEvent,
    InputAudioBufferAppendEvent,
    ProtocolError,
    RealtimeSessionConfig,
    SessionUpdateEvent,
    error_event,
    parse_client_event,
    to_json,
)

PNG_1PX = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGNgYGAAAAAEAAH2FzhVAAAAAElFTkSuQmCC"  # a real 1×1 PNG


def _err(raw: str | bytes, **kw) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_client_event(raw, **kw)
    return info.value


def _event(**fields) -> str:
    return json.dumps({"event_id": "evt_1", **fields}, ensure_ascii=False)


def _item_event(item: dict) -> str:
    return _event(type="conversation.item.create", item=item)


# ---- transport-level errors -------------------------------------------------------------------
def test_invalid_utf8():
    e = _err(b'{"type":"response.create","event_id":"e\xff"}')
    assert (e.code, e.type, e.param) == ("invalid_json", "invalid_request_error", None)
    assert "UTF-8" in e.message


def test_invalid_json_keeps_sniffed_event_id():
    e = _err('{"event_id":"my_evt","type":"response.create",')
    assert (e.code, e.event_id) == ("invalid_json", "my_evt")
    assert e.message.startswith("Invalid JSON")


@pytest.mark.parametrize("raw, kind", [("[1,2]", "an array"), ('"x"', "a string"), ("3", "an integer")])
def test_json_not_an_object(raw, kind):
    e = _err(raw)
    assert e.code == "invalid_json" and kind in e.message


def test_message_too_large():
    raw = _event(type="input_audio_buffer.append", audio="AAAA" * 100)
    e = _err(raw, max_bytes=64)
    assert (e.code, e.event_id) == ("message_too_large", "evt_1")
    e = _err(raw.encode(), max_bytes=64)
    assert e.code == "message_too_large"
    assert isinstance(parse_client_event(raw, max_bytes=len(raw)), InputAudioBufferAppendEvent)


def test_too_large_counts_utf8_bytes():
    raw = _event(type="conversation.item.create",
                 item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "é" * 40}]})
    assert _err(raw, max_bytes=len(raw) + 10).code == "message_too_large"
    parse_client_event(raw, max_bytes=len(raw.encode()))


# ---- type field -------------------------------------------------------------------------------
def test_missing_type():
    e = _err('{"event_id":"event_567"}')
    assert (e.code, e.message, e.param, e.event_id) == (
        "invalid_event", "The 'type' field is missing.", None, "event_567")


def test_unknown_type():
    e = _err('{"type":"scooby.dooby.doo","event_id":"my_awesome_event"}')
    assert (e.code, e.param, e.event_id) == ("invalid_value", "type", "my_awesome_event")
    assert e.message.startswith("Invalid value: 'scooby.dooby.doo'. Supported values are: 'session.update', ")
    assert e.message.endswith(", and 'output_audio_buffer.clear'.")


def test_beta_event_type_is_unknown():
    assert _err('{"type":"transcription_session.update","session":{}}').param == "type"


def test_type_not_a_string():
    e = _err('{"type":5,"event_id":"x"}')
    assert (e.code, e.param, e.event_id) == ("invalid_type", "type", "x")


# ---- field errors -----------------------------------------------------------------------------
@pytest.mark.parametrize("raw, code, param", [
    (_event(type="response.cancel", foo=1), "unknown_parameter", "foo"),
    (_item_event({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a", "x": 1}]}),
     "unknown_parameter", "item.content.0.x"),
    (_event(type="response.create", response={"voice": "marin"}), "unknown_parameter", "response.voice"),
    (_event(type="conversation.item.retrieve"), "missing_required_parameter", "item_id"),
    (_event(type="conversation.item.create"), "missing_required_parameter", "item"),
    (_item_event({"type": "function_call_output", "output": "x"}), "missing_required_parameter", "item.call_id"),
    (_item_event({"role": "user", "content": []}), "missing_required_parameter", "item.type"),
    (_item_event({"type": "message", "content": []}), "missing_required_parameter", "item.role"),
    (_item_event({"type": "message", "role": "user", "content": [{"text": "a"}]}),
     "missing_required_parameter", "item.content.0.type"),
    (_item_event({"type": "message", "role": "bot", "content": []}), "invalid_value", "item.role"),
    (_item_event({"type": "item_reference", "id": "item_1"}), "invalid_value", "item.type"),
    (_item_event({"type": "message", "role": "user", "content": [{"type": "input_image", "image_url": "x"}]}),
     "invalid_value", "item.content.0.image_url"),
    (_item_event({"type": "message", "role": "user",
                  "content": [{"type": "input_image", "image_url": PNG_1PX, "detail": "max"}]}),
     "invalid_value", "item.content.0.detail"),
    (_item_event({"type": "message", "role": "user", "content": [{"type": "input_text", "text": 3}]}),
     "invalid_type", "item.content.0.text"),
    (_item_event({"type": "message", "role": "user", "content": "hi"}), "invalid_type", "item.content"),
    (_event(type="conversation.item.truncate", item_id="i", content_index=0, audio_end_ms=-1),
     "invalid_value", "audio_end_ms"),
    (_event(type="conversation.item.truncate", item_id="i", content_index=0, audio_end_ms="5"),
     "invalid_type", "audio_end_ms"),
    (_event(type="conversation.item.truncate", item_id="i", content_index=0, audio_end_ms=1.5),
     "invalid_type", "audio_end_ms"),
    (_event(type="input_audio_buffer.append", audio="not base64!"), "invalid_value", "audio"),
    (_event(type="input_audio_buffer.append", audio=None), "invalid_type", "audio"),
    (_event(type="response.create", response={"max_output_tokens": 0}), "invalid_value",
     "response.max_output_tokens"),
    (_event(type="response.create", response={"max_output_tokens": "lots"}), "invalid_value",
     "response.max_output_tokens"),
    (_event(type="response.create", response={"output_modalities": ["audio", "text"]}), "invalid_value",
     "response.output_modalities"),
    (_event(type="response.create", response={"tool_choice": "sometimes"}), "invalid_value",
     "response.tool_choice"),
    (_event(type="response.create", response={"tools": [{"type": "web"}]}), "invalid_value",
     "response.tools.0.type"),
    (_event(type="response.create", response={"audio": {"output": {"format": {"type": "audio/pcm", "rate": 16000}}}}),
     "invalid_value", "response.audio.output.format.rate"),
    (_event(type="response.create", response={"metadata": {"k": "v" * 513}}), "invalid_value",
     "response.metadata.k"),
    (_event(type="response.create", response={"metadata": {f"k{i}": "v" for i in range(17)}}), "invalid_value",
     "response.metadata"),
    (_event(type="response.create", response={"input": [{"type": "item_reference"}]}),
     "missing_required_parameter", "response.input.0.id"),
    (_event(type="session.update", session="realtime"), "invalid_type", "session"),
])
def test_field_errors(raw, code, param):
    e = _err(raw)
    assert (e.code, e.param, e.event_id) == (code, param, "evt_1"), e.message
    assert e.type == "invalid_request_error"


def test_messages_follow_openai_wording():
    assert _err(_event(type="response.cancel", foo=1)).message == "Unknown parameter: 'foo'."
    assert _err(_event(type="conversation.item.retrieve")).message == "Missing required parameter: 'item_id'."
    msg = _err(_event(type="conversation.item.truncate", item_id="i", content_index=0, audio_end_ms="5")).message
    assert msg == "Invalid type for 'audio_end_ms': expected an integer, but got a string instead."
    msg = _err(_item_event({"type": "message", "role": "system", "content": [{"type": "input_audio"}]})).message
    assert msg == "Invalid value: 'input_audio'. Supported values are: 'input_text'."


def test_event_id_too_long_is_not_echoed():
    e = _err(json.dumps({"type": "response.cancel", "event_id": "x" * 513}))
    assert (e.param, e.event_id) == ("event_id", None)


def test_audio_size_cap():
    e = _err(_event(type="input_audio_buffer.append", audio="A" * (15 * 1024 * 1024 + 4)))
    assert (e.code, e.param) == ("invalid_value", "audio") and "too large" in e.message


def test_base64_decoded_once_validated():
    ev = parse_client_event(_event(type="input_audio_buffer.append", audio="AAECAw=="))
    assert ev.audio_bytes() == b"\x00\x01\x02\x03"


# ---- session.update is validated against the current config ---------------------------------
def test_session_update_apply_errors_carry_event_id():
    ev = parse_client_event(_event(type="session.update", session={"type": "realtime", "audio": {"output": {"speed": 3}}}))
    assert isinstance(ev, SessionUpdateEvent)
    with pytest.raises(ProtocolError) as info:
        ev.apply(RealtimeSessionConfig())
    assert (info.value.param, info.value.event_id, info.value.code) == ("session.audio.output.speed", "evt_1",
                                                                       "invalid_value")


@pytest.mark.parametrize("session, code, param", [
    ({"instructions": "x"}, "missing_required_parameter", "session.type"),
    ({"type": "realtime", "bogus": 1}, "unknown_parameter", "session.bogus"),
    ({"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": "x"}}}},
     "invalid_type", "session.audio.input.turn_detection.threshold"),
    ({"type": "realtime", "audio": {"input": {"turn_detection": {"type": "magic_vad"}}}},
     "invalid_value", "session.audio.input.turn_detection.type"),
])
def test_session_update_apply_params(session, code, param):
    ev = parse_client_event(_event(type="session.update", session=session))
    with pytest.raises(ProtocolError) as info:
        ev.apply(RealtimeSessionConfig())
    assert (info.value.code, info.value.param, info.value.event_id) == (code, param, "evt_1")


def test_session_update_partial_apply():
    ev = parse_client_event(_event(type="session.update", session={
        "type": "realtime", "audio": {"input": {"turn_detection": None}, "output": {"voice": "marin"}}}))
    cfg = ev.apply(RealtimeSessionConfig())
    assert cfg.audio.input.turn_detection is None and cfg.audio.output.voice == "marin"


# ---- error event ------------------------------------------------------------------------------
def test_error_event_shape():
    ev = error_event(_err('{"event_id":"event_567"}'))
    data = json.loads(to_json(ev))
    assert data["type"] == "error" and data["event_id"].startswith("event_")
    assert data["error"] == {"type": "invalid_request_error", "code": "invalid_event",
                             "message": "The 'type' field is missing.", "param": None, "event_id": "event_567"}


def test_bytes_input():
    raw = _item_event({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]})
    assert isinstance(parse_client_event(raw.encode()), ConversationItemCreateEvent)
    append = parse_client_event(b'{"type":"input_audio_buffer.append","audio":"AAAAAAAA","event_id":"e1"}')
    assert append.type == "input_audio_buffer.append" and append.audio == "AAAAAAAA"  # speed: bench/media_plane.py
