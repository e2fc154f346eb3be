"""Per-stage timings of the embedded model stack (VAD, ASR, LLM, TTS) for each profile.

    python bench/model_stages.py                      # default and fast profiles
    python bench/model_stages.py --profiles fast test --json

Each profile runs in a fresh subprocess (clean RSS, no shared caches). Speech inputs are made by
the profile's own Piper voice, so the bench needs nothing but the model packages. Figures are
medians over `--repeats` runs; on a shared 2-core machine expect +-20 %.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._server import rss_mb  # noqa: E402

QUESTIONS = [
    "What is the capital of France?",
    "Can you set a timer for ten minutes?",
    "How far away is the moon from the earth?",
]
REPLY = "Paris is the capital of France. It is known for the Eiffel Tower, its museums, and its cafes."


def bench_profile(profile: str, repeats: int) -> dict[str, float | str]:
    import numpy as np

    from openrealtime.engines.base import ChatRequest, Finished, TextDelta
    from openrealtime.audio.resample import resample
    from openrealtime.engines.stack import load_model_stack

    out: dict[str, float | str] = {"profile": profile}
    started = time.perf_counter()
    stack = load_model_stack(profile)
    out["load_s"] = time.perf_counter() - started
    out["rss_mb"] = rss_mb()
    out.update({f"model_{k}": v for k, v in stack.description.items() if k in ("stt", "llm", "tts")})
    never = threading.Event()

    # speech inputs (Piper), 16 kHz
    utterances = [resample(np.concatenate(list(stack.tts.synthesize(q, voice="", speed=1.0, cancel=never))),
                           stack.tts.sample_rate, 16000) for q in QUESTIONS]

    # VAD: per 32 ms frame over all utterances
    stream = stack.vad.new_stream()
    frames = [u[i:i + 512] for u in utterances for i in range(0, u.size - 511, 512)]
    t0 = time.perf_counter()
    for frame in frames:
        stream.probability(frame)
    out["vad_ms_per_frame"] = (time.perf_counter() - t0) / len(frames) * 1000

    # ASR: seconds per utterance (2-3 s questions)
    asr_times, texts = [], []
    for _ in range(repeats):
        for u in utterances:
            t0 = time.perf_counter()
            texts.append(stack.stt.transcribe(u).text)
            asr_times.append(time.perf_counter() - t0)
    out["asr_s_per_utterance"] = statistics.median(asr_times)
    out["asr_audio_s"] = statistics.mean(u.size / 16000 for u in utterances)
    out["asr_sample"] = texts[0]

    # LLM: first token with the system prompt cached (short question), and decode speed
    first_tokens, rates, answers = [], [], []
    for i in range(repeats):
        q = QUESTIONS[i % len(QUESTIONS)]
        request = ChatRequest(messages=[{"role": "user", "content": q}], temperature=0.0, max_tokens=64)
        t0 = time.perf_counter()
        first = None
        n = 0
        pieces = []
        for event in stack.llm.stream_chat(request, never):
            if isinstance(event, TextDelta):
                pieces.append(event.text)
                if first is None:
                    first = time.perf_counter()
            if isinstance(event, Finished):
                n = event.output_tokens
                cached = event.cached_tokens
                prompt = event.input_tokens
        end = time.perf_counter()
        first_tokens.append((first or end) - t0)
        if n > 1 and first is not None:
            rates.append((n - 1) / (end - first))
        answers.append("".join(pieces))
    out["llm_first_token_s"] = statistics.median(first_tokens)
    out["llm_tok_per_s"] = statistics.median(rates) if rates else 0.0
    out["llm_prompt_tokens"] = prompt
    out["llm_cached_tokens"] = cached
    out["llm_sample"] = answers[0][:80]

    # LLM: uncached prompt evaluation speed (a ~400-token history)
    history = [{"role": "system", "content": "You are a helpful voice assistant."}]
    for i in range(8):
        history += [{"role": "user", "content": f"Tell me fact number {i} about the ocean, in two sentences."},
                    {"role": "assistant", "content": "The ocean covers about seventy-one percent of the earth's "
                     "surface. It holds about ninety-seven percent of the planet's water."}]
    history.append({"role": "user", "content": "Thanks. Summarise in one sentence."})
    stack.llm.clear_cache()  # benchmark only: force a cold prompt
    t0 = time.perf_counter()
    for event in stack.llm.stream_chat(ChatRequest(messages=history, temperature=0.0, max_tokens=1), never):
        if isinstance(event, Finished):
            out["llm_cold_prompt_tokens"] = event.input_tokens
    out["llm_cold_prompt_s"] = time.perf_counter() - t0

    # TTS: first-chunk latency and real-time factor for a two-sentence reply
    firsts, rtfs = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        first = None
        samples = 0
        for chunk in stack.tts.synthesize(REPLY, voice="", speed=1.0, cancel=never):
            if first is None:
                first = time.perf_counter() - t0
            samples += chunk.size
        total = time.perf_counter() - t0
        firsts.append(first or total)
        rtfs.append(total / (samples / stack.tts.sample_rate))
    out["tts_first_chunk_s"] = statistics.median(firsts)
    out["tts_rtf"] = statistics.median(rtfs)
    out["rss_after_mb"] = rss_mb()
    stack.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=["default", "fast"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object per profile")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        print(json.dumps(bench_profile(args.one, args.repeats)))
        return

    results = []
    for profile in args.profiles:
        proc = subprocess.run([sys.executable, __file__, "--one", profile, "--repeats", str(args.repeats)],
                              capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if proc.returncode != 0:
            print(f"profile {profile} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    if args.json:
        for r in results:
            print(json.dumps(r))
        return
    rows = [
        ("load time (s)", "load_s", "{:.1f}"),
        ("RSS after load (MB)", "rss_mb", "{:.0f}"),
        ("VAD per 32 ms frame (ms)", "vad_ms_per_frame", "{:.3f}"),
        ("ASR per utterance (s)", "asr_s_per_utterance", "{:.2f}"),
        ("  utterance length (s)", "asr_audio_s", "{:.1f}"),
        ("LLM first token, cached prefix (s)", "llm_first_token_s", "{:.2f}"),
        ("LLM decode (tok/s)", "llm_tok_per_s", "{:.1f}"),
        ("LLM cold prompt (s)", "llm_cold_prompt_s", "{:.2f}"),
        ("  cold prompt tokens", "llm_cold_prompt_tokens", "{}"),
        ("TTS first chunk (s)", "tts_first_chunk_s", "{:.2f}"),
        ("TTS real-time factor", "tts_rtf", "{:.3f}"),
    ]
    width = max(len(r[0]) for r in rows) + 2
    print("stage".ljust(width) + "".join(r["profile"].rjust(12) for r in results))
    for label, key, fmt in rows:
        print(label.ljust(width) + "".join(fmt.format(r.get(key, float("nan"))).rjust(12) for r in results))
    for r in results:
        print(f"\n[{r['profile']}] {r.get('model_stt')} | {r.get('model_llm')} | {r.get('model_tts')}")
        print(f"  ASR heard: {r.get('asr_sample')!r}   LLM said: {r.get('llm_sample')!r}")


if __name__ == "__main__":
    main()
