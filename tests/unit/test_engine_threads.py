"""What a session holds ends with it. Sessions start no threads of their own: the VAD path resamples each session's microphone to 16 kHz with a
thread-free libswresample graph (audio/frame_resampler.py). `av.AudioResampler` started one FFmpeg thread
per core for every session, and they lived until Python's cyclic collector freed the finished session:
the soak bench counted 117 threads on a server with no call up."""

import os

import av
import numpy as np

from openrealtime.audio.frame_resampler import FrameResampler
from openrealtime.protocol.session import parse_session_config
from openrealtime.runtime_inline import InlineRuntime
from openrealtime.session.engine import SessionEngine
from tests.support import RecordingTransport, fake_stack, speech


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


async def talk(engine: SessionEngine) -> None:
    pcm = speech(400)
    for i in range(0, len(pcm), 960):  # 20 ms frames, as the media path delivers them
        engine.feed_audio(pcm[i:i + 960])
        await engine.runtime.settle()


async def test_sessions_hearing_audio_start_no_threads():
    # as in the server, one runtime for every session; the inline one runs the models on the loop's thread,
    # so any thread that appears is the sessions' own
    stack, runtime = fake_stack(), InlineRuntime()

    def session() -> SessionEngine:  # server VAD on: every session resamples its microphone for the VAD
        engine = SessionEngine(RecordingTransport(), parse_session_config({"type": "realtime"}), models=stack,
                               runtime=runtime)
        engine.start()
        return engine

    first = session()
    await talk(first)
    baseline = os_threads()
    engines = [session() for _ in range(4)]
    for engine in engines:
        await talk(engine)
    try:
        assert all(engine.stats["vad_frames"] > 0 for engine in engines), "the VAD heard every session"
        assert os_threads() <= baseline  # none started (threads of earlier tests may end meanwhile)
    finally:
        for engine in (first, *engines):
            engine.close()
        runtime.close()


def test_frame_resampler_matches_libswresample_and_keeps_state():
    rng = np.random.default_rng(1)
    pcm = (rng.standard_normal(24000) * 3000).astype(np.int16)
    ours, reference = FrameResampler("flt", "mono", 16000), av.AudioResampler(format="flt", layout="mono", rate=16000)
    out_ours, out_ref = [], []
    for i in range(0, len(pcm), 480):
        for resampler, out in ((ours, out_ours), (reference, out_ref)):
            frame = av.AudioFrame(format="s16", layout="mono", samples=480)
            frame.planes[0].update(pcm[i:i + 480].tobytes())
            frame.sample_rate = 24000
            out += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    a, b = np.concatenate(out_ours), np.concatenate(out_ref)
    assert len(a) == len(b) > 15900  # 1 s at 16 kHz, less the filter's delay
    np.testing.assert_array_equal(a, b)


async def test_a_closed_session_lets_go_of_its_audio():
    """A finished call's objects wait for Python's cyclic collector (aiortc's are full of cycles); the
    session's audio (input buffer, conversation audio) must not wait with them."""
    runtime = InlineRuntime()
    engine = SessionEngine(RecordingTransport(), parse_session_config({"type": "realtime", "audio": {"input": {
        "turn_detection": None}}}), models=fake_stack(), runtime=runtime)
    engine.start()
    try:
        engine.feed_audio(speech(600))
        engine.handle_message('{"type": "input_audio_buffer.commit"}')  # a user item with its audio
        engine.feed_audio(speech(400))  # and audio not committed yet
        await runtime.settle()
        assert engine.conversation.audio and engine.buffer.duration_ms > 0
        engine.close()
        assert not engine.conversation.audio and engine.buffer.duration_ms == 0
    finally:
        runtime.close()
