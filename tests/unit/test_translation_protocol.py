"""The translation wire types (protocol/translation.py) against openai-python 3.63's own: what the SDK sends
parses, what we send validates strictly as the SDK's models, and bad input names the field."""

import json

import pytest
from openai.types.realtime import RealtimeTranslationServerEvent
from openai.types.realtime.realtime_translation_client_secret_create_response import (
    RealtimeTranslationClientSecretCreateResponse,
)
from pydantic import TypeAdapter

from openrealtime.protocol.errors import ProtocolError
from openrealtime.protocol.translation import (
    InputTranscriptDeltaEvent,
    OutputAudioDeltaEvent,
    OutputTranscriptDeltaEvent,
    TranslationAudioAppendEvent,
    TranslationSessionClosedEvent,
    TranslationSessionCloseEvent,
    TranslationSessionConfig,
    TranslationSessionCreatedEvent,
    TranslationSessionObject,
    TranslationSessionUpdateEvent,
    apply_translation_update,
    parse_translation_event,
    parse_translation_session,
)

SDK_SERVER_EVENT = TypeAdapter(RealtimeTranslationServerEvent)


def parse(event: dict):
    return parse_translation_event(json.dumps(event))


def refused(event: dict) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse(event)
    return info.value


def test_client_events_as_the_sdk_sends_them():
    update = parse({"type": "session.update", "event_id": "e1", "session": {"audio": {
        "input": {"noise_reduction": {"type": "near_field", "strength": 0.5}, "transcription": {"model": "whisper-1"}},
        "output": {"language": "es"}}}})
    assert isinstance(update, TranslationSessionUpdateEvent) and update.event_id == "e1"
    assert isinstance(parse({"type": "session.input_audio_buffer.append", "audio": "AAAA"}), TranslationAudioAppendEvent)
    assert isinstance(parse({"type": "session.close"}), TranslationSessionCloseEvent)


def test_bad_client_events_name_the_field():
    assert refused({"type": "response.create"}).param == "type"
    err = refused({"type": "session.update", "event_id": "e2", "session": {"audio": {"output": {"voice": "alloy"}}}})
    assert (err.code, err.param, err.event_id) == ("unknown_parameter", "session.audio.output.voice", "e2")
    err = refused({"type": "session.update", "session": {"model": "other"}})
    assert err.param == "session.model" and "cannot be changed" in err.message
    assert refused({"type": "session.input_audio_buffer.append", "audio": "not base64!"}).param == "audio"
    assert refused({"type": "session.input_audio_buffer.append"}).code == "missing_required_parameter"
    err = refused({"type": "session.update", "session": {"audio": {"output": {"language": "no language"}}}})
    assert err.param == "session.audio.output.language"
    assert refused({"type": "session.close", "extra": 1}).code == "unknown_parameter"


def test_update_semantics():
    config = TranslationSessionConfig(model="gpt-realtime-translate")
    update = parse({"type": "session.update", "session": {"audio": {"input": {
        "noise_reduction": {"type": "far_field", "strength": 0.3}, "transcription": {"model": "whisper-1"}},
        "output": {"language": "ja"}}}})
    config = apply_translation_update(config, update.session)
    assert config.target_language == "ja" and config.audio.input.noise_reduction.strength == 0.3
    # a noise_reduction without strength keeps it; null clears; a missing key keeps
    update = parse({"type": "session.update", "session": {"audio": {"input": {
        "noise_reduction": {"type": "near_field"}, "transcription": None}}}})
    config = apply_translation_update(config, update.session)
    assert config.audio.input.noise_reduction.type == "near_field"
    assert config.audio.input.noise_reduction.strength == 0.3
    assert config.audio.input.transcription is None and config.target_language == "ja"
    assert config.model == "gpt-realtime-translate"


def test_session_request_needs_a_model():
    with pytest.raises(ProtocolError) as info:
        parse_translation_session({"audio": {"output": {"language": "es"}}})
    assert info.value.param == "session.model"
    with pytest.raises(ProtocolError) as info:
        parse_translation_session({"model": "m", "instructions": "x"})
    assert info.value.param == "session.instructions" and info.value.code == "unknown_parameter"
    assert parse_translation_session({"model": "m", "audio": {"output": {"language": "de"}}}).target_language == "de"


def test_server_events_validate_as_the_sdk_types():
    session = TranslationSessionObject(**TranslationSessionConfig(model="m").model_dump(), id="sess_1",
                                       expires_at=1, output_modalities=["text"], notice="text only")
    for event in (TranslationSessionCreatedEvent(session=session), TranslationSessionClosedEvent(),
                  InputTranscriptDeltaEvent(delta="Hola", elapsed_ms=200),
                  OutputTranscriptDeltaEvent(delta="Hello", elapsed_ms=400),
                  OutputAudioDeltaEvent(delta="AAAA", elapsed_ms=400)):
        data = json.loads(event.model_dump_json())
        sdk = SDK_SERVER_EVENT.validate_python(data, strict=True)
        assert sdk.type == event.type
    created = SDK_SERVER_EVENT.validate_python(json.loads(TranslationSessionCreatedEvent(session=session)
                                                          .model_dump_json()), strict=True)
    assert created.session.type == "translation" and created.session.model_extra["notice"] == "text only"
    secret = {"value": "ek_x", "expires_at": 2, "session": json.loads(session.model_dump_json())}
    RealtimeTranslationClientSecretCreateResponse.model_validate(secret, strict=True)
