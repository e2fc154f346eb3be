"""A translation session (translation/session.py) over a recording transport with scripted models, on the
inline runtime: utterances cut by the VAD, transcribed, translated, spoken; text only where no voice speaks
the target; session.close flushes; bad events are answered with errors and the session goes on."""

import asyncio
import base64
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openrealtime.protocol.translation import TranslationSessionConfig
from openrealtime.runtime_inline import InlineRuntime
from openrealtime.translation.session import TranslationSession
from tests.support import RecordingTransport, ScriptedLlm, ScriptedStt, ToneTts, fake_stack, silence, speech


class EnglishTts(ToneTts):
    languages = ("en",)


class JapaneseTts(ToneTts):
    languages = ("ja",)


def make(target: str = "es", *, transcribe: bool = True, tts=None, llm=None):
    models = fake_stack(llm=llm or ScriptedLlm("¿Cuál es la capital de Francia?"),
                        stt=ScriptedStt("What is the capital of France?"))
    if tts is not None:
        models.tts = tts
    config = TranslationSessionConfig.model_validate({"model": "gpt-realtime-translate", "audio": {
        "input": {"transcription": {"model": "whisper-1"} if transcribe else None}, "output": {"language": target}}})
    transport = RecordingTransport(webrtc=False)
    session = TranslationSession(transport, config, models=models, runtime=InlineRuntime(), expires_at=123)
    session.start()
    return session, transport


def send(target, **event):
    target.handle_message(json.dumps(event))


async def append(session, pcm: bytes, chunk_ms: int = 200):
    for i in range(0, len(pcm), 48 * chunk_ms):
        send(session, type="session.input_audio_buffer.append",
             audio=base64.b64encode(pcm[i:i + 48 * chunk_ms]).decode())
        await session.runtime.settle()


async def test_an_utterance_is_transcribed_translated_and_spoken():
    session, t = make("es")
    created = t.events[0]
    assert created["type"] == "session.created" and created["session"]["type"] == "translation"
    assert created["session"]["output_modalities"] == ["text", "audio"] and created["session"]["notice"] is None
    await append(session, silence(400) + speech(1200) + silence(1000))
    assert "".join(e["delta"] for e in t.of("session.input_transcript.delta")) == "What is the capital of France?"
    assert "".join(e["delta"] for e in t.of("session.output_transcript.delta")) == "¿Cuál es la capital de Francia?"
    audio = t.of("session.output_audio.delta")
    assert audio and all(e["format"] == "pcm16" and e["sample_rate"] == 24000 and e["channels"] == 1 for e in audio)
    assert all(len(base64.b64decode(e["delta"])) <= 9600 for e in audio)
    elapsed = [e["elapsed_ms"] for e in t.events if "elapsed_ms" in e]
    assert elapsed == sorted(elapsed) and all(ms % 200 == 0 for ms in elapsed)
    types = t.types()
    assert types.index("session.input_transcript.delta") < types.index("session.output_transcript.delta")
    # the language model was asked for a translation into Spanish, framed as a task
    request = session.models.llm.requests[-1]
    assert "Spanish" in request.messages[0]["content"] and "What is the capital" in request.messages[-1]["content"]


async def test_two_utterances_are_joined_and_the_second_sees_the_first():
    session, t = make("es", llm=ScriptedLlm("Hola.", "¿Qué tal?"))
    await append(session, speech(800) + silence(800) + speech(800) + silence(800))
    assert [e["delta"] for e in t.of("session.output_transcript.delta")] == ["Hola.", " ¿Qué", " tal?"]
    assert [e["delta"] for e in t.of("session.input_transcript.delta")][1].startswith(" ")
    second = session.models.llm.requests[1]
    assert [m["role"] for m in second.messages] == ["system", "user", "assistant", "user"]


async def test_text_only_where_no_voice_speaks_the_target():
    session, t = make("ja", tts=EnglishTts(), transcribe=False)
    created = t.events[0]["session"]
    assert created["output_modalities"] == ["text"] and "Japanese" in created["notice"]
    await append(session, speech(1000) + silence(1000))
    assert t.of("session.output_transcript.delta") and not t.of("session.output_audio.delta")
    assert not t.of("session.input_transcript.delta")  # no audio.input.transcription
    send(session, type="session.update", session={"audio": {"output": {"language": "en"}}})
    updated = t.events[-1]
    assert updated["type"] == "session.updated" and updated["session"]["output_modalities"] == ["text", "audio"]
    await append(session, speech(1000) + silence(1000))
    assert t.of("session.output_audio.delta")


async def test_an_extra_voice_speaks_its_language():
    session, t = make("ja", tts=EnglishTts())
    session.models.voices = [JapaneseTts()]
    assert session.session_object().output_modalities == ["text", "audio"]
    send(session, type="session.update", session={"audio": {"output": {"language": "fr"}}})
    notice = t.events[-1]["session"]["notice"]
    assert "French" in notice and "English, Japanese" in notice
    send(session, type="session.update", session={"audio": {"output": {"language": "ja-JP"}}})
    await append(session, speech(1000) + silence(1000))
    assert t.of("session.output_audio.delta")


async def test_close_flushes_speech_still_going_on_then_closes():
    session, t = make("es")
    await append(session, speech(1000) + speech(100)[:2000])  # a partial frame at the end
    assert not t.of("session.output_transcript.delta")
    send(session, type="session.close")
    await session.runtime.settle()
    assert t.of("session.output_transcript.delta") and t.of("session.output_audio.delta")
    assert t.types()[-1] == "session.closed" and t.closed_reason == "session_closed"
    assert session.elapsed_ms == 1200


async def test_bad_events_get_errors_and_the_session_goes_on():
    session, t = make("es")
    session.handle_message("not json")
    send(session, type="response.create", event_id="e1")
    send(session, type="session.update", event_id="e2", session={"model": "other"})
    send(session, type="session.input_audio_buffer.append", event_id="e3", audio="***")
    errors = [e["error"] for e in t.of("error")]
    assert [e["code"] for e in errors] == ["invalid_json", "invalid_value", "unknown_parameter", "invalid_value"]
    assert [e["event_id"] for e in errors[1:]] == ["e1", "e2", "e3"]
    await append(session, speech(1000) + silence(1000))
    assert t.of("session.output_audio.delta")
    send(session, type="session.close")
    send(session, type="session.input_audio_buffer.append", event_id="late", audio="AAAA")
    assert t.of("error")[-1]["error"]["code"] == "session_closing"
    await session.runtime.settle()
    assert t.types()[-1] == "session.closed"


async def test_a_failed_voice_keeps_the_text():
    class BrokenTts(ToneTts):
        def synthesize(self, text, *, voice, speed, cancel):
            raise RuntimeError("voice broke")
            yield

    session, t = make("es", tts=BrokenTts())
    await append(session, speech(1000) + silence(1000))
    assert "".join(e["delta"] for e in t.of("session.output_transcript.delta")) == "¿Cuál es la capital de Francia?"
    assert t.of("error")[0]["error"]["code"] == "tts_error"
    await append(session, speech(1000) + silence(1000))
    assert len(t.of("session.output_transcript.delta")) > 5


async def test_the_prompt_is_prefilled_at_start_and_for_a_new_target():
    class PrefillingLlm(ScriptedLlm):
        def __init__(self, *script):
            super().__init__(*script)
            self.prefilled = []

        def prefill(self, request, cancel=None, *, complete=False):
            self.prefilled.append(request)
            return 1

    llm = PrefillingLlm("Hola.")
    session, t = make("es", llm=llm)
    await session.runtime.settle()
    assert len(llm.prefilled) == 1 and "Spanish" in llm.prefilled[0].messages[0]["content"]
    assert llm.prefilled[0].session_key == session.id
    send(session, type="session.update", session={"audio": {"output": {"language": "de"}}})
    await session.runtime.settle()
    assert "German" in llm.prefilled[-1].messages[0]["content"]


async def test_expiry_and_shutdown_say_why_then_close():
    session, t = make("es")
    session.expire()
    assert t.of("error")[-1]["error"]["code"] == "session_expired" and t.closed_reason == "session_expired"
    assert session.closed
    session, t = make("es")
    session.shut_down()
    assert t.of("error")[-1]["error"]["code"] == "server_shutting_down"
    assert t.closed_reason == "server_shutting_down"


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                    max_leaves=12)
EVENT = st.fixed_dictionaries({"type": st.sampled_from(["session.update", "session.input_audio_buffer.append",
                                                        "session.close", "session.created", "bogus"])},
                              optional={"session": JSON, "audio": JSON, "event_id": JSON, "extra": JSON})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(EVENT | JSON, max_size=6))
def test_any_client_event_gets_an_answer_or_nothing_never_a_crash(events):
    async def run():
        session, t = make("es")
        for event in events:
            before = len(t.events)
            session.handle_message(json.dumps(event))
            new = t.events[before:]
            assert len(new) <= 1 and all(e["type"] in ("error", "session.updated") for e in new), new
            for e in new:
                if e["type"] == "error":
                    assert set(e["error"]) >= {"type", "code", "message", "param"}
        await session.runtime.settle()
        session.close()

    asyncio.run(run())
