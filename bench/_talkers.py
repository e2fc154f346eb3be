"""The callers of bench/concurrency.py, in a process of their own (as real clients are): N WebSocket sessions
that each stream a microphone in real time (24 kHz PCM16 in 40 ms `input_audio_buffer.append` events,
silence between questions, as a browser's mic does) and ask one spoken question per round. One JSON line
per answered turn on stdout: the end of speech (the moment the last voiced sample would have been captured),
the arrival of the first reply audio, each stage's first event after the end of speech, and the reply's
text and token count.

    python bench/_talkers.py URL QUESTIONS.npz N ROUNDS STAGGER_S SILENCE_MS

QUESTIONS.npz holds arrays q0, q1, ... of 24 kHz int16 speech; talker i asks q[(i + round) % len] in each
round. STAGGER_S 0: every talker starts its question at the same moment; else talker i starts i × STAGGER_S
later. A round starts when every talker's previous reply is done.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time

import numpy as np
import websockets

RATE = 24000
CHUNK_S = 0.04
CHUNK = int(RATE * CHUNK_S)
INSTRUCTIONS = "You are a helpful voice assistant. Answer in one short sentence."
STAGES = {
    "input_audio_buffer.speech_stopped": "stopped",
    "input_audio_buffer.committed": "commit",
    "conversation.item.input_audio_transcription.completed": "asr",
    "response.created": "resp",
    "response.output_audio_transcript.delta": "tok1",
    "response.output_audio.delta": "audio",
}
SILENCE = bytes(2 * CHUNK)


def speech_end_s(pcm: np.ndarray) -> float:
    """Time of the last sample above -40 dBFS."""
    loud = np.nonzero(np.abs(pcm.astype(np.int32)) > 328)[0]
    return (loud[-1] + 1) / RATE if loud.size else 0.0


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


class Talker:
    def __init__(self, index: int, ws, silence_ms: int) -> None:
        self.index = index
        self.ws = ws
        self.silence_ms = silence_ms
        self.queue: list[bytes] = []  # chunks still to send (after them: silence)
        self.turn: dict | None = None
        self.done = asyncio.Event()
        self.errors: list[dict] = []

    async def setup(self) -> None:
        await self.ws.send(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "instructions": INSTRUCTIONS,
            "audio": {"input": {"turn_detection": {"type": "server_vad",
                                                   "silence_duration_ms": self.silence_ms}}}}}))

    def ask(self, pcm: np.ndarray, start: float, round_: int, question: int) -> None:
        """Queue the question; its first chunk goes out at `start` (monotonic)."""
        data = pcm.astype("<i2").tobytes()
        lead = max(0, round((start - time.monotonic()) / CHUNK_S))
        self.queue = [SILENCE] * lead + [data[i:i + 2 * CHUNK].ljust(2 * CHUNK, b"\0")
                                         for i in range(0, len(data), 2 * CHUNK)]
        self.turn = {"talker": self.index, "round": round_, "question": question,
                     "speech_end": time.monotonic() + lead * CHUNK_S + speech_end_s(pcm), "stages": {},
                     "text": ""}
        self.done.clear()

    async def microphone(self) -> None:
        """One chunk every 40 ms on the clock (a chunk is sent once it would have been captured)."""
        t = time.monotonic()
        while True:
            t += CHUNK_S
            await asyncio.sleep(max(0.0, t - time.monotonic()))
            chunk = self.queue.pop(0) if self.queue else SILENCE
            await self.ws.send(json.dumps({"type": "input_audio_buffer.append",
                                           "audio": base64.b64encode(chunk).decode()}))

    async def listen(self) -> None:
        async for message in self.ws:
            event = json.loads(message)
            kind = event.get("type", "")
            turn = self.turn
            if kind == "error":
                self.errors.append(event.get("error", {}))
                continue
            if turn is None:
                continue
            label = STAGES.get(kind)
            if label and label not in turn["stages"]:
                turn["stages"][label] = round(time.monotonic() - turn["speech_end"], 4)
            if kind == "response.output_audio_transcript.delta":
                turn["text"] += event.get("delta", "")
            elif kind == "response.done":
                response = event["response"]
                usage = response.get("usage") or {}
                details = usage.get("output_token_details") or {}
                turn["status"] = response.get("status")
                turn["tokens"] = details.get("text_tokens", 0)
                turn["finished"] = round(time.monotonic() - turn["speech_end"], 4)
                if "audio" in turn["stages"]:
                    turn["latency"] = turn["stages"]["audio"]
                self.turn = None
                emit(turn)
                self.done.set()


async def main(url: str, questions: list[np.ndarray], n: int, rounds: int, stagger_s: float,
               silence_ms: int) -> None:
    ws_url = url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"
    sockets = [await websockets.connect(ws_url, additional_headers={"Authorization": "Bearer bench"},
                                        max_size=None) for _ in range(n)]
    talkers = [Talker(i, ws, silence_ms) for i, ws in enumerate(sockets)]
    tasks = []
    for talker in talkers:
        await talker.setup()
        tasks += [asyncio.create_task(talker.microphone()), asyncio.create_task(talker.listen())]
    await asyncio.sleep(1.0)  # session.updated; the VAD hears silence first
    emit({"ready": True})
    try:
        for r in range(rounds):
            start = time.monotonic() + 0.2
            for talker in talkers:
                q = (talker.index + r) % len(questions)
                talker.ask(questions[q], start + talker.index * stagger_s, r, q)
            try:
                await asyncio.wait_for(asyncio.gather(*(t.done.wait() for t in talkers)), 90)
            except asyncio.TimeoutError:
                for talker in talkers:
                    if talker.turn is not None:
                        emit({**talker.turn, "status": "no reply in 90 s"})
                        talker.turn = None
            await asyncio.sleep(1.0)
    finally:
        for talker in talkers:
            if talker.errors:
                emit({"talker": talker.index, "errors": talker.errors[:5]})
        for task in tasks:
            task.cancel()
        for ws in sockets:
            await ws.close()
    emit({"done": True})


if __name__ == "__main__":
    url, path = sys.argv[1], sys.argv[2]
    n, rounds, stagger, silence = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
    with np.load(path) as data:
        qs = [data[f"q{i}"] for i in range(len(data.files))]
    asyncio.run(main(url, qs, n, rounds, stagger, silence))
