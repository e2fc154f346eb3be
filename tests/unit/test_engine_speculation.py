"""Speculative work before a turn is committed: answer adoption, abandonment, prefix warming (on the
inline runtime: what a turn starts has run once `feed` returns)."""

import asyncio
import json

from openrealtime.engines.base import Transcript
from openrealtime.session import speculation
from openrealtime.session.turn_detection import SilenceBegan, SpeechResumed, SpeechStopped, TurnDetector, VadParams
from tests.support import ScriptedLlm, ScriptedStt, ToneTts, silence, speech
from tests.unit.test_engine_turns import feed, make_engine, settle

VOICE = {"type": "realtime", "audio": {"input": {
    "transcription": {"model": "whisper-1"},
    "turn_detection": {"type": "server_vad", "silence_duration_ms": 300, "prefix_padding_ms": 200}}}}


class LengthStt(ScriptedStt):
    """Hears the first words in audio shorter than `split_s`, the whole question in longer audio."""

    def __init__(self, short: str, full: str, split_s: float = 1.1) -> None:
        super().__init__(full)
        self.short, self.full, self.split_s = short, full, split_s

    def transcribe(self, audio, *, language=None, prompt=None, logprobs=False) -> Transcript:
        self.text = self.short if len(audio) / 16000 < self.split_s else self.full
        return super().transcribe(audio, logprobs=logprobs)


class PrefillLlm(ScriptedLlm):
    def __init__(self, *script, **kw) -> None:
        super().__init__(*script, **kw)
        self.prefills: list[str] = []
        self.complete: list[bool] = []

    def prefill(self, request, cancel=None, *, complete=False) -> int:
        self.prefills.append(request.messages[-1]["content"])
        self.complete.append(complete)
        return 5


def test_turn_detector_reports_a_resumed_pause():
    turn = TurnDetector(VadParams(silence_duration_ms=300))
    events = []
    t = 0.0
    for prob, ms in [(0.9, 500), (0.1, 160), (0.9, 200), (0.1, 400)]:
        for _ in range(int(ms / 32)):
            t += 32
            events += turn.feed(prob, t, 32)
    kinds = [type(e) for e in events]
    assert kinds.count(SilenceBegan) == 2 and kinds.count(SpeechResumed) == 1 and kinds.count(SpeechStopped) == 1
    assert kinds.index(SpeechResumed) < kinds.index(SpeechStopped)
    assert turn.speech_start_ms == 0


async def test_voice_turn_adopts_the_speculative_answer():
    llm = ScriptedLlm("Paris is the capital of France.")
    engine, t = make_engine(VOICE, llm=llm)
    await feed(engine, silence(400) + speech(700) + silence(220))  # a pause, not yet the end of the turn
    assert engine.stats["answers_speculated"] == 1
    assert "input_audio_buffer.committed" not in t.types()
    await feed(engine, silence(300))
    await settle(engine)
    assert engine.stats["answers_speculated"] == 1 and engine.stats["answers_adopted"] == 1
    assert len(llm.requests) == 1, "the model answered once: the speculative answer was used"
    assert llm.requests[0].messages[-1] == {"role": "user", "content": "What is the capital of France?"}
    types = t.types()
    # nothing of the answer reaches the client before the commit
    assert types.index("input_audio_buffer.committed") < types.index("response.created") \
        < types.index("response.output_audio_transcript.delta")
    done = t.of("response.done")[0]["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["content"][0]["transcript"] == "Paris is the capital of France."


class CountingTts(ToneTts):
    def __init__(self) -> None:
        self.texts: list[str] = []

    def synthesize(self, text, *, voice, speed, cancel):
        self.texts.append(text)
        yield from super().synthesize(text, voice=voice, speed=speed, cancel=cancel)


async def test_first_clause_is_synthesized_ahead_of_the_commit_and_played_from_there():
    llm = ScriptedLlm("Paris is the capital of France.")
    engine, t = make_engine(VOICE, llm=llm)
    tts = engine.models.tts = CountingTts()
    await feed(engine, silence(400) + speech(700) + silence(220))
    assert engine.stats["speech_speculated"] == 1
    assert tts.texts == ["Paris is the capital"]
    assert "input_audio_buffer.committed" not in t.types()
    assert t.play(5) == 0, "nothing is played before the commit"
    await feed(engine, silence(300))
    await settle(engine)
    assert engine.stats["speech_adopted"] == 1
    assert tts.texts == ["Paris is the capital", "of France."], "each clause synthesized once"
    # both clauses play: 60 ms of tone per word, 6 words = 18 frames of 20 ms
    assert t.play(40) == 18
    await settle(engine)
    types = t.types()
    assert types.index("input_audio_buffer.committed") < types.index("output_audio_buffer.started") \
        < types.index("output_audio_buffer.stopped")


async def test_speculative_speech_is_dropped_with_the_speculation():
    stt = LengthStt("What is the capital", "What is the capital of France?")
    llm = ScriptedLlm("Paris is the capital of France.")
    engine, t = make_engine(VOICE, llm=llm)
    engine.models.stt = stt
    tts = engine.models.tts = CountingTts()
    await feed(engine, silence(300) + speech(500) + silence(200))
    assert engine.stats["speech_speculated"] == 1
    stale = engine.speculator.current.speech
    assert stale is not None and stale.text == "Paris is the capital"
    await feed(engine, speech(500) + silence(500))  # the user goes on: that speech is stale
    await settle(engine)
    assert engine.stats["speculations_abandoned"] >= 1
    assert stale.cancel_event.is_set() and stale.audio.task.done()
    assert t.of("response.done")[0]["response"]["output"][0]["content"][0]["transcript"] == \
        "Paris is the capital of France."


async def test_speech_after_a_pause_abandons_the_speculation():
    stt = LengthStt("What is the capital", "What is the capital of France?")
    llm = ScriptedLlm("Paris.")
    engine, t = make_engine(VOICE, llm=llm)
    engine.models.stt = stt
    # a 160 ms pause: long enough to speculate, too short to end the turn
    await feed(engine, silence(300) + speech(500) + silence(160) + speech(500) + silence(500))
    await settle(engine)
    assert engine.stats["speculations_abandoned"] >= 1
    assert [r.messages[-1]["content"] for r in llm.requests][-1] == "What is the capital of France?"
    assert t.of("conversation.item.input_audio_transcription.completed")[0]["transcript"] == \
        "What is the capital of France?"
    assert len(t.of("response.created")) == 1


async def test_speculative_answer_for_a_changed_request_is_not_used():
    """The client adds an item between the pause and the commit: the request differs, so the
    response asks the model afresh and the speculative answer is cancelled."""
    stt = ScriptedStt("What is the capital of France?")
    llm = ScriptedLlm("Stale.", "Fresh.")
    engine, t = make_engine(VOICE, llm=llm)
    engine.models.stt = stt
    await feed(engine, silence(300) + speech(600) + silence(220))
    assert engine.stats["answers_speculated"] == 1
    engine.handle_message(json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "system", "content": [{"type": "input_text", "text": "Answer in French."}]}}))
    await feed(engine, silence(400))
    await settle(engine)
    assert engine.stats["answers_adopted"] == 0
    assert len(llm.requests) == 2
    assert llm.requests[1].messages[-2]["content"] == "Answer in French." or \
        any(m.get("content") == "Answer in French." for m in llm.requests[1].messages)
    assert t.of("response.done")[0]["response"]["output"][0]["content"][0]["transcript"] == "Fresh."


async def test_prefix_warming_prefills_while_the_user_speaks(monkeypatch):
    monkeypatch.setattr(speculation, "WARM_FIRST_MS", 300)
    monkeypatch.setattr(speculation, "WARM_EVERY_MS", 300)
    llm = PrefillLlm("Sure.")
    engine, t = make_engine(VOICE, llm=llm)
    await feed(engine, silence(300) + speech(700))
    assert engine.stats["prefix_warmings"] >= 1
    await feed(engine, speech(400))
    assert engine.stats["prefix_warmings"] >= 2
    await feed(engine, silence(500))
    await settle(engine)
    assert engine.stats["prefix_tokens_warmed"] == 5 * engine.stats["prefix_warmings"]
    assert set(llm.prefills) == {"What is the capital of France?"}
    # a punctuated sentence is prefilled up to the assistant's header
    assert set(llm.complete) == {True}


def test_sounds_complete_only_for_a_finished_sentence():
    assert speculation.sounds_complete("What is the capital of France?")
    assert speculation.sounds_complete('He said "yes."')
    assert not speculation.sounds_complete("What is the capital of")
    assert not speculation.sounds_complete("What colors the sky on a...")
    assert not speculation.sounds_complete("Well…")


async def test_no_speculative_answer_without_create_response():
    llm = ScriptedLlm("Paris.")
    session = {"type": "realtime", "audio": {"input": {"turn_detection": {
        "type": "server_vad", "silence_duration_ms": 300, "create_response": False}}}}
    engine, t = make_engine(session, llm=llm)
    await feed(engine, silence(300) + speech(600) + silence(500))
    assert "input_audio_buffer.committed" in t.types()
    assert engine.stats["answers_speculated"] == 0 and llm.requests == []
    assert "response.created" not in t.types()


def test_warm_state_is_due_after_enough_new_speech():
    warm = speculation.WarmState()
    first, every = speculation.WARM_FIRST_MS, speculation.WARM_EVERY_MS
    assert not warm.due(1000, 1000 + first - 1)
    assert warm.due(1000, 1000 + first)
    warm.upto_ms = 1000 + first
    assert not warm.due(1000, 1000 + first + every - 1)
    assert warm.due(1000, 1000 + first + every)


async def test_a_partial_transcription_is_reused_only_when_it_heard_all_the_speech():
    loop = asyncio.get_running_loop()
    warm = speculation.WarmState(start_ms=100, upto_ms=2000)
    assert warm.transcript_of(100, 2000) is None  # no partial transcription yet
    warm.asr = loop.create_future()
    assert warm.transcript_of(100, 2000) is warm.asr  # in flight, taken at the last voiced frame
    assert warm.transcript_of(100, 2032) is None  # the user spoke on after it was taken
    assert warm.transcript_of(0, 2000) is None  # another stretch of speech
    warm.cancel()
    assert warm.transcript_of(100, 2000) is warm.asr  # cancelling the warm-up keeps the transcription
    warm.asr.set_exception(RuntimeError("asr failed"))
    assert warm.transcript_of(100, 2000) is None
