"""Many conversations at once: N simultaneous talkers over the WebSocket on one server.

    python bench/concurrency.py [--profile default] [--ns 1,2,3,4] [--modes simultaneous,staggered]
                                [--rounds 3] [--stagger-s 0.7] [--silence-ms 500] [--compare] [--llm-parallel 4]
                                [--llm-url URL] [--stt-url URL] [--tts-url URL]

The local model stack is loaded once and served in this process (`embedded_server`, the server's own
`Runtime`); the talkers run in a process of their own (bench/_talkers.py) at SCHED_IDLE, as remote
callers would be (they only get CPU time the server leaves idle). Each talker is a WebSocket session
whose microphone streams in real time (40 ms chunks, silence between questions) and asks a spoken
question (Piper speech, a different question per talker) in each round, with server_vad at
`--silence-ms`. `simultaneous`: every talker starts its question at the same moment; `staggered`:
talker i starts `i × --stagger-s` later. A round starts once every reply is done.

Per N and mode it prints end of speech → first reply audio (p50/p95 over N × rounds turns), how many
turns were answered, the server process's RSS, and where the time goes: the medians of each stage's
first event after the end of speech as the talkers saw it (VAD stop, commit, response created, first
text, first audio) and the server's own stage timings (`openrealtime_model_stage_seconds`: mean per call,
queueing included). Then, per N, the language model alone: N replies of 48 tokens requested at once
(no speech, nothing else running): their aggregate tokens/s and first-token p50. Last, the ratios
p50(N) / p50(1) within this run, which compare across runs on
this shared machine where absolute figures do not (its speed varies; `uptime` before and after is
printed). Target (issue 20, 2-core machine): 3 simultaneous talkers p50 ≤ 1.5× one talker's.

With `--compare`, each N runs twice, alternating which goes first: "batched" (the language model's
stage as wide as it declares, as the server sizes it) and "one at a time" (1 wide: one reply at a
time, as before batching), so the two compare within one run.

With `--llm-url` (or `--stt-url`, `--tts-url`) that stage is a shared model server instead (llama.cpp's
server, vLLM): the same figures per N size its pool, `--llm-max-sessions` (README "Model pools").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._server import die_with_parent, rss_mb  # noqa: E402
from bench.voice_latency import QUESTIONS, box_speed, pct, set_caller_priority  # noqa: E402
from openrealtime.api.embedded import embedded_server  # noqa: E402
from openrealtime.audio.resample import resample  # noqa: E402
from openrealtime.config import Settings  # noqa: E402
from openrealtime.engines.base import concurrency  # noqa: E402
from openrealtime.engines.stack import configured_stack, load_model_stack  # noqa: E402
from openrealtime.observability.metrics import MODEL_STAGE_SECONDS  # noqa: E402
from openrealtime.runtime import Runtime, call_in_model_thread  # noqa: E402

CLIENT_STAGES = ("stopped", "commit", "resp", "tok1", "audio")
SERVER_STAGES = ("asr", "warm", "llm_first", "tts_first")


def speech24(stack, text: str) -> np.ndarray:
    """Piper speech as the API's `audio/pcm`: 24 kHz int16."""
    import threading

    audio = np.concatenate(list(stack.tts.synthesize(text, voice="alloy", speed=1.0, cancel=threading.Event())))
    return (np.clip(resample(audio, stack.tts.sample_rate, 24000), -1, 1) * 32767).astype("<i2")


def stage_totals() -> dict[str, tuple[float, float]]:
    """(count, sum of seconds) per stage of the process-wide stage histogram."""
    out: dict[str, tuple[float, float]] = {}
    for family in MODEL_STAGE_SECONDS.collect():
        for sample in family.samples:
            stage = sample.labels.get("stage")
            count, total = out.get(stage, (0.0, 0.0))
            if sample.name.endswith("_count"):
                count = sample.value
            elif sample.name.endswith("_sum"):
                total = sample.value
            out[stage] = (count, total)
    return out


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


async def run_talkers(server, path: Path, n: int, rounds: int, stagger_s: float, silence_ms: int) -> list[dict]:
    talkers = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / "_talkers.py"), server.url, str(path), str(n), str(rounds),
        str(stagger_s), str(silence_ms), stdout=asyncio.subprocess.PIPE, preexec_fn=die_with_parent)
    records = []
    try:
        assert talkers.stdout is not None
        while line := await talkers.stdout.readline():
            record = json.loads(line)
            if record.get("ready"):
                set_caller_priority(talkers.pid, "remote")
            elif record.get("done") is True:
                break
            else:
                records.append(record)
    finally:
        if talkers.returncode is None:
            talkers.kill()
        await talkers.wait()
    return records


def summarize(n: int, mode: str, records: list[dict], before: dict, after: dict, rss: float) -> dict:
    turns = [r for r in records if "round" in r]
    errors = [r for r in records if "errors" in r]
    answered = [r for r in turns if r.get("status") == "completed" and "latency" in r]
    latencies = [r["latency"] for r in answered]
    server = {}
    for stage in SERVER_STAGES:
        count = after.get(stage, (0, 0))[0] - before.get(stage, (0, 0))[0]
        total = after.get(stage, (0, 0))[1] - before.get(stage, (0, 0))[1]
        server[stage] = (count, total / count if count else float("nan"))
    client = {s: pct([r["stages"][s] for r in answered if s in r["stages"]], 50) for s in CLIENT_STAGES}
    return {"n": n, "mode": mode, "turns": len(turns), "answered": len(answered), "p50": pct(latencies, 50),
            "p95": pct(latencies, 95), "rss": rss,
            "client": client, "server": server, "samples": latencies, "errors": errors,
            "answers": [(r["talker"], r["question"], r.get("text", "")) for r in turns]}


def llm_throughput(stack, n: int, one_at_a_time: bool = False) -> tuple[float, float]:
    """N replies of 48 tokens requested at once from the language model alone: (aggregate tokens/s, first-token
    p50 s). `one_at_a_time`: each waits for the one before (a stage 1 wide)."""
    import threading

    from openrealtime.engines.base import ChatRequest, Finished

    tokens, firsts = [0] * n, [float("nan")] * n
    turn = threading.Lock() if one_at_a_time else None
    start = time.monotonic()

    def ask(i: int) -> None:
        request = ChatRequest(messages=[{"role": "user", "content": f"Tell me about the number {i + 7} in detail."}],
                              max_tokens=48, temperature=0.0, session_key=f"bench-throughput-{i}")
        if turn is not None:
            turn.acquire()
        try:
            for event in stack.llm.stream_chat(request, threading.Event()):
                if firsts[i] != firsts[i]:
                    firsts[i] = time.monotonic() - start
                if isinstance(event, Finished):
                    tokens[i] = event.output_tokens
        finally:
            if turn is not None:
                turn.release()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i in range(n):
        getattr(stack.llm, "forget_session", lambda key: None)(f"bench-throughput-{i}")
    return sum(tokens) / (time.monotonic() - start), pct(firsts, 50)


def report(rows: list[dict], show_answers: bool, throughput: dict[str, dict[int, tuple[float, float]]]) -> None:
    print()
    print(f"{'mode':20} {'N':>2} {'answered':>8} {'p50 s':>6} {'p95 s':>6} {'×N=1':>5} {'RSS MB':>7}  "
          f"client medians after end of speech (s): {' '.join(CLIENT_STAGES)}")
    base = {r["mode"]: r["p50"] for r in rows if r["n"] == 1}
    for r in rows:
        ratio = r["p50"] / base[r["mode"]] if base.get(r["mode"]) else float("nan")
        stages = " ".join(f"{r['client'][s]:.2f}" for s in CLIENT_STAGES)
        print(f"{r['mode']:20} {r['n']:>2} {r['answered']:>4}/{r['turns']:<3} {r['p50']:6.2f} {r['p95']:6.2f} "
              f"{ratio:5.2f} {r['rss']:7.0f}  {stages}")
    print()
    print("server stage timings (calls, mean s; queueing included): " + ", ".join(SERVER_STAGES))
    for r in rows:
        parts = ", ".join(f"{stage} {count:.0f}×{mean:.2f}" for stage, (count, mean) in r["server"].items())
        print(f"  {r['mode']:20} N={r['n']}: {parts}")
        print(f"  {'':20}      samples: {', '.join(f'{x:.2f}' for x in r['samples'])}")
        for e in r["errors"]:
            print(f"  {'':20}      talker {e['talker']} errors: {e['errors']}")
        if show_answers:
            for talker, question, text in r["answers"]:
                print(f"  {'':20}      talker {talker} q{question} → {text!r}")
    print()
    for config, figures in throughput.items():
        print(f"language model alone, N replies of 48 tokens at once, {config}: " + ", ".join(
            f"N={n} {rate:.1f} tok/s (first token p50 {first:.2f} s)" for n, (rate, first) in figures.items()))
    three = [r for r in rows if r["n"] == 3]
    for r in three:
        ratio = r["p50"] / base[r["mode"]] if base.get(r["mode"]) else float("nan")
        print(f"target {r['mode']}: 3 talkers p50 ≤ 1.5× one talker's: {ratio:.2f}× "
              f"{'ok' if ratio <= 1.5 else 'MISSED'}")


def pool_settings(args) -> Settings:
    """The profile's local stack, with the stages given a URL served by that model server instead (its key and
    model name from OPENREALTIME_<STAGE>_KEY / _MODEL, as `serve` reads them): how a shared pool is measured."""
    options = {f"{stage}_{field}": os.environ.get(f"OPENREALTIME_{stage.upper()}_{field.upper()}") or None
               for stage in ("llm", "stt", "tts") for field in ("key", "model")}
    return Settings(profile=args.profile, llm_url=args.llm_url, stt_url=args.stt_url, tts_url=args.tts_url,
                    llm_parallel=args.llm_parallel, **options)


async def run(args) -> None:
    ns = [int(x) for x in args.ns.split(",")]
    modes = args.modes.split(",")
    print(f"concurrency bench: profile {args.profile}, N = {ns}, modes {modes}, {args.rounds} rounds, "
          f"silence_duration_ms {args.silence_ms}, stagger {args.stagger_s} s, cores {os.cpu_count()}")
    print(f"load before: {uptime()}")
    runtime = Runtime()
    t = time.monotonic()
    stack = call_in_model_thread(lambda: load_model_stack(**configured_stack(pool_settings(args)), gate=runtime.gate))
    print(f"models loaded in {time.monotonic() - t:.1f} s; {call_in_model_thread(lambda: box_speed(stack))}")
    questions = [speech24(stack, q) for q in QUESTIONS]
    rows = []
    # no conversation limit: the bench measures the models (api/admission.py would refuse beyond 4)
    settings = Settings(port=0, udp_port=0, tcp_port=0, engine="local", max_conversations=0)
    async with embedded_server(settings, models=stack, runtime=runtime) as server:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "questions.npz"
            np.savez(path, **{f"q{i}": q for i, q in enumerate(questions)})
            await run_talkers(server, path, 1, 1, 0.0, args.silence_ms)  # warm-up, not counted
            widths = {"batched": concurrency(stack.llm), "one at a time": 1}
            configs = list(widths) if args.compare else ["batched"]
            for mode in modes:
                for n in ns:
                    for config in configs if n % 2 else configs[::-1]:  # alternating which goes first
                        runtime.configure("llm", widths[config])  # as app.size_pools does for "batched"
                        runtime.configure("warm", widths[config])
                        label = mode + (f", {config}" if args.compare else "")
                        before = stage_totals()
                        records = await run_talkers(server, path, n, args.rounds,
                                                    args.stagger_s if mode == "staggered" else 0.0, args.silence_ms)
                        row = summarize(n, label, records, before, stage_totals(), rss_mb())
                        rows.append(row)
                        print(f"  {label} N={n}: p50 {row['p50']:.2f} s, p95 {row['p95']:.2f} s, "
                              f"{row['answered']}/{row['turns']} answered", flush=True)
            rows.sort(key=lambda r: (r["mode"], r["n"]))
    throughput: dict[str, dict[int, tuple[float, float]]] = {"batched": {}, "one at a time": {}}
    for n in ns:  # alternating, so a change in the machine's speed hits both alike
        for config in throughput if args.compare else ["batched"]:
            throughput[config][n] = call_in_model_thread(
                lambda n=n, config=config: llm_throughput(stack, n, config == "one at a time"))
    throughput = {config: figures for config, figures in throughput.items() if figures}
    stack.close()
    report(rows, args.answers, throughput)
    print(f"load after: {uptime()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="default")
    parser.add_argument("--ns", default="1,2,3,4")
    parser.add_argument("--modes", default="simultaneous,staggered")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stagger-s", type=float, default=0.7)
    parser.add_argument("--silence-ms", type=int, default=500)
    parser.add_argument("--answers", action="store_true", help="print every answer's text")
    parser.add_argument("--llm-parallel", type=int, default=4, help="replies the local LLM decodes at once")
    parser.add_argument("--compare", action="store_true",
                        help="each N also with the language model taking one reply at a time (its stage 1 wide, as "
                             "before batching), alternating, in the same run")
    parser.add_argument("--deadline", type=float, default=1200)
    for stage in ("llm", "stt", "tts"):  # a shared model server's pool, measured per N (README "Model pools")
        parser.add_argument(f"--{stage}-url", default=None, help=f"the {stage} stage on this OpenAI-compatible server")
    args = parser.parse_args()
    asyncio.run(asyncio.wait_for(run(args), args.deadline))


if __name__ == "__main__":
    main()
