"""openai-python's Live API (3.63: `client.live.connect()`) against our server on the real local models, spoken
end to end: a question in the server's own Piper voice, streamed at real time in 50 ms frames followed by
silence, is heard (Whisper), answered (the LLM) and spoken (Piper) as Live events, every frame validated
strictly as the SDK's `openai.types.live.ServerEvent`, the transcripts grouped by the SDK's own grouper into a
user segment then an assistant segment. The scripted-model tests of the whole surface are in tests/live."""

from __future__ import annotations

import asyncio
import base64

from tests.compat.conftest import KEY, pcm24k_from_wav
from tests.live.conftest import FRAME, START, Reader, client_for
from tests.support import piper_wav, silence


async def test_a_spoken_question_is_answered_aloud_over_live(compat_server, model_stack, tmp_path):
    wav = piper_wav(model_stack, tmp_path / "q.wav", "What is the capital of France?")
    speech = silence(300) + pcm24k_from_wav(wav) + silence(2000)
    async with client_for(compat_server, KEY).live.connect() as conn:
        reader = Reader(conn)
        await conn.session.start(session={**START, "instructions": "Answer in one short sentence."})
        await reader.next("session.started")
        for i in range(0, len(speech), FRAME):  # a microphone: 50 ms frames at real time
            await conn.session.input_audio.append(audio=base64.b64encode(speech[i:i + FRAME]).decode())
            await asyncio.sleep(0.05)
        heard = await reader.next("session.input_transcript.delta", timeout=120)
        assert "capital" in heard["delta"].lower() and "france" in heard["delta"].lower()
        await reader.next("session.output_audio.delta", timeout=180)
        answered = lambda e: ("paris" in reader.text("session.output_transcript.delta").lower()  # noqa: E731
                              or e["type"] == "session.delegation.created")
        try:
            await reader.next(answered, timeout=120)
        except TimeoutError:
            pass
        said = reader.text("session.output_transcript.delta")
        assert "paris" in said.lower(), (said, [e["type"] for e in reader.seen if "delta" not in e["type"]])
        await reader.drain(2.0)
        await conn.session.close()
        closed = await reader.next("session.closed", timeout=30)
        assert closed["reason"] == "close_requested"
    assert not reader.of("session.delegation.created")  # a plain question is answered, not handed over
    await reader.grouper.close()
    assert [s.speaker for s in reader.segments][:2] == ["user", "assistant"]
