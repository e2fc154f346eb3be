"""Input noise reduction in the session engine (a scripted suppressor that scales its input, on the inline
runtime): the processed audio is what VAD, transcription and `conversation.item.retrieve` get; commits and
clears keep their order with audio still being processed; the cost stays bounded."""

import base64
import json

import numpy as np

from openrealtime.protocol.session import parse_session_config
from openrealtime.runtime_inline import InlineRuntime
from openrealtime.session.engine import SessionEngine
from openrealtime.session.noise_reduction import GATE_DB, GATE_HOLD_MS, GATE_PRE_MS, MAX_BACKLOG_MS, PauseGate
from tests.support import QuietingSuppressor, RecordingTransport, fake_stack, silence, speech
from tests.unit.test_engine_turns import feed


def engine_with(suppressor: QuietingSuppressor, noise_reduction, turn_detection=None, *, runtime=None):
    transport = RecordingTransport(webrtc=False)
    audio = {"input": {"transcription": {"model": "whisper-1"}, "noise_reduction": noise_reduction,
                       "turn_detection": turn_detection}}
    engine = SessionEngine(transport, parse_session_config({"type": "realtime", "audio": audio}),
                           models=fake_stack(denoise=suppressor), runtime=runtime or InlineRuntime())
    engine.start()
    return engine, transport


def send(engine, **event):
    engine.handle_message(json.dumps(event))


def peak(pcm: bytes) -> int:
    return int(np.abs(np.frombuffer(pcm, "<i2").astype(np.int32)).max())


def retrieved_audio(engine, t, item_id: str) -> bytes:
    send(engine, type="conversation.item.retrieve", item_id=item_id)
    return base64.b64decode(t.of("conversation.item.retrieved")[-1]["item"]["content"][0]["audio"])


async def test_the_session_keeps_and_hears_the_processed_audio():
    suppressor = QuietingSuppressor(gain=0.5)
    engine, t = engine_with(suppressor, {"type": "near_field"}, {"type": "server_vad", "silence_duration_ms": 300})
    said = speech(800)
    await feed(engine, silence(300) + said + silence(600))
    item_id = t.of("input_audio_buffer.committed")[0]["item_id"]
    kept = retrieved_audio(engine, t, item_id)
    assert abs(peak(kept) - peak(said) / 2) <= 1, "the processed audio (the suppressor halves it)"
    assert suppressor.opened == [(24.0, 0.0)]
    assert engine.stats["noise_reduced_ms"] >= 1600 and "noise_reduction_bypassed_ms" not in engine.stats
    assert t.of("response.done"), "VAD and the turn ran on it"


async def test_settings_follow_type_and_strength_and_null_turns_it_off():
    suppressor = QuietingSuppressor()
    engine, _t = engine_with(suppressor, {"type": "far_field", "strength": 0.5})
    await engine.runtime.settle()
    assert suppressor.opened == [(15.0, 0.02)]
    for off in (None, {"type": "near_field", "strength": 0}):
        plain = QuietingSuppressor()
        engine, t = engine_with(plain, off)
        send(engine, type="input_audio_buffer.append", audio=base64.b64encode(speech(200)).decode())
        send(engine, type="input_audio_buffer.commit")
        assert plain.opened == [] and retrieved_audio(engine, t, t.of("input_audio_buffer.committed")[0]["item_id"]) \
            == speech(200), "untouched"
    engine, _t = engine_with(suppressor, None)
    send(engine, type="session.update", session={"type": "realtime", "audio": {"input": {
        "noise_reduction": {"type": "near_field", "strength": 2}}}})
    await engine.runtime.settle()
    assert suppressor.opened[-1] == (48.0, 0.0)


async def test_a_commit_waits_for_audio_still_being_processed_and_keeps_event_order():
    engine, t = engine_with(QuietingSuppressor(), {"type": "near_field"})
    await engine.runtime.settle()
    engine.runtime.pause("denoise")  # the suppressor is still at it
    send(engine, type="input_audio_buffer.append", audio=base64.b64encode(speech(400)).decode())
    send(engine, type="input_audio_buffer.commit")
    send(engine, type="conversation.item.create", item={"type": "message", "role": "user",
                                                         "content": [{"type": "input_text", "text": "and this"}]})
    assert not t.of("input_audio_buffer.committed") and not t.of("conversation.item.added")
    engine.runtime.resume("denoise")
    await engine.runtime.settle()
    assert t.types()[1:4] == ["input_audio_buffer.committed", "conversation.item.added", "conversation.item.done"]
    added = [e["item"]["content"][0]["type"] for e in t.of("conversation.item.added")]
    assert added == ["input_audio", "input_text"], "the commit first, then what the client sent after it"
    kept = retrieved_audio(engine, t, t.of("input_audio_buffer.committed")[0]["item_id"])
    assert len(kept) >= len(speech(400)) - 48 * 40, "all of the appended audio"


async def test_clear_drops_audio_still_being_processed():
    engine, t = engine_with(QuietingSuppressor(), {"type": "near_field"})
    await engine.runtime.settle()
    engine.runtime.pause("denoise")
    send(engine, type="input_audio_buffer.append", audio=base64.b64encode(speech(400)).decode())
    send(engine, type="input_audio_buffer.clear")
    engine.runtime.resume("denoise")
    await engine.runtime.settle()
    assert engine.buffer.duration_ms == 0
    send(engine, type="input_audio_buffer.commit")
    assert t.events[-1]["error"]["code"] == "input_audio_buffer_commit_empty"


async def test_a_suppressor_at_capacity_leaves_the_session_unprocessed():
    suppressor = QuietingSuppressor(max_streams=1)
    runtime = InlineRuntime()
    first, _ = engine_with(suppressor, {"type": "near_field"}, runtime=runtime)
    second, t = engine_with(suppressor, {"type": "near_field"}, runtime=runtime)
    await runtime.settle()
    send(second, type="input_audio_buffer.append", audio=base64.b64encode(speech(300)).decode())
    await runtime.settle()
    send(second, type="input_audio_buffer.commit")
    await runtime.settle()
    assert retrieved_audio(second, t, t.of("input_audio_buffer.committed")[0]["item_id"]) == speech(300)
    assert second.stats["noise_reduction_refused"] == 1 and "noise_reduction_refused" not in first.stats
    first.close()
    second.close()
    await runtime.settle()
    assert suppressor.live == 0, "streams are given back when sessions end"


async def test_a_backlog_goes_through_unprocessed_rather_than_delaying_the_turn():
    suppressor = QuietingSuppressor()
    engine, _t = engine_with(suppressor, {"type": "near_field"})
    await engine.runtime.settle()
    engine.runtime.pause("denoise", after=1)  # one batch runs, then the stage stalls
    for _ in range(100):  # 2 s of microphone audio in 20 ms frames
        engine.feed_audio(speech(20))
    await engine.runtime.settle()
    bypassed = engine.stats["noise_reduction_bypassed_ms"]
    assert 2000 - MAX_BACKLOG_MS - 40 <= bypassed <= 2000 - MAX_BACKLOG_MS + 20
    assert engine.buffer.duration_ms >= bypassed, "the audio is kept, in order"
    assert round(suppressor.bypassed_s * 1000) == bypassed, "reported for /metrics"
    engine.runtime.resume("denoise")
    await engine.runtime.settle()
    assert engine.buffer.duration_ms >= 1960


def hiss(ms: int, level: int = 200) -> bytes:
    """Steady low noise (well under the energy VAD's threshold) as PCM16 at 24 kHz."""
    rng = np.random.default_rng(ms)
    return rng.integers(-level, level, 24 * ms, endpoint=True).astype("<i2").tobytes()


def rms(pcm: bytes) -> float:
    return float(np.sqrt(np.mean(np.frombuffer(pcm, "<i2").astype(np.float64) ** 2)))


def test_the_pause_gate_quiets_judged_pauses_and_nothing_else():
    gate = PauseGate()
    gate.db = 20.0
    for k in range(1, 51):  # 50 frames of 32 ms judged: voiced from 640 to 960 ms
        gate.frame(32.0 * k, 32.0, 640 < 32 * k <= 960)
    pcm = hiss(2000, 1000)
    out = gate.apply(pcm, 0)
    ms = 48  # bytes per ms
    assert out[640 * ms:960 * ms] == pcm[640 * ms:960 * ms], "the voice is untouched"
    assert out[(640 - GATE_PRE_MS) * ms:640 * ms] == pcm[(640 - GATE_PRE_MS) * ms:640 * ms], "nor its onset"
    assert out[960 * ms:(960 + GATE_HOLD_MS) * ms] == pcm[960 * ms:(960 + GATE_HOLD_MS) * ms], "nor its decay"
    quiet = 20 * np.log10(rms(pcm[:400 * ms]) / rms(out[:400 * ms]))
    assert abs(quiet - 20.0) < 0.5, quiet
    after = 20 * np.log10(rms(pcm[1250 * ms:1550 * ms]) / rms(out[1250 * ms:1550 * ms]))
    assert abs(after - 20.0) < 0.5, after
    assert out[1650 * ms:] == pcm[1650 * ms:], "audio the VAD has not judged yet is left as it is"
    gate.db = 0.0
    assert gate.apply(pcm, 0) == pcm


async def test_the_kept_audio_has_its_pauses_quieted_while_noise_reduction_runs():
    said = speech(800)
    heard = hiss(700) + said + hiss(700)
    kept = {}
    for name, noise_reduction in (("on", {"type": "near_field"}), ("half", {"type": "near_field", "strength": 0.5}),
                                  ("off", None)):
        engine, t = engine_with(QuietingSuppressor(gain=1.0), noise_reduction,
                                {"type": "server_vad", "silence_duration_ms": 500, "prefix_padding_ms": 500})
        await feed(engine, heard)
        kept[name] = retrieved_audio(engine, t, t.of("input_audio_buffer.committed")[0]["item_id"])
        assert kept[name], name
    ms = 48
    pause = slice(0, (500 - GATE_PRE_MS - 60) * ms)  # the prefix padding before the voice, clear of its onset
    raw = kept["off"]
    assert 20 * np.log10(rms(raw[pause]) / rms(kept["on"][pause])) > GATE_DB - 1
    assert abs(20 * np.log10(rms(raw[pause]) / rms(kept["half"][pause])) - GATE_DB / 2) < 1
    voice = slice(520 * ms, 1280 * ms)
    difference = np.frombuffer(kept["on"][voice], "<i2").astype(int) - np.frombuffer(raw[voice], "<i2").astype(int)
    assert np.abs(difference).max() <= 1, "the voice is as the suppressor (gain 1, rounding) left it"
