"""Wire shapes of client/server events and items against the spec's examples (§4, §6, §10, §10b)."""

from __future__ import annotations

import json

import pytest
from pydantic import TypeAdapter, ValidationError

from openrealtime.protocol import (
    CLIENT_EVENT_TYPES, SERVER_EVENT_TYPES, AssistantMessageItem, ClientAssistantMessageItem,
    ConversationItemAddedEvent, ConversationItemCreateEvent, ConversationItemDoneEvent,
    ConversationItemInputAudioTranscriptionCompletedEvent, ConversationItemInputAudioTranscriptionDeltaEvent,
    ConversationItemRetrievedEvent, FunctionCallItem, InputAudioBufferCommittedEvent,
    InputAudioBufferSpeechStartedEvent, InputAudioContent, InputTextContent, Item, ItemReference, LogProb,
    OutputAudioBufferStartedEvent, OutputAudioContent, ProtocolError, RealtimeResponse, RealtimeSessionConfig,
    ResponseAudio, ResponseAudioOutput, ResponseContentPartAddedEvent, ResponseCreatedEvent, ResponseCreateEvent,
    ResponseDoneEvent, ResponseFunctionCallArgumentsDoneEvent, ResponseOutputAudioTranscriptDeltaEvent,
    ResponseOutputItemAddedEvent, ResponsePart, ResponseUsage, SessionCreatedEvent, TextAudioTokens,
    TranscriptionTokenUsage, UserMessageItem, dump_event, error_event, item_to_wire, parse_client_event,
    parse_server_event, prepare_client_item, session_object, to_json,
)

# ---- §10b client examples ---------------------------------------------------------------------
CLIENT_EXAMPLES = [
    '{"type":"session.update","session":{"type":"realtime","instructions":"Be brief.","audio":{"input":{"turn_detection":{"type":"semantic_vad"}},"output":{"voice":"marin"}},"tools":[{"type":"function","name":"get_weather","description":"...","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}],"tool_choice":"auto"}}',  # noqa: E501
    '{"type":"conversation.item.create","item":{"type":"message","role":"user","content":[{"type":"input_text","text":"What is this?"},{"type":"input_image","image_url":"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGNgYGAAAAAEAAH2FzhVAAAAAElFTkSuQmCC","detail":"auto"}]}}',  # noqa: E501
    '{"type":"conversation.item.create","item":{"type":"function_call_output","call_id":"call_sHlR7iaFwQ2YQOqm","output":"{\\"temp_c\\":21}"}}',  # noqa: E501
    '{"type":"response.create"}',
    '{"type":"response.create","response":{"conversation":"none","output_modalities":["text"],"metadata":{"topic":"classification"},"instructions":"Classify.","input":[{"type":"item_reference","id":"item_123"}]}}',  # noqa: E501
    '{"type":"response.cancel"}',
    '{"type":"output_audio_buffer.clear"}',
    '{"type":"conversation.item.truncate","item_id":"item_002","content_index":0,"audio_end_ms":1500}',
    # the remaining client events, not in §10b
    '{"type":"input_audio_buffer.append","audio":"AAAAAA==","event_id":"e1"}',
    '{"type":"input_audio_buffer.commit"}',
    '{"type":"input_audio_buffer.clear"}',
    '{"type":"conversation.item.retrieve","item_id":"item_1"}',
    '{"type":"conversation.item.delete","item_id":"item_1"}',
]


def _contains(big, small) -> bool:
    """Every key/value of `small` is in `big` (dumps may add defaults such as object/status)."""
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and _contains(big[k], v) for k, v in small.items())
    if isinstance(small, list):
        return isinstance(big, list) and len(big) == len(small) and all(map(_contains, big, small))
    return big == small


@pytest.mark.parametrize("raw", CLIENT_EXAMPLES)
def test_client_examples_round_trip(raw):
    ev = parse_client_event(raw)
    dumped = dump_event(ev)
    assert _contains(dumped, json.loads(raw))
    assert parse_client_event(to_json(ev)) == ev


def test_every_client_event_type_covered():
    assert {json.loads(r)["type"] for r in CLIENT_EXAMPLES} == set(CLIENT_EVENT_TYPES)
    assert len(CLIENT_EVENT_TYPES) == 11


def test_response_create_params_parsed():
    ev = parse_client_event(CLIENT_EXAMPLES[4])
    assert isinstance(ev, ResponseCreateEvent) and ev.response.out_of_band
    assert isinstance(ev.response.input[0], ItemReference)


# ---- §10b server examples: exact keys, values and nulls -------------------------------------
def _same(ev, expected: str) -> None:
    assert json.loads(to_json(ev)) == json.loads(expected)


def test_server_examples_exact():
    _same(InputAudioBufferSpeechStartedEvent(event_id="event_1516", audio_start_ms=1000, item_id="item_003"),
          '{"type":"input_audio_buffer.speech_started","event_id":"event_1516","audio_start_ms":1000,"item_id":"item_003"}')
    _same(InputAudioBufferCommittedEvent(event_id="event_1121", previous_item_id="item_001", item_id="item_003"),
          '{"type":"input_audio_buffer.committed","event_id":"event_1121","previous_item_id":"item_001","item_id":"item_003"}')
    resp = RealtimeResponse(id="resp_C9G8...", conversation_id="conv_C9G8...",
                            audio=ResponseAudio(output=ResponseAudioOutput(voice="marin")))
    _same(ResponseCreatedEvent(event_id="event_C9G8...", response=resp),
          '{"type":"response.created","event_id":"event_C9G8...","response":{"object":"realtime.response","id":"resp_C9G8...","status":"in_progress","status_details":null,"output":[],"conversation_id":"conv_C9G8...","output_modalities":["audio"],"max_output_tokens":"inf","audio":{"output":{"format":{"type":"audio/pcm","rate":24000},"voice":"marin"}},"usage":null,"metadata":null}}')  # noqa: E501
    _same(ResponseOutputItemAddedEvent(event_id="event_3334", response_id="resp_001", output_index=0,
                                       item=AssistantMessageItem(id="item_007", status="in_progress", content=[])),
          '{"type":"response.output_item.added","event_id":"event_3334","response_id":"resp_001","output_index":0,"item":{"id":"item_007","object":"realtime.item","type":"message","status":"in_progress","role":"assistant","content":[]}}')  # noqa: E501
    _same(OutputAudioBufferStartedEvent(event_id="event_51bb3e4b2b9a45b5", response_id="resp_001"),
          '{"type":"output_audio_buffer.started","event_id":"event_51bb3e4b2b9a45b5","response_id":"resp_001"}')
    _same(ResponseOutputAudioTranscriptDeltaEvent(event_id="event_4546", response_id="resp_001", item_id="item_007",
                                                  output_index=0, content_index=0, delta="Hello, how can I a"),
          '{"type":"response.output_audio_transcript.delta","event_id":"event_4546","response_id":"resp_001","item_id":"item_007","output_index":0,"content_index":0,"delta":"Hello, how can I a"}')  # noqa: E501
    _same(ResponseFunctionCallArgumentsDoneEvent(event_id="event_5556", response_id="resp_002", item_id="fc_001",
                                                 output_index=0, call_id="call_001", name="get_weather",
                                                 arguments='{"location": "San Francisco"}'),
          '{"type":"response.function_call_arguments.done","event_id":"event_5556","response_id":"resp_002","item_id":"fc_001","output_index":0,"call_id":"call_001","name":"get_weather","arguments":"{\\"location\\": \\"San Francisco\\"}"}')  # noqa: E501
    usage = TranscriptionTokenUsage(total_tokens=22, input_tokens=13, output_tokens=9,
                                    input_token_details=TextAudioTokens(text_tokens=0, audio_tokens=13))
    _same(ConversationItemInputAudioTranscriptionCompletedEvent(
              event_id="event_CCXG...", item_id="item_CCXG...", transcript="Hey, can you hear me?", usage=usage),
          '{"type":"conversation.item.input_audio_transcription.completed","event_id":"event_CCXG...","item_id":"item_CCXG...","content_index":0,"transcript":"Hey, can you hear me?","usage":{"type":"tokens","total_tokens":22,"input_tokens":13,"input_token_details":{"text_tokens":0,"audio_tokens":13},"output_tokens":9}}')  # noqa: E501
    with pytest.raises(ProtocolError) as info:
        parse_client_event('{"event_id":"event_567"}')
    ev = error_event(info.value)
    ev.event_id = "event_890"
    _same(ev, '{"type":"error","event_id":"event_890","error":{"type":"invalid_request_error","code":"invalid_event","message":"The \'type\' field is missing.","param":null,"event_id":"event_567"}}')  # noqa: E501


def test_session_created_has_example_keys():
    example = json.loads('{"type":"realtime","object":"realtime.session","id":"sess_C9G5QPteg4UIbotdKLoYQ","model":"gpt-realtime-2025-08-28","output_modalities":["audio"],"instructions":"...","tools":[],"tool_choice":"auto","max_output_tokens":"inf","tracing":null,"prompt":null,"expires_at":1756324625,"audio":{"input":{"format":{"type":"audio/pcm","rate":24000},"transcription":null,"noise_reduction":null,"turn_detection":{"type":"server_vad","threshold":0.5,"prefix_padding_ms":300,"silence_duration_ms":200,"idle_timeout_ms":null,"create_response":true,"interrupt_response":true}},"output":{"format":{"type":"audio/pcm","rate":24000},"voice":"marin","speed":1}},"include":null}')  # noqa: E501
    ev = SessionCreatedEvent(session=session_object(RealtimeSessionConfig(), id="sess_1", expires_at=1))
    got = dump_event(ev)["session"]

    def keys(d, prefix=""):
        out = set()
        for k, v in d.items():
            out.add(prefix + k)
            if isinstance(v, dict):
                out |= keys(v, prefix + k + ".")
        return out
    assert keys(example) <= keys(got)
    assert got["tracing"] is None and got["audio"]["input"]["transcription"] is None


# ---- every server event -----------------------------------------------------------------------
SPEC_SERVER_TYPES = """error session.created session.updated conversation.created rate_limits.updated
input_audio_buffer.speech_started input_audio_buffer.speech_stopped input_audio_buffer.committed
input_audio_buffer.cleared input_audio_buffer.timeout_triggered input_audio_buffer.dtmf_event_received
output_audio_buffer.started output_audio_buffer.stopped output_audio_buffer.cleared conversation.item.added
conversation.item.done conversation.item.created conversation.item.retrieved conversation.item.truncated
conversation.item.deleted conversation.item.input_audio_transcription.delta
conversation.item.input_audio_transcription.completed conversation.item.input_audio_transcription.failed
conversation.item.input_audio_transcription.segment response.created response.done response.output_item.added
response.output_item.done response.content_part.added response.content_part.done response.output_text.delta
response.output_text.done response.output_audio.delta response.output_audio.done
response.output_audio_transcript.delta response.output_audio_transcript.done response.function_call_arguments.delta
response.function_call_arguments.done response.mcp_call_arguments.delta response.mcp_call_arguments.done
response.mcp_call.in_progress response.mcp_call.completed response.mcp_call.failed mcp_list_tools.in_progress
mcp_list_tools.completed mcp_list_tools.failed""".split()

_USER = {"type": "message", "role": "user", "content": [{"type": "input_audio", "audio": "AAAA", "transcript": None}]}
_SAMPLE_FIELDS = {  # field name -> a valid value, enough to build every server event
    "error": {"message": "x"}, "session": session_object(RealtimeSessionConfig(), id="sess_1", expires_at=1),
    "rate_limits": [{"name": "requests", "limit": 10, "remaining": 9, "reset_seconds": 1.5}],
    "audio_start_ms": 0, "audio_end_ms": 10, "item_id": "item_1", "event": "5", "received_at": 1,
    "response_id": "resp_1", "item": _USER, "content_index": 0, "output_index": 0, "delta": "d",
    "transcript": "t", "usage": {"type": "duration", "seconds": 1.0}, "id": "seg_1", "text": "t",
    "speaker": "A", "start": 0.0, "end": 1.0, "response": RealtimeResponse(), "part": {"type": "text", "text": ""},
    "call_id": "call_1", "name": "f", "arguments": "{}", "previous_item_id": None,
}


def _sample(cls):
    required = {n: _SAMPLE_FIELDS[n] for n, f in cls.model_fields.items() if f.is_required()}
    if "transcription.failed" in cls.model_fields["type"].default:
        required["error"] = {"code": "audio_unintelligible", "message": "x"}
    return cls(**required)


def test_all_spec_server_events_defined():
    assert sorted(SERVER_EVENT_TYPES) == sorted(SPEC_SERVER_TYPES)


@pytest.mark.parametrize("kind", SPEC_SERVER_TYPES)
def test_every_server_event_serializes_and_parses(kind):
    ev = _sample(SERVER_EVENT_TYPES[kind])
    data = json.loads(to_json(ev))
    assert list(data)[:2] == ["type", "event_id"] and data["type"] == kind
    assert data["event_id"].startswith("event_") and len(data["event_id"]) == 27
    assert dump_event(ev) == data
    again = parse_server_event(to_json(ev))
    assert type(again) is type(ev) and again.event_id == ev.event_id
    if "item" in data and kind != "conversation.item.retrieved":
        assert "audio" not in data["item"]["content"][0]


def test_server_events_reject_unknown_fields():
    with pytest.raises(ValidationError):
        OutputAudioBufferStartedEvent(response_id="r", bogus=1)


# ---- items ------------------------------------------------------------------------------------
def test_audio_bytes_only_in_retrieved():
    item = UserMessageItem(id="item_1", content=[InputAudioContent(audio="AAAA")])
    for ev in (ConversationItemAddedEvent(item=item), ConversationItemDoneEvent(item=item)):
        assert dump_event(ev)["item"]["content"] == [{"type": "input_audio", "transcript": None}]
    assert dump_event(ConversationItemRetrievedEvent(item=item))["item"]["content"][0]["audio"] == "AAAA"
    assert item.content[0].audio == "AAAA"  # the model keeps the bytes
    reply = AssistantMessageItem(id="item_2", content=[OutputAudioContent(audio="AAAA", transcript="hi")])
    done = ResponseDoneEvent(response=RealtimeResponse(output=[reply]).finish("completed"))
    assert dump_event(done)["response"]["output"][0]["content"] == [{"type": "output_audio", "transcript": "hi"}]
    assert item_to_wire(reply, include_audio=True)["content"][0]["audio"] == "AAAA"


def test_omitted_nulls():
    delta = ConversationItemInputAudioTranscriptionDeltaEvent(item_id="i", delta="he")
    assert "logprobs" not in dump_event(delta)
    delta.logprobs = [LogProb(token="he", bytes=[104, 101], logprob=-0.1)]
    assert dump_event(delta)["logprobs"][0]["bytes"] == [104, 101]
    part = ResponseContentPartAddedEvent(response_id="r", item_id="i", output_index=0, content_index=0,
                                         part=ResponsePart(type="audio", transcript=""))
    assert dump_event(part)["part"] == {"type": "audio", "transcript": ""}


_ITEMS = TypeAdapter(Item)
PNG_1PX = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGNgYGAAAAAEAAH2FzhVAAAAAElFTkSuQmCC"


@pytest.mark.parametrize("role, part, ok", [
    ("system", {"type": "input_text", "text": "x"}, True),
    ("system", {"type": "input_audio", "audio": "AAAA"}, False),
    ("system", {"type": "output_text", "text": "x"}, False),
    ("user", {"type": "input_image", "image_url": PNG_1PX, "detail": "low"}, True),
    ("user", {"type": "output_text", "text": "x"}, False),
    ("assistant", {"type": "output_text", "text": "x"}, True),
    ("assistant", {"type": "input_text", "text": "x"}, False),
])
def test_client_role_content_combinations(role, part, ok):
    raw = json.dumps({"type": "conversation.item.create",
                      "item": {"type": "message", "role": role, "content": [part]}})
    if ok:
        assert parse_client_event(raw).item.role == role
    else:
        with pytest.raises(ProtocolError) as info:
            parse_client_event(raw)
        assert (info.value.code, info.value.param) == ("invalid_value", "item.content.0.type")


def test_clients_cannot_create_assistant_audio_but_server_can():
    item = {"type": "message", "role": "assistant", "content": [{"type": "output_audio", "transcript": "hi"}]}
    with pytest.raises(ProtocolError) as info:
        parse_client_event(json.dumps({"type": "conversation.item.create", "item": item}))
    assert info.value.param == "item.content.0.type"
    with pytest.raises(ProtocolError):
        parse_client_event(json.dumps({"type": "response.create", "response": {"input": [item]}}))
    assert isinstance(_ITEMS.validate_python(item), AssistantMessageItem)


def test_client_assistant_text_is_an_assistant_message():
    ev = parse_client_event('{"type":"conversation.item.create","item":{"type":"message","role":"assistant",'
                            '"content":[{"type":"output_text","text":"ok"}]}}')
    assert isinstance(ev.item, ClientAssistantMessageItem) and isinstance(ev.item, AssistantMessageItem)
    assert ev.item.text() == "ok"
    assert dump_event(ConversationItemAddedEvent(item=ev.item))["item"]["role"] == "assistant"


def test_prepare_client_item():
    ev = parse_client_event('{"type":"conversation.item.create","item":{"type":"function_call","name":"f",'
                            '"arguments":"{}","status":"in_progress"}}')
    assert isinstance(ev, ConversationItemCreateEvent)
    item = prepare_client_item(ev.item)
    assert isinstance(item, FunctionCallItem) and item.id.startswith("item_") and item.call_id.startswith("call_")
    assert item.status == "completed"
    kept = prepare_client_item(UserMessageItem(id="mine", content=[InputTextContent(text="a")]))
    assert kept.id == "mine"


# ---- response object --------------------------------------------------------------------------
def test_response_from_params():
    cfg = RealtimeSessionConfig()
    ev = parse_client_event('{"type":"response.create","response":{"conversation":"none","output_modalities":'
                            '["text"],"metadata":{"topic":"x"},"max_output_tokens":100,'
                            '"audio":{"output":{"voice":"cedar"}}}}')
    resp = RealtimeResponse.from_params(ev.response, cfg, conversation_id="conv_1")
    assert (resp.conversation_id, resp.output_modalities, resp.max_output_tokens) == (None, ["text"], 100)
    assert (resp.metadata, resp.audio.output.voice, resp.status) == ({"topic": "x"}, "cedar", "in_progress")
    default = RealtimeResponse.from_params(None, cfg, conversation_id="conv_1")
    assert (default.conversation_id, default.audio.output.voice, default.max_output_tokens) == ("conv_1", "alloy", "inf")
    assert default.id.startswith("resp_") and default.id != resp.id


def test_usage_totals_match_spec_example():
    usage = ResponseUsage.from_counts(input_text=119, input_audio=13, cached_text=64, output_text=30, output_audio=91)
    assert usage.model_dump() == json.loads(
        '{"total_tokens":253,"input_tokens":132,"output_tokens":121,"input_token_details":{"text_tokens":119,'
        '"audio_tokens":13,"image_tokens":0,"cached_tokens":64,"cached_tokens_details":{"text_tokens":64,'
        '"audio_tokens":0,"image_tokens":0}},"output_token_details":{"text_tokens":30,"audio_tokens":91}}')


def test_cancelled_status_details():
    resp = RealtimeResponse().finish("cancelled", reason="turn_detected")
    assert dump_event(ResponseDoneEvent(response=resp))["response"]["status_details"] == {
        "type": "cancelled", "reason": "turn_detected", "error": None}
