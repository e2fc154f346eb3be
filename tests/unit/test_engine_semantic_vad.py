"""semantic_vad in the session engine, on a scripted end-of-turn model and the inline runtime: the same
events as server_vad, commits when the model (or the words) say the turn is over, the speculative
answer started at that verdict and adopted at the commit."""

import json
import math

from openrealtime.protocol.session import parse_session_config
from openrealtime.runtime_inline import InlineRuntime
from openrealtime.session.engine import SessionEngine
from openrealtime.session.turn_detection import EAGERNESS
from tests.support import RecordingTransport, ScriptedLlm, ScriptedStt, ScriptedTurn, fake_stack, silence, speech
from tests.unit.test_engine_turns import feed


def semantic_engine(turn: ScriptedTurn, *, stt: ScriptedStt | None = None, **detection):
    transport = RecordingTransport()
    config = parse_session_config({"type": "realtime", "audio": {"input": {
        "transcription": {"model": "whisper-1"}, "turn_detection": {"type": "semantic_vad", **detection}}}})
    engine = SessionEngine(transport, config, models=fake_stack(llm=ScriptedLlm(), stt=stt, turn=turn),
                           runtime=InlineRuntime())
    engine.start()
    return engine, transport


def speech_end(t: RecordingTransport) -> int:
    return t.of("input_audio_buffer.speech_started")[0]["audio_start_ms"] + 300 + 800  # prefix padding + speech


async def test_complete_turn_commits_after_the_minimum_silence_with_the_answer_ready():
    turn = ScriptedTurn(0.95)
    engine, t = semantic_engine(turn)
    await feed(engine, silence(400) + speech(800) + silence(600))
    stopped = t.of("input_audio_buffer.speech_stopped")[0]
    wait = stopped["audio_end_ms"] - speech_end(t)
    assert EAGERNESS["auto"].min_silence_ms <= wait < EAGERNESS["auto"].min_silence_ms + 100, stopped
    types = t.types()
    for a, b in [("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped"),
                 ("input_audio_buffer.speech_stopped", "input_audio_buffer.committed"),
                 ("input_audio_buffer.committed", "response.created")]:
        assert types.index(a) < types.index(b), (a, b)
    assert t.of("response.done")[0]["response"]["status"] == "completed"
    assert engine.stats["answers_speculated"] == 1 and engine.stats["answers_adopted"] == 1, engine.stats
    assert len(turn.heard_s) == 1 and 1.2 <= turn.heard_s[0] <= 1.3, "the turn so far: padding + speech + pause"
    assert engine.stats["turn_scores"] == 1


async def test_an_unsure_model_and_unfinished_words_wait_for_the_maximum():
    stt = ScriptedStt("I'd like to order a large pizza with")
    engine, t = semantic_engine(ScriptedTurn(0.3), stt=stt, eagerness="high")
    await feed(engine, silence(400) + speech(800) + silence(1800), chunk_ms=40)
    assert not t.of("input_audio_buffer.speech_stopped"), "a pause after a function word is not the end"
    assert engine.stats["answers_speculated"] == 0, "no answer for an unfinished turn"
    await feed(engine, silence(400), chunk_ms=40)
    stopped = t.of("input_audio_buffer.speech_stopped")[0]
    assert stopped["audio_end_ms"] - speech_end(t) >= EAGERNESS["high"].max_wait_ms
    assert t.of("response.done"), "committed at the maximum wait all the same"


async def test_finished_words_end_a_turn_the_model_was_unsure_of():
    engine, t = semantic_engine(ScriptedTurn(0.4))
    await feed(engine, silence(400) + speech(800) + silence(500))
    stopped = t.of("input_audio_buffer.speech_stopped")[0]
    assert stopped["audio_end_ms"] - speech_end(t) < 400, "ended by the transcript, not the maximum wait"
    assert engine.stats["answers_adopted"] == 1


async def test_create_response_false_commits_without_answering():
    engine, t = semantic_engine(ScriptedTurn(0.95), create_response=False)
    await feed(engine, silence(400) + speech(800) + silence(600))
    assert t.of("input_audio_buffer.committed") and t.of("conversation.item.input_audio_transcription.completed")
    assert not t.of("response.created") and engine.stats["answers_speculated"] == 0


async def test_session_update_switches_between_server_and_semantic_vad():
    turn = ScriptedTurn(0.95)
    engine, t = semantic_engine(turn)
    engine.handle_message(json.dumps({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}}}))
    await feed(engine, silence(400) + speech(800) + silence(700))
    stopped = t.of("input_audio_buffer.speech_stopped")[0]
    assert stopped["audio_end_ms"] - speech_end(t) >= 500 and turn.heard_s == [], "server_vad: silence only"


class DoubtfulStt(ScriptedStt):
    """A transcriber that computes logprobs itself (as local Whisper does) and doubts its last word."""

    logprobs_on_any_model = True

    def __init__(self, text: str, last_word_p: float) -> None:
        super().__init__(text)
        self.last_word_p = last_word_p
        self.asked_logprobs: list[bool] = []

    def transcribe(self, audio, *, logprobs=False, **kw):
        self.asked_logprobs.append(logprobs)
        result = super().transcribe(audio, logprobs=logprobs, **kw)
        if result.logprobs:
            result.logprobs[-1]["logprob"] = math.log(self.last_word_p)
        return result


async def test_words_the_transcriber_doubted_wait_for_the_longer_silence():
    stt = DoubtfulStt("My favorite colors.", 0.3)  # Whisper finishing "My favourite colour is,"
    engine, t = semantic_engine(ScriptedTurn(0.97), stt=stt)
    await feed(engine, silence(400) + speech(800) + silence(EAGERNESS["auto"].unsure_silence_ms + 300), chunk_ms=40)
    stopped = t.of("input_audio_buffer.speech_stopped")[0]
    wait = stopped["audio_end_ms"] - speech_end(t)
    assert EAGERNESS["auto"].unsure_silence_ms <= wait < EAGERNESS["auto"].unsure_silence_ms + 100, stopped
    assert stt.asked_logprobs and all(stt.asked_logprobs), "semantic_vad asks for the words' logprobs"
    done = t.of("conversation.item.input_audio_transcription.completed")[0]
    assert not done.get("logprobs"), "the session did not include logprobs: the events carry none"
    assert t.of("response.done"), "answered once committed"

    sure_stt = DoubtfulStt("What is the capital of France?", 0.95)
    engine, t = semantic_engine(ScriptedTurn(0.97), stt=sure_stt)
    await feed(engine, silence(400) + speech(800) + silence(600))
    stopped = t.of("input_audio_buffer.speech_stopped")[0]
    assert stopped["audio_end_ms"] - speech_end(t) < 400, "words it was sure of: the minimum silence"
