"""Soak: N concurrent calls for M minutes with churn, against a real `openrealtime serve` process.

    python bench/soak.py [--engine echo|local] [--profile test] [--calls 20] [--slots 4] [--minutes 4.5]
                         [--warmup-s 70] [--rounds 3] [--kills 2] [--loss-callers 1] [--loss 0.05]
                         [--hold 4,16] [--caller-nice 5] [--deadline 900]

The server is `python -m openrealtime serve --engine echo` (or `--engine local --profile test`: VAD,
Whisper, SmolLM2-135M and Piper) on free loopback ports. The callers are `--calls / --slots` processes of
bench/_soak_caller.py, each with `--slots` callers that call, talk, hang up (half by closing their peer
connection, half through POST .../hangup) and call again, each call held 4-16 s (`--hold`). Churn:
* `--kills` times per round a caller process is killed with SIGKILL: its calls vanish without a goodbye
  (no DTLS close, no hangup); 2-5 s later a new process takes its place (the callers come back);
* `--loss-callers` of the processes drop `--loss` (5 %) of RTP/RTCP each way.

Phases: warm-up churn (`--warmup-s`, with kills like a round: the peak of live calls, vanished ones
included, is reached once, and the allocator's arenas grow to it; RSS follows that peak, not the number
of calls), then `--rounds` rounds of churn with kills. After the
warm-up and after every round the callers hang up and the bench waits until the server's call list
(GET /v1/realtime/calls) is empty: RSS, open fds and threads are read there, with no call up, so the
readings compare. Kills happen early enough in a round for the vanished calls to be reaped before it ends.

Printed, beside the targets:
* calls attempted / connected (session.created) / failed; setup POST→session.created p50/p99;
  stalls: calls with no `session.created` within 8 s;
* time to reap a vanished caller: from the SIGKILL until its call leaves the server's call list (polled
  every second while any is pending; ≤ 1 s resolution); target ≤ 35 s;
* RSS at start / after warm-up / end, and growth per 1,000 calls after warm-up (end − after warm-up,
  over the calls made in between; also the least-squares slope through every quiescent reading);
  target ≤ 2 MB per 1,000 calls;
* open fds and threads at start / after warm-up / end; target: back to baseline ±2;
* event-loop lag p99 over the churn windows (the server's `openrealtime_event_loop_lag_seconds`
  histogram, interpolated within its bucket); target ≤ 20 ms at 20 calls;
* late outbound frames (`openrealtime_audio_late_frames_total`: outbound clock resyncs after a > 200 ms
  stall) against frames sent; calls ended by reason (`openrealtime_calls_ended_total`).
The callers run at `--caller-nice` (they share the CPU with the server on a small box). The whole run is
bounded by `--deadline`; every subprocess dies with the bench.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._server import ServerProcess, die_with_parent, run_bounded  # noqa: E402
from openrealtime.api.embedded import free_port  # noqa: E402

STALL_S = 8.0
TARGET_REAP_S = 35.0
TARGET_RSS_MB_PER_1000 = 2.0
TARGET_FD_THREAD_DELTA = 2
TARGET_LAG_MS = 20.0
REAP_MARGIN_S = 45.0  # no kill later than this before a round ends: its calls are reaped within the round
QUIESCE_TIMEOUT_S = 90.0
SETTLE_S = 3.0
AUTH = {"Authorization": "Bearer soak"}
QUESTION = "What is the capital of France?"


# ---- metrics ---------------------------------------------------------------------------------------

_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')


def parse_metrics(text: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        m = _SAMPLE_RE.match(line)
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def udp_drops(port: int) -> int:
    """Datagrams the kernel dropped on the UDP socket bound to `port` (a full receive buffer): /proc/net/udp."""
    total = 0
    for path in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError):
            for line in Path(path).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    total += int(fields[-1])
    return total


def metric(m: dict, name: str, labels: str = "") -> float:
    return m.get((name, labels), 0.0)


def lag_buckets(m: dict) -> list[tuple[float, float]]:
    """(upper bound s, cumulative count) of the loop-lag histogram, +Inf last."""
    rows = []
    for (name, labels), value in m.items():
        if name == "openrealtime_event_loop_lag_seconds_bucket":
            le = re.search(r'le="([^"]+)"', labels).group(1)
            rows.append((float("inf") if le == "+Inf" else float(le), value))
    return sorted(rows)


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Prometheus-style quantile of cumulative buckets, linear within the bucket."""
    if not buckets or buckets[-1][1] <= 0:
        return float("nan")
    total = buckets[-1][1]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


# ---- callers ---------------------------------------------------------------------------------------

@dataclass
class Tally:
    attempted: int = 0
    posted: int = 0
    created_ms: list[float] = field(default_factory=list)
    stalls: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    down: Counter = field(default_factory=Counter)
    rx_calls: int = 0  # calls that ended with audio received
    rx_gaps: int = 0
    responses: int = 0


class CallerProc:
    """One bench/_soak_caller.py process and the calls it has up (from its event lines)."""

    def __init__(self, index: int, argv: list[str], tally: Tally, logdir: Path) -> None:
        self.index, self.argv, self.tally, self.logdir = index, argv, tally, logdir
        self.live: dict[str, float] = {}  # call id → POST time
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task | None = None
        self.killed = False

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
            stderr=open(self.logdir / f"caller{self.index}.log", "ab"), start_new_session=True,
            preexec_fn=die_with_parent)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        t = self.tally
        while True:
            raw = await self.proc.stdout.readline()
            if not raw:
                return
            try:
                ev = json.loads(raw)
            except ValueError:
                continue
            kind, call_id = ev.get("ev"), ev.get("call_id")
            if kind == "attempt":
                t.attempted += 1
            elif kind == "posted":
                t.posted += 1
                self.live[call_id] = ev["t"]
            elif kind == "created":
                t.created_ms.append(ev["ms"])
            elif kind == "stall":
                t.stalls.append(call_id)
            elif kind == "failed":
                t.failed.append(ev.get("why", "?"))
                self.live.pop(call_id, None)
            elif kind == "down":
                self.live.pop(call_id, None)
                t.down[ev["how"]] += 1
                t.rx_calls += ev["rx"] > 0
                t.rx_gaps += ev["gaps"]
                t.responses += ev["responses"]

    def kill(self) -> list[str]:
        """SIGKILL: the calls it has up vanish without a goodbye. Returns their ids."""
        self.killed = True
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        return list(self.live)

    async def stop(self) -> None:
        """Close stdin: every caller hangs up, then the process exits."""
        if self.proc.returncode is None and not self.killed:
            with contextlib.suppress(Exception):
                self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 40)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._reader, 5)


# ---- the run ---------------------------------------------------------------------------------------

@dataclass
class Reading:
    label: str
    calls: int  # calls the server had been given (POST 201) by then
    rss_mb: float
    fds: int
    threads: int


class Soak:
    def __init__(self, args: argparse.Namespace, server: ServerProcess, logdir: Path, speech: Path | None,
                 udp_port: int) -> None:
        self.args, self.server, self.logdir, self.speech, self.udp_port = args, server, logdir, speech, udp_port
        self.tally = Tally()
        self.rng = random.Random(args.seed)
        self.procs: list[CallerProc] = []
        self.n_procs = 0
        self.readings: list[Reading] = []
        self.kills = 0
        self.vanished: dict[str, float] = {}  # call id → kill time, until reaped
        self.reaped_s: list[float] = []
        self.lag_windows: list[tuple[list, list]] = []
        self.frames = [0.0, 0.0]  # late, out over the churn windows
        self.http = httpx.AsyncClient(timeout=20)

    def caller_argv(self, index: int, lossy: bool) -> list[str]:
        a = self.args
        argv = [sys.executable, str(ROOT / "bench" / "_soak_caller.py"), "--url", self.server.url,
                "--slots", str(a.slots), "--mode", "voice" if a.engine == "local" else "echo",
                "--hold", f"{a.hold[0]},{a.hold[1]}", "--stall-s", str(STALL_S), "--seed", str(self.rng.randrange(1 << 30)),
                "--nice", str(a.caller_nice)]
        if lossy:
            argv += ["--loss", str(a.loss)]
        if self.speech is not None:
            argv += ["--speech", str(self.speech)]
        return argv

    async def spawn(self, lossy: bool) -> CallerProc:
        proc = CallerProc(self.n_procs, self.caller_argv(self.n_procs, lossy), self.tally, self.logdir)
        proc.lossy = lossy
        self.n_procs += 1
        await proc.start()
        self.procs.append(proc)
        return proc

    async def server_calls(self) -> set[str] | None:
        with contextlib.suppress(Exception):
            r = await self.http.get(self.server.url + "/v1/realtime/calls", headers=AUTH)
            if r.status_code == 200:
                return {c["id"] for c in r.json()["data"]}
        return None

    async def metrics(self) -> dict:
        with contextlib.suppress(Exception):
            return parse_metrics((await self.http.get(self.server.url + "/metrics")).text)
        return {}

    async def reap_watch(self) -> None:
        """Every second while vanished calls are pending: which of them the server has dropped."""
        while True:
            await asyncio.sleep(1.0)
            if not self.vanished:
                continue
            ids = await self.server_calls()
            if ids is None:
                continue
            now = time.monotonic()
            for call_id in [c for c in self.vanished if c not in ids]:
                self.reaped_s.append(now - self.vanished.pop(call_id))

    def read(self, label: str) -> Reading:
        s = self.server
        reading = Reading(label, self.tally.posted, s.rss_kib() / 1024, s.fds(), s.threads())
        self.readings.append(reading)
        print(f"  [{label}] calls so far {reading.calls}, RSS {reading.rss_mb:.1f} MB, fds {reading.fds}, "
              f"threads {reading.threads}", file=sys.stderr)
        return reading

    async def churn(self, seconds: float, kills: int, label: str) -> None:
        a = self.args
        want = a.calls // a.slots
        for i in range(want - len([p for p in self.procs if p.proc.returncode is None and not p.killed])):
            await self.spawn(lossy=i < a.loss_callers)
        m0 = await self.metrics()
        t0 = time.monotonic()
        latest = seconds - REAP_MARGIN_S
        times = sorted(self.rng.uniform(8.0, latest) for _ in range(kills)) if latest > 8 else []
        if kills and not times:
            print(f"  [{label}] too short for a kill (needs > {REAP_MARGIN_S + 8:.0f} s)", file=sys.stderr)
        comebacks: list[asyncio.Task] = []
        for at in times:
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            live = [p for p in self.procs if p.proc.returncode is None and not p.killed]
            if not live:
                continue
            victim = self.rng.choice(live)
            ids = victim.kill()
            now = time.monotonic()
            self.kills += 1
            for call_id in ids:
                self.vanished[call_id] = now
            print(f"  [{label}] +{now - t0:.0f}s SIGKILL caller process {victim.index}: {len(ids)} calls vanish",
                  file=sys.stderr)

            async def come_back(lossy: bool = victim.lossy) -> None:
                await asyncio.sleep(self.rng.uniform(2.0, 5.0))
                await self.spawn(lossy)

            comebacks.append(asyncio.create_task(come_back()))
        await asyncio.sleep(max(0.0, t0 + seconds - time.monotonic()))
        await asyncio.gather(*comebacks)
        m1 = await self.metrics()
        self.lag_windows.append((lag_buckets(m0), lag_buckets(m1)))
        self.frames[0] += metric(m1, "openrealtime_audio_late_frames_total") - metric(m0, "openrealtime_audio_late_frames_total")
        self.frames[1] += (metric(m1, "openrealtime_audio_frames_total", '{direction="out"}')
                           - metric(m0, "openrealtime_audio_frames_total", '{direction="out"}'))

    async def quiesce(self, label: str) -> Reading:
        """Every caller hangs up; wait until the server's call list is empty; read RSS, fds, threads."""
        procs, self.procs = self.procs, []
        await asyncio.gather(*(p.stop() for p in procs))
        t0 = time.monotonic()
        while True:
            ids = await self.server_calls()
            if ids is not None and not ids:
                break
            if time.monotonic() - t0 > QUIESCE_TIMEOUT_S:
                print(f"  [{label}] {len(ids or ())} calls still listed after {QUIESCE_TIMEOUT_S:.0f} s",
                      file=sys.stderr)
                break
            await asyncio.sleep(1.0)
        await asyncio.sleep(SETTLE_S)
        return self.read(label)

    async def run(self) -> str:
        a = self.args
        load0 = os.getloadavg()
        watcher = asyncio.create_task(self.reap_watch())
        start = self.read("start")
        metrics_start = await self.metrics()
        print(f"warm-up: {a.warmup_s:.0f} s of churn, {a.kills} kills …", file=sys.stderr)
        await self.churn(a.warmup_s, a.kills, "warm-up")
        self.lag_windows.clear()
        self.frames = [0.0, 0.0]
        warm = await self.quiesce("after warm-up")
        round_s = max(30.0, (a.minutes * 60 - a.warmup_s) / a.rounds)
        for r in range(a.rounds):
            print(f"round {r + 1}/{a.rounds}: {round_s:.0f} s of churn, {a.kills} kills …", file=sys.stderr)
            await self.churn(round_s, a.kills, f"round {r + 1}")
            await self.quiesce(f"after round {r + 1}")
        end = self.readings[-1]
        metrics_end = await self.metrics()
        watcher.cancel()
        return self.report(start, warm, end, metrics_start, metrics_end, load0, os.getloadavg())

    def report(self, start: Reading, warm: Reading, end: Reading, m0: dict, m1: dict, load0, load1) -> str:
        a, t = self.args, self.tally
        lines: list[str] = []
        add = lines.append
        verdict = lambda ok: "PASS" if ok else "MISS"  # noqa: E731
        engine = "echo" if a.engine == "echo" else f"local --profile {a.profile}"
        add(f"soak: engine={engine} calls={a.calls} ({a.calls // a.slots} caller processes × {a.slots}) "
            f"minutes={a.minutes} (warm-up {a.warmup_s:.0f} s + {a.rounds} rounds) kills/round={a.kills} "
            f"loss={a.loss * 100:.0f}% on {a.loss_callers} of {a.calls // a.slots} processes; "
            f"cpus={os.cpu_count()} load avg {load0[0]:.1f} → {load1[0]:.1f}")
        created = np.array(t.created_ms) if t.created_ms else np.array([float("nan")])
        add(f"calls      attempted {t.attempted}  connected (session.created) {len(t.created_ms)}  "
            f"failed {len(t.failed)}  hung up: {dict(t.down)}  with audio back {t.rx_calls}")
        add(f"setup      POST→session.created p50 {np.percentile(created, 50):.0f} ms  "
            f"p99 {np.percentile(created, 99):.0f} ms  max {np.max(created):.0f} ms")
        add(f"stalls     {len(t.stalls)} calls without session.created within {STALL_S:.0f} s (target 0)  "
            f"{verdict(not t.stalls)}")
        reap = np.array(self.reaped_s) if self.reaped_s else np.array([float("nan")])
        pending = len(self.vanished)
        add(f"vanished   {self.kills} caller processes SIGKILLed, {len(self.reaped_s) + pending} calls vanished; "
            f"reaped after p50 {np.percentile(reap, 50):.1f} s, max {np.max(reap):.1f} s "
            f"(target ≤ {TARGET_REAP_S:.0f} s), not reaped {pending}  "
            f"{verdict(pending == 0 and bool(self.reaped_s) and np.max(reap) <= TARGET_REAP_S)}")
        after = [r for r in self.readings if r.calls >= warm.calls and r.label != "start"]
        calls = end.calls - warm.calls
        growth = (end.rss_mb - warm.rss_mb) / calls * 1000 if calls else float("nan")
        slope = float("nan")
        if len(after) >= 2 and after[-1].calls > after[0].calls:
            slope = float(np.polyfit([r.calls for r in after], [r.rss_mb for r in after], 1)[0]) * 1000
        add(f"RSS        start {start.rss_mb:.1f} MB, after warm-up {warm.rss_mb:.1f} MB, end {end.rss_mb:.1f} MB; "
            f"growth after warm-up {end.rss_mb - warm.rss_mb:+.1f} MB over {calls} calls = {growth:+.2f} MB per "
            f"1,000 calls (slope through {len(after)} quiescent readings {slope:+.2f}; target ≤ "
            f"{TARGET_RSS_MB_PER_1000:.0f})  {verdict(growth <= TARGET_RSS_MB_PER_1000)}")
        add("           quiescent readings: " + "; ".join(f"{r.label}: {r.calls} calls {r.rss_mb:.1f} MB "
                                                         f"{r.fds} fds {r.threads} thr" for r in self.readings))
        ok_fd = abs(end.fds - warm.fds) <= TARGET_FD_THREAD_DELTA
        ok_thr = abs(end.threads - warm.threads) <= TARGET_FD_THREAD_DELTA
        add(f"fds        start {start.fds}, after warm-up {warm.fds}, end {end.fds} (target: after warm-up ±2)  "
            f"{verdict(ok_fd)}")
        add(f"threads    start {start.threads}, after warm-up {warm.threads}, end {end.threads} "
            f"(target: after warm-up ±2)  {verdict(ok_thr)}")
        diff: list[tuple[float, float]] = []
        for before, after_b in self.lag_windows:
            counts = dict(before)
            for bound, count in after_b:
                diff.append((bound, count - counts.get(bound, 0.0)))
        merged: dict[float, float] = {}
        for bound, count in diff:
            merged[bound] = merged.get(bound, 0.0) + count
        buckets = sorted(merged.items())
        p99 = histogram_quantile(buckets, 0.99) * 1000
        p50 = histogram_quantile(buckets, 0.50) * 1000
        samples = buckets[-1][1] if buckets else 0
        add(f"loop lag   p50 {p50:.1f} ms, p99 {p99:.1f} ms over the churn windows ({samples:.0f} samples every "
            f"50 ms; target p99 ≤ {TARGET_LAG_MS:.0f} ms at 20 calls)  {verdict(p99 <= TARGET_LAG_MS)}")
        add(f"frames     late outbound (clock resyncs) {self.frames[0]:.0f} of {self.frames[1]:.0f} sent; "
            f"callers saw {t.rx_gaps} inter-arrival gaps > 60 ms; the kernel dropped {udp_drops(self.udp_port)} "
            f"datagrams on the server's ICE UDP port (receive buffer full)")
        ended = {re.search(r'reason="([^"]+)"', k[1]).group(1): v for k, v in m1.items()
                 if k[0] == "openrealtime_calls_ended_total"}
        add("ended      " + ", ".join(f"{reason} {n:.0f}" for reason, n in sorted(ended.items())))
        if a.engine == "local":
            add(f"responses  {t.responses} response.done received by callers")
        for why, n in Counter(t.failed).most_common(5):
            add(f"failure    {n}× {why}")
        return "\n".join(lines)


def speak(path: Path, text: str) -> Path:
    """A spoken question (espeak-ng, 48 kHz mono) for the voice callers' microphones."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(path), "pad", "0", "0.6"], check=True)
    return path


async def run(args: argparse.Namespace, logdir: Path) -> str:
    port, udp_port = free_port(), free_port(kind=socket.SOCK_DGRAM)
    # local: no conversation limit (api/admission.py), the soak is about leaks and churn, not latency
    engine = ["--engine", "echo"] if args.engine == "echo" else ["--engine", "local", "--profile", args.profile,
                                                                  "--max-conversations", "0"]
    server = ServerProcess("server", [sys.executable, "-m", "openrealtime", "serve", *engine, "--host", "127.0.0.1",
                                      "--port", str(port), "--udp-port", str(udp_port),
                                      "--tcp-port", str(free_port()), "--max-calls", str(args.calls * 3 + 16),
                                      "--log-level", args.server_log_level], port)
    speech = speak(logdir / "question.wav", QUESTION) if args.engine == "local" else None
    soak = None
    try:
        server.start(logdir)
        await server.wait_ready(timeout=300)
        print(f"server ready (logs in {logdir})", file=sys.stderr)
        soak = Soak(args, server, logdir, speech, udp_port)
        return await soak.run()
    finally:
        if soak is not None:
            for p in soak.procs:
                with contextlib.suppress(Exception):
                    p.proc.kill()
            await soak.http.aclose()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=("echo", "local"), default="echo")
    parser.add_argument("--profile", default="test", help="model profile for --engine local")
    parser.add_argument("--calls", type=int, default=20, help="concurrent callers")
    parser.add_argument("--slots", type=int, default=4, help="callers per caller process")
    parser.add_argument("--minutes", type=float, default=4.5)
    parser.add_argument("--warmup-s", type=float, default=70.0,
                        help="churn with kills before the baseline reading (the allocator reaches its high-water)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kills", type=int, default=2, help="caller processes SIGKILLed per round")
    parser.add_argument("--loss-callers", type=int, default=1, help="caller processes with packet loss")
    parser.add_argument("--loss", type=float, default=0.05)
    parser.add_argument("--hold", type=lambda s: tuple(float(x) for x in s.split(",")), default=(4.0, 16.0))
    parser.add_argument("--caller-nice", type=int, default=5)
    parser.add_argument("--server-log-level", default="warning")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--deadline", type=float, default=900.0)
    args = parser.parse_args()
    print(run_bounded("soak", lambda logdir: run(args, logdir), args.deadline))


if __name__ == "__main__":
    main()
