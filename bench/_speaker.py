"""The caller in bench/voice_latency.py, in a process of its own (as a real client is): an aiortc
client (openrealtime.client.rtc) that speaks each question into its microphone track and reports,
one JSON line per question on stdout, the end of speech in the file and the arrival of the first
voiced reply packet (time.monotonic(), which is system-wide), plus the events with their arrival.

    python bench/_speaker.py URL QUESTIONS.npz SILENCE_MS|TURN_DETECTION_JSON

QUESTIONS.npz holds arrays q0, q1, ... of 48 kHz float32 speech.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from openrealtime.client.rtc import RealtimeRtcClient  # noqa: E402

INSTRUCTIONS = "You are a helpful voice assistant. Answer in one short sentence."
TIMELINE_EVENTS = {
    "input_audio_buffer.speech_stopped": "stopped",
    "input_audio_buffer.committed": "commit",
    "conversation.item.input_audio_transcription.completed": "asr",
    "response.created": "resp",
    "response.output_audio_transcript.delta": "tok1",
    "output_audio_buffer.started": "audio",
}


def speech_end_s(audio48: np.ndarray) -> float:
    """Time of the last sample above -40 dBFS (the end of speech in the file)."""
    loud = np.nonzero(np.abs(audio48) > 0.01)[0]
    return (loud[-1] + 1) / 48000 if loud.size else 0.0


def stage_times(events: list[dict], speech_end: float) -> dict[str, float]:
    """When each stage's first event arrived, in seconds after the end of speech."""
    seen: dict[str, float] = {}
    for event in events:
        label = TIMELINE_EVENTS.get(event.get("type", ""))
        if label and label not in seen:
            seen[label] = event["_t"] - speech_end
    return seen


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def turn_detection(arg: str) -> dict:
    """SILENCE_MS (server_vad with that silence) or a turn_detection object in JSON."""
    return json.loads(arg) if arg.lstrip().startswith("{") else {"type": "server_vad", "silence_duration_ms": int(arg)}


async def speak(url: str, questions: list[np.ndarray], detection: dict) -> None:
    session = {"type": "realtime", "instructions": INSTRUCTIONS, "audio": {"input": {"turn_detection": detection}}}
    client = RealtimeRtcClient(url, session=session)
    await client.connect()
    await client.next_event("session.created")
    await asyncio.sleep(0.5)
    emit({"ready": True})
    for audio in questions:
        client.audio.first_voiced_at = client.audio.first_voiced_decoded_at = None
        log_from = len(client.log)
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        # the mic track sends the first frame of this question after what is still queued
        start = time.monotonic() + client.mic.pending_s
        client.mic.play(pcm)
        speech_end = start + speech_end_s(audio)
        done = await client.next_event("response.done", timeout=60)
        deadline = time.monotonic() + 10
        while client.audio.first_voiced_at is None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        arrived, decoded = client.audio.first_voiced_at, client.audio.first_voiced_decoded_at
        record: dict = {"status": done["response"]["status"],
                        "stages": stage_times(client.log[log_from:], speech_end)}
        if arrived is not None:
            record["latency"] = arrived - speech_end
            record["decoded"] = (decoded or arrived) - speech_end
        emit(record)
        await client.next_event("output_audio_buffer.stopped", timeout=60)
        await asyncio.sleep(0.3)
    await client.close()
    emit({"done": True})


def main() -> None:
    url, path, detection = sys.argv[1], sys.argv[2], turn_detection(sys.argv[3])
    with np.load(path) as data:
        questions = [data[f"q{i}"] for i in range(len(data.files))]
    asyncio.run(speak(url, questions, detection))


if __name__ == "__main__":
    main()
