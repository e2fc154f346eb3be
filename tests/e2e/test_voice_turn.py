"""A spoken question over WebRTC to the real offline stack: transcript, answer, speech, barge-in."""

import asyncio
import json

from openrealtime.client.rtc import RealtimeRtcClient
from tests.support import piper_wav, spoken_wav, wait_for

SESSION = {
    "type": "realtime",
    "instructions": "You are a helpful assistant. Answer in one short sentence.",
    "audio": {"input": {"transcription": {"model": "whisper-1", "prompt": "Questions about capital cities of countries."},
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 400}}},
}


async def test_spoken_question_gets_spoken_answer_then_barge_in(voice_server, model_stack, tmp_path):
    question = piper_wav(model_stack, tmp_path / "q.wav", "What is the capital of France?")
    interruption = spoken_wav(tmp_path / "i.wav", "Wait, stop. Tell me about Germany instead.", words_per_minute=150)
    client = RealtimeRtcClient(voice_server.url, session=SESSION)
    resp = await client.connect()
    assert resp.status_code == 201
    await client.next_event("session.created")
    await asyncio.sleep(0.5)
    call = voice_server.state.calls.get(client.call_id)
    call.audio_out.reset_pacing_stats()
    client.mic.play_wav(str(question))

    transcript = await client.next_event("conversation.item.input_audio_transcription.completed", timeout=60)
    words = transcript["transcript"].lower()
    assert "capital" in words, words

    done = await client.next_event("response.done", timeout=90)
    answer = done["response"]["output"][0]["content"][0]["transcript"]
    assert "paris" in answer.lower(), answer
    assert done["response"]["usage"]["output_token_details"]["audio_tokens"] > 0, json.dumps(done)
    await client.next_event("output_audio_buffer.started", timeout=10) if not any(
        e["type"] == "output_audio_buffer.started" for e in client.log) else None
    await wait_for(lambda: client.audio.voiced_frames > 20, 5, interval=0.05,
                   what="the answer was heard on the audio track")
    # ASR, LLM and TTS ran meanwhile in worker threads; bench/voice_latency.py measures how evenly the
    # 20 ms playout clock kept going (max inter-frame gap)
    print(f"outbound max inter-frame gap during the turn: {call.audio_out.max_gap_s * 1000:.0f} ms")

    # speak over the (next) answer: ask something long, then interrupt while it plays
    client.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "Describe Paris in five long sentences."}]}})
    client.send({"type": "response.create"})
    await client.next_event("output_audio_buffer.started", timeout=90)
    await asyncio.sleep(1.0)
    client.mic.play_wav(str(interruption))
    cleared = await client.next_event("output_audio_buffer.cleared", timeout=30)
    truncated = await client.next_event("conversation.item.truncated", timeout=10)
    assert cleared["response_id"]
    assert truncated["audio_end_ms"] > 0
    await client.close()
