"""Realtime translation latency: end of speech → first translated audio (and first translated text).

    python bench/translation.py [--profile default] [--runs 6] [--target en]

The real local stack is loaded once and served in this process. A WebSocket client (the `websockets`
library, in this process) opens `/v1/realtime/translations`, streams each spoken sentence in real time
(200 ms appends every 200 ms, then silence, as a microphone would) and times, from the moment the last
frame of speech was sent:
  * the first `session.output_transcript.delta` (translated text), and
  * the first `session.output_audio.delta` (translated speech; only for a target with a voice: English),
and prints p50/p90 of each. Spanish sentences are spoken by espeak-ng's Spanish voice (no Spanish voice
ships for the server; Whisper base hears it well enough), English ones by the server's Piper voice.

In the same run the same audio goes through a naive sequential cascade with no server (the utterance
as cut, transcribed by faster-whisper's standard 30 s path, the whole translation written, then all
of it synthesized) and the ratio ours/naive is printed: figures move ±30 % on a shared 2-core machine,
ratios within one run much less. Loopback only; bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from openrealtime.api.embedded import embedded_server  # noqa: E402
from openrealtime.audio.convert import pcm24k_to_f32_16k  # noqa: E402
from openrealtime.audio.resample import resample  # noqa: E402
from openrealtime.config import Settings  # noqa: E402
from openrealtime.engines.base import ANY_LANGUAGE, TextDelta  # noqa: E402
from openrealtime.engines.stack import load_model_stack  # noqa: E402
from openrealtime.runtime import Runtime, call_in_model_thread  # noqa: E402
from openrealtime.translation.translator import Translator  # noqa: E402

# One utterance each (no pause inside that the segmenter would cut at: "end of speech" is then the end of
# the one utterance being translated).
SPANISH = [
    "Me gustaría un café con leche por favor.",
    "La biblioteca está cerca del hospital.",
    "¿Cuánto cuesta un billete de autobús al centro?",
    "Mañana vamos a visitar el museo con los niños.",
]
ENGLISH = [
    "I would like a cup of tea please.",
    "The library is next to the hospital.",
    "How much is a bus ticket to the city centre?",
    "Tomorrow we will visit the museum with the children.",
]
FRAME = 9600  # 200 ms of PCM16 24 kHz
TRAILING_SILENCE_S = 2.0
TIMEOUT_S = 60.0


def espeak_pcm(text: str, voice: str, folder: Path) -> bytes:
    path = folder / "s.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "130", "-w", str(path), text], check=True)
    with wave.open(str(path), "rb") as w:
        rate, raw = w.getframerate(), w.readframes(w.getnframes())
    audio = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    return (np.clip(resample(audio, rate, 24000), -1, 1) * 32767).astype("<i2").tobytes()


def piper_pcm(stack, text: str) -> bytes:
    chunks = list(stack.tts.synthesize(text, voice="alloy", speed=1.0, cancel=threading.Event()))
    audio = resample(np.concatenate(chunks), stack.tts.sample_rate, 24000)
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


async def translate_once(url: str, pcm: bytes, target: str) -> dict[str, float | None]:
    import websockets

    times: dict[str, float | None] = {"text": None, "audio": None}
    async with websockets.connect(f"{url}/v1/realtime/translations?model=gpt-realtime-translate",
                                  additional_headers={"Authorization": "Bearer bench"}, max_size=None) as ws:
        await ws.send(json.dumps({"type": "session.update", "session": {"audio": {"output": {"language": target}}}}))
        speech_end: list[float] = []

        async def speak() -> None:
            frames = [bytes(FRAME)] * 2 + [pcm[i:i + FRAME] for i in range(0, len(pcm), FRAME)]
            start = time.monotonic()
            for n, frame in enumerate(frames):
                await asyncio.sleep(max(0.0, start + n * 0.2 - time.monotonic()))
                await ws.send(json.dumps({"type": "session.input_audio_buffer.append",
                                          "audio": base64.b64encode(frame).decode()}))
            speech_end.append(time.monotonic())
            for n in range(int(TRAILING_SILENCE_S / 0.2)):
                await asyncio.sleep(0.2)
                await ws.send(json.dumps({"type": "session.input_audio_buffer.append",
                                          "audio": base64.b64encode(bytes(FRAME)).decode()}))
            await ws.send(json.dumps({"type": "session.close"}))

        speaker = asyncio.create_task(speak())
        async with asyncio.timeout(TIMEOUT_S):
            async for raw in ws:
                event = json.loads(raw)
                now = time.monotonic()
                if event["type"] == "session.output_transcript.delta" and times["text"] is None:
                    times["text"] = now
                elif event["type"] == "session.output_audio.delta" and times["audio"] is None:
                    times["audio"] = now
                elif event["type"] == "error":
                    print("  error:", event["error"]["message"])
                elif event["type"] == "session.closed":
                    break
        await speaker
    end = speech_end[0]
    return {k: (v - end if v is not None else None) for k, v in times.items()}


def naive_cascade(stack, pcm: bytes, target: str) -> float:
    """Seconds from the end of speech: standard Whisper decode, whole translation, whole synthesis."""
    started = time.monotonic()
    heard = stack.stt.transcribe(pcm24k_to_f32_16k(pcm), language=ANY_LANGUAGE, short_path=False)
    request = Translator("naive").request(heard.text, target, heard.language)
    text = "".join(d.text for d in stack.llm.stream_chat(request, threading.Event()) if isinstance(d, TextDelta))
    if target == "en":
        for _ in stack.tts.synthesize(text, voice="alloy", speed=1.0, cancel=threading.Event()):
            pass
    return time.monotonic() - started + 0.4  # + the hangover our segmenter waits (SILENCE_MS) before cutting


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="default")
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--target", default="en", help="en: Spanish speech → English speech; es: English → Spanish text")
    args = parser.parse_args()
    runtime = Runtime()
    stack = call_in_model_thread(lambda: load_model_stack(args.profile, gate=runtime.gate))
    with tempfile.TemporaryDirectory() as tmp:
        if args.target == "en":
            clips = [espeak_pcm(s, "es", Path(tmp)) for s in SPANISH]
        else:
            clips = [piper_pcm(stack, s) for s in ENGLISH]
    ours: dict[str, list[float]] = {"text": [], "audio": []}
    naive: list[float] = []
    settings = Settings(port=0, udp_port=0, tcp_port=0, engine="local")
    async with embedded_server(settings, models=stack, runtime=runtime) as server:
        for run in range(args.runs):
            pcm = clips[run % len(clips)]
            got = await translate_once(server.url.replace("http://", "ws://"), pcm, args.target)
            cascade = await asyncio.to_thread(naive_cascade, stack, pcm, args.target)
            naive.append(cascade)
            for key, value in got.items():
                if value is not None:
                    ours[key].append(value)
            print(f"run {run + 1}: first text {got['text'] or float('nan'):.2f} s, first audio "
                  f"{got['audio'] or float('nan'):.2f} s, naive cascade {cascade:.2f} s", flush=True)
    print(f"\nprofile {args.profile}, target {args.target}, {args.runs} runs (end of speech → first …)")
    for key, values in ours.items():
        if values:
            print(f"  translated {key:5s}  p50 {statistics.median(values):.2f} s  p90 {pct(values, 0.9):.2f} s")
    print(f"  naive cascade    p50 {statistics.median(naive):.2f} s")
    main_key = "audio" if ours["audio"] else "text"
    if ours[main_key]:
        print(f"  ratio first {main_key} / naive cascade (p50): {statistics.median(ours[main_key]) / statistics.median(naive):.2f}")
    stack.close()
    runtime.close()


if __name__ == "__main__":
    asyncio.run(main())
