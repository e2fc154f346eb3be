"""Barge-in hygiene (session/barge_in.py) on scripted models and the inline runtime: while the agent speaks,
a click or a listener's "mm-hm" pauses its playout and then lets it go on, without a single event; real
speech, long or short, interrupts as OpenAI's turn detection does."""

from openrealtime.session.barge_in import CONFIRM_MS, EARLY_LOOK_MS
from tests.support import ScriptedLlm, ScriptedStt, silence, speech
from tests.unit.test_engine_turns import feed, make_engine

ANSWER = "Paris is the capital of France. It is a large city with many museums, parks and old bridges."


def talking_engine(*, interrupt: bool = True, webrtc: bool = True, idle_timeout_ms: int | None = None):
    detection = {"type": "server_vad", "silence_duration_ms": 300, "interrupt_response": interrupt}
    if idle_timeout_ms:
        detection["idle_timeout_ms"] = idle_timeout_ms
    engine, t = make_engine({"type": "realtime", "audio": {"input": {
        "transcription": {"model": "whisper-1"}, "turn_detection": detection}}}, llm=ScriptedLlm(ANSWER),
        webrtc=webrtc)
    return engine, t


async def agent_speaking(engine, t) -> None:
    await feed(engine, silence(300) + speech(600) + silence(500))
    assert t.of("response.done") and (t.audio_out is None or t.play(10) == 10)


def stt(engine) -> ScriptedStt:
    return engine.models.stt


async def test_a_backchannel_pauses_the_agent_then_lets_it_go_on():
    engine, t = talking_engine()
    await agent_speaking(engine, t)
    before = len(t.events)
    stt(engine).text = "Mm-hmm."
    calls = stt(engine).calls
    await feed(engine, speech(400))
    assert t.play(5) == 0, "the playout paused at the first voiced frames"
    await feed(engine, silence(300))
    assert stt(engine).calls == calls + 2, "its first words, then all of it, were checked"
    assert t.events[before:] == [], "no event at all: no speech_started, no cancel, no commit"
    assert t.play(5) == 5, "the agent goes on where it paused"
    assert engine.stats["barge_ins_ignored"] == 1 and engine.stats["barge_ins"] == 0
    t.play(1000)
    assert t.of("output_audio_buffer.stopped"), "and finishes"
    assert not t.of("conversation.item.truncated")


async def test_a_click_is_dismissed_without_transcribing_it():
    engine, t = talking_engine()
    await agent_speaking(engine, t)
    calls = stt(engine).calls
    await feed(engine, speech(40) + silence(300))  # two or three VAD frames
    assert stt(engine).calls == calls and engine.stats["barge_ins_ignored"] == 1
    assert t.play(3) == 3 and len(t.of("input_audio_buffer.speech_started")) == 1


async def test_a_short_command_interrupts_once_its_words_are_heard():
    engine, t = talking_engine()
    await agent_speaking(engine, t)
    played = 200  # ten frames
    stt(engine).text = "Stop."
    await feed(engine, speech(400) + silence(300))
    started = t.of("input_audio_buffer.speech_started")
    assert len(started) == 2 and abs(started[1]["audio_start_ms"] + 300 - 1400) <= 32, "where the voice began"
    types = t.types()
    assert types.index("output_audio_buffer.cleared") > types.index("input_audio_buffer.speech_started", 1)
    assert t.of("conversation.item.truncated")[0]["audio_end_ms"] == played, "cut at what was heard"
    assert engine.stats["barge_ins_confirmed"] == 1 and engine.stats["barge_ins"] == 1
    await feed(engine, silence(300))
    assert len(t.of("input_audio_buffer.committed")) == 2 and len(t.of("response.created")) == 2


async def test_long_speech_interrupts_without_waiting_for_its_end():
    engine, t = talking_engine()
    await agent_speaking(engine, t)
    stt(engine).text = "Hmm."  # whatever it says: this much voice is not a murmur
    await feed(engine, speech(CONFIRM_MS + 100))
    assert t.of("output_audio_buffer.cleared") and len(t.of("input_audio_buffer.speech_started")) == 2
    assert engine.stats["barge_ins_confirmed"] == 1


async def test_words_that_take_the_turn_interrupt_before_the_speech_ends():
    engine, t = talking_engine()
    await agent_speaking(engine, t)
    stt(engine).text = "Wait, I"
    await feed(engine, speech(EARLY_LOOK_MS + 100))
    assert t.of("output_audio_buffer.cleared"), "confirmed by its first words, still speaking"
    assert len(t.of("input_audio_buffer.speech_started")) == 2


async def test_without_interrupt_response_nothing_is_held_or_paused():
    engine, t = talking_engine(interrupt=False)
    await agent_speaking(engine, t)
    await feed(engine, speech(200))
    assert len(t.of("input_audio_buffer.speech_started")) == 2, "reported at once"
    assert t.play(3) == 3 and not t.of("output_audio_buffer.cleared")


async def test_websocket_holds_speech_started_until_confirmed():
    engine, t = talking_engine(webrtc=False)
    engine.runtime.pause("llm", after=4)  # the answer is still being written
    await feed(engine, silence(300) + speech(600) + silence(500))
    assert not t.of("response.done")
    stt(engine).text = "Yeah."
    await feed(engine, speech(300) + silence(300))
    assert len(t.of("input_audio_buffer.speech_started")) == 1 and not t.of("response.done")
    await feed(engine, speech(CONFIRM_MS + 100))
    assert len(t.of("input_audio_buffer.speech_started")) == 2
    assert t.of("response.done")[0]["response"]["status_details"]["reason"] == "turn_detected"


async def test_idle_timeout_still_fires_after_an_ignored_sound():
    engine, t = talking_engine(idle_timeout_ms=5000)
    await agent_speaking(engine, t)
    stt(engine).text = "Okay."
    await feed(engine, speech(300) + silence(300))
    assert engine.stats["barge_ins_ignored"] == 1
    t.play(1000)
    assert t.of("output_audio_buffer.stopped")
    await feed(engine, silence(5200), chunk_ms=100)
    assert t.of("input_audio_buffer.timeout_triggered") and len(t.of("response.done")) == 2
