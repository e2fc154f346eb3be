"""Turn-taking on the real offline stack with real speech (the Piper voice, noise off so every run hears
the same words): semantic_vad keeps a turn open through a hesitation and answers it whole, noise
reduction cleans what the session keeps, and a listener's "yeah" does not cut the answer short; over
WebSocket and WebRTC."""

from __future__ import annotations

import asyncio
import base64
import json
import threading

import numpy as np
import pytest
from websockets.asyncio.client import connect

from openrealtime.audio.resample import resample
from openrealtime.client.rtc import RealtimeRtcClient
from openrealtime.engines.local.tts import PiperTTS
from tests.support import wait_for, ws_event

RATE = 24000
FIRST, REST = "So I was thinking that maybe we could, um,", "go to the beach on Saturday."
INSTRUCTIONS = "You are a helpful assistant. Answer in one short sentence."


@pytest.fixture(scope="module")
def say():
    voice = PiperTTS(threads=1)
    voice.noise_scale = voice.noise_w = 0.0

    def spoken(text: str) -> np.ndarray:
        audio = np.concatenate(list(voice.synthesize(text, cancel=threading.Event())))
        loud = np.flatnonzero(np.abs(audio) > 0.01)
        return audio[loud[0]:loud[-1] + 1]

    return spoken


def quiet(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


def paused_turn(say, tail_s: float = 2.0) -> np.ndarray:
    """A thought with a hesitation in the middle: a 1.2 s pause after "um"."""
    return np.concatenate([quiet(0.5), say(FIRST), quiet(1.2), say(REST), quiet(tail_s)])


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


async def stream_ws(ws, audio: np.ndarray, chunk_s: float = 0.1) -> None:
    """Append audio in real time, as a microphone would."""
    step = int(chunk_s * RATE) * 2
    data = pcm16(audio)
    for at in range(0, len(data), step):
        await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                  "audio": base64.b64encode(data[at:at + step]).decode()}))
        await asyncio.sleep(chunk_s)


def ws_url(server) -> str:
    return server.url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"


def pink(n: int) -> np.ndarray:
    spectrum = np.fft.rfft(np.random.default_rng(3).normal(0, 1, n))
    spectrum[1:] /= np.sqrt(np.arange(1, spectrum.size))
    noise = np.fft.irfft(spectrum, n)
    return (noise / np.sqrt(np.mean(noise ** 2))).astype(np.float32)


async def test_websocket_semantic_vad_waits_out_a_hesitation_and_keeps_denoised_audio(voice_server, say):
    turn = paused_turn(say, tail_s=4.5)  # past the maximum wait (4 s): the turn ends however it is judged
    speech_rms = float(np.sqrt(np.mean(say(FIRST) ** 2)))
    noisy = (turn + pink(turn.size) * speech_rms * 10 ** (-10 / 20)).astype(np.float32)  # 10 dB SNR
    session = {"type": "realtime", "instructions": INSTRUCTIONS, "output_modalities": ["text"],
               "audio": {"input": {"transcription": {"model": "whisper-1", "language": "en"},
                                   "noise_reduction": {"type": "near_field"},
                                   "turn_detection": {"type": "semantic_vad", "eagerness": "auto"}}}}
    async with connect(ws_url(voice_server), additional_headers={"Authorization": "Bearer test"},
                       max_size=None) as ws:
        await ws_event(ws, "session.created")
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        await ws_event(ws, "session.updated")
        events: list[dict] = []

        async def listen() -> None:
            while True:
                events.append(json.loads(await ws.recv()))

        listener = asyncio.create_task(listen())
        try:
            await stream_ws(ws, noisy)
            await wait_for(lambda: any(e["type"] == "response.done" for e in events), 90,
                           what=lambda: f"the answer (events: {[e['type'] for e in events]})")
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        committed = [e for e in events if e["type"] == "input_audio_buffer.committed"]
        assert len(committed) == 1, [e["type"] for e in events]
        transcript = next(e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed")
        words = transcript["transcript"].lower()
        assert "thinking" in words and "beach" in words, words
        await ws.send(json.dumps({"type": "conversation.item.retrieve", "item_id": committed[0]["item_id"]}))
        item = (await ws_event(ws, "conversation.item.retrieved"))["item"]
    kept = np.frombuffer(base64.b64decode(item["content"][0]["audio"]), "<i2").astype(np.float32) / 32768
    # the 0.3 s of prefix padding before the voice is noise only: the kept audio is the processed audio
    sent_floor = float(np.sqrt(np.mean((noisy - turn)[: int(0.5 * RATE)] ** 2)))
    kept_floor = float(np.sqrt(np.mean(kept[int(0.05 * RATE): int(0.25 * RATE)] ** 2)))
    assert 20 * np.log10(sent_floor / kept_floor) >= 15, (sent_floor, kept_floor)


async def test_webrtc_semantic_vad_turn_and_a_backchannel_that_does_not_interrupt(voice_server, say):
    session = {"type": "realtime", "instructions": INSTRUCTIONS,
               "audio": {"input": {"transcription": {"model": "whisper-1", "language": "en"},
                                   "turn_detection": {"type": "semantic_vad"}}}}
    client = RealtimeRtcClient(voice_server.url, session=session)
    assert (await client.connect()).status_code == 201
    await client.next_event("session.created")
    await asyncio.sleep(0.5)
    client.mic.play(pcm16(resample(paused_turn(say), RATE, 48000)))
    transcript = await client.next_event("conversation.item.input_audio_transcription.completed", timeout=60)
    assert "beach" in transcript["transcript"].lower() and "thinking" in transcript["transcript"].lower()
    await client.next_event("response.done", timeout=90)
    assert sum(e["type"] == "input_audio_buffer.committed" for e in client.log) == 1

    # a long answer; while it plays, the caller says "yeah"
    client.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "Describe Paris in four long sentences."}]}})
    client.send({"type": "response.create"})
    await client.next_event("output_audio_buffer.started", timeout=90)
    await asyncio.sleep(1.0)
    client.mic.play(pcm16(resample(np.concatenate([say("Yeah."), quiet(1.0)]), RATE, 48000)))
    stopped = await client.next_event("output_audio_buffer.stopped", timeout=120)
    call = voice_server.state.calls.get(client.call_id)
    types = [e["type"] for e in client.log]
    assert "output_audio_buffer.cleared" not in types and stopped["response_id"]
    assert call.engine.stats.get("barge_ins_ignored", 0) >= 1, call.engine.stats
    assert [e for e in client.log if e["type"] == "response.done"][-1]["response"]["status"] == "completed"
    await client.close()
