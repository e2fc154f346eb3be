"""Call-setup latency and idle-call memory: openrealtime vs a plain aiortc answerer.

    python bench/call_setup.py [--n 20] [--concurrency 20] [--idle 20] [--deadline 300]

Both servers run as subprocesses on 127.0.0.1 (ours: `python -m openrealtime serve --engine
echo`; the baseline: bench/_plain_aiortc.py, stock aiortc behind FastAPI/uvicorn); the aiortc
clients (openrealtime.client.rtc.RealtimeRtcClient, multipart offer like the seed demo) run in
this process. Subprocesses keep the client's Python work off the server's event loop and give
a clean per-process RSS; on a small box (2 vCPU here) client and server still share the CPU.

Phases, per server, after one warm-up call each:
  1. idle RSS: open --idle connected calls (session.created received, mic sending silence),
     settle, read VmRSS (/proc/<pid>/status) and CPU (/proc/<pid>/stat) → delta / K;
  2. sequential: --n calls one after another (ours and plain interleaved call by call);
  3. concurrent: --n calls, at most --concurrency in flight (ours batch, then plain batch).
A call = createOffer, POST, apply answer, wait for `session.created`, close.
Printed: p50/p95 of POST→201 and POST→session.created, ratio ours/plain, targets.
Bounded: the whole run is cancelled after --deadline seconds; subprocesses are always killed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from openrealtime.api.embedded import free_port  # noqa: E402
from bench._server import ServerProcess, run_bounded  # noqa: E402
from openrealtime.client.rtc import RealtimeRtcClient  # noqa: E402

TARGET_P50_MS = 150.0
TARGET_RATIO = 0.5
CALL_TIMEOUT_S = 20.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


Server = ServerProcess


@dataclass
class Sample:
    to_201_ms: float
    to_connected_ms: float  # client pc.connectionState == "connected" (ICE + DTLS done)
    to_created_ms: float


@dataclass
class Results:
    seq: list[Sample] = field(default_factory=list)
    conc: list[Sample] = field(default_factory=list)
    conc_wall_s: float = 0.0
    rss_per_call_kib: float = float("nan")
    rss_base_kib: int = 0
    cpu_per_idle_call_pct: float = float("nan")
    threads: tuple[int, int] = (0, 0)
    idle_ok: int = 0
    errors: list[str] = field(default_factory=list)


async def open_call(server: Server, http: httpx.AsyncClient) -> tuple[RealtimeRtcClient, Sample]:
    client = RealtimeRtcClient(server.url, encoding="multipart")

    @client.pc.on("connectionstatechange")
    def _state() -> None:
        if client.pc.connectionState == "connected":
            client.timings.setdefault("connected", time.monotonic())

    try:
        resp = await asyncio.wait_for(client.connect(http), CALL_TIMEOUT_S)
        if resp.status_code != 201:
            raise RuntimeError(f"POST → {resp.status_code}: {resp.text[:200]}")
        await client.next_event("session.created", timeout=CALL_TIMEOUT_S)
    except BaseException:
        await client.close()
        raise
    t = client.timings
    connected = t.get("connected", t["session_created"])
    return client, Sample((t["answer"] - t["post"]) * 1000, (connected - t["post"]) * 1000,
                          (t["session_created"] - t["post"]) * 1000)


async def one_call(server: Server, http: httpx.AsyncClient) -> Sample:
    client, sample = await open_call(server, http)
    await client.close()
    return sample


async def idle_rss(server: Server, http: httpx.AsyncClient, k: int, res: Results) -> None:
    await asyncio.sleep(1.0)  # let the warm-up call's teardown finish
    base, base_threads = server.rss_kib(), server.threads()
    clients: list[RealtimeRtcClient] = []
    try:
        for _ in range(k):
            try:
                client, _sample = await open_call(server, http)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                res.errors.append(f"idle: {type(exc).__name__}: {exc}")
                continue
            clients.append(client)
        if not clients:
            return
        await asyncio.sleep(2.0)  # settle: ICE consent, RTCP, jitter buffers filled
        cpu0, t0 = server.cpu_s(), time.monotonic()
        await asyncio.sleep(3.0)
        cpu1, t1 = server.cpu_s(), time.monotonic()
        rss = server.rss_kib()
        res.rss_base_kib = base
        res.idle_ok = len(clients)
        res.rss_per_call_kib = (rss - base) / len(clients)
        res.cpu_per_idle_call_pct = (cpu1 - cpu0) / (t1 - t0) / len(clients) * 100
        res.threads = (base_threads, server.threads())
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    await asyncio.sleep(1.5)  # servers notice the closes and tear down


async def concurrent(server: Server, http: httpx.AsyncClient, n: int, limit: int, res: Results) -> None:
    sem = asyncio.Semaphore(limit)

    async def guarded() -> Sample | None:
        async with sem:
            try:
                return await one_call(server, http)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                res.errors.append(f"concurrent: {type(exc).__name__}: {exc}")
                return None

    t0 = time.monotonic()
    samples = await asyncio.gather(*(guarded() for _ in range(n)))
    res.conc_wall_s = time.monotonic() - t0
    res.conc = [s for s in samples if s is not None]
    await asyncio.sleep(1.5)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def fmt_ms(v: float) -> str:
    return "   n/a" if v != v else f"{v:6.1f}"


def report(args: argparse.Namespace, ours: Results, plain: Results) -> str:
    lines = []
    add = lines.append
    add(f"call_setup: n={args.n} concurrency={args.concurrency} idle={args.idle} "
        f"cpus={os.cpu_count()} python={sys.version.split()[0]}")
    add("")
    add(f"{'phase':<11}{'metric':<24}{'ours p50':>9}{'p95':>8}{'plain p50':>10}{'p95':>8}"
        f"{'ratio p50':>10}{'ratio p95':>10}")
    for phase, attr in (("sequential", "seq"), ("concurrent", "conc")):
        for label, key in (("POST→201 ms", "to_201_ms"), ("POST→connected ms", "to_connected_ms"),
                           ("POST→session.created ms", "to_created_ms")):
            o = [getattr(s, key) for s in getattr(ours, attr)]
            p = [getattr(s, key) for s in getattr(plain, attr)]
            o50, o95, p50, p95 = pct(o, 50), pct(o, 95), pct(p, 50), pct(p, 95)
            add(f"{phase:<11}{label:<24}{fmt_ms(o50):>9}{fmt_ms(o95):>8}{fmt_ms(p50):>10}{fmt_ms(p95):>8}"
                f"{o50 / p50:>10.2f}{o95 / p95:>10.2f}")
    add(f"{'':<11}{'calls ok (ours/plain)':<24}  seq {len(ours.seq)}/{len(plain.seq)}, "
        f"conc {len(ours.conc)}/{len(plain.conc)}; conc wall {ours.conc_wall_s:.2f}s / {plain.conc_wall_s:.2f}s")
    add("")
    add(f"idle calls (K={args.idle}, server subprocess)      ours        plain")
    add(f"  calls connected                         {ours.idle_ok:8d}    {plain.idle_ok:8d}")
    add(f"  RSS before (MiB)                        {ours.rss_base_kib / 1024:8.1f}    {plain.rss_base_kib / 1024:8.1f}")
    add(f"  RSS per idle call (KiB)                 {ours.rss_per_call_kib:8.0f}    {plain.rss_per_call_kib:8.0f}")
    add(f"  CPU per idle call (% of a core)         {ours.cpu_per_idle_call_pct:8.2f}    "
        f"{plain.cpu_per_idle_call_pct:8.2f}")
    add(f"  threads before → with K calls           {ours.threads[0]:>3} → {ours.threads[1]:<4}  "
        f"{plain.threads[0]:>3} → {plain.threads[1]}")
    add("")
    seq_o = pct([s.to_created_ms for s in ours.seq], 50)
    seq_p = pct([s.to_created_ms for s in plain.seq], 50)
    ok1 = seq_o <= TARGET_P50_MS
    ok2 = seq_o <= TARGET_RATIO * seq_p
    add(f"target  p50 POST→session.created (sequential) ≤ {TARGET_P50_MS:.0f} ms: "
        f"{seq_o:.1f} ms  {'PASS' if ok1 else 'MISS'}")
    add(f"target  p50 ours/plain ≤ {TARGET_RATIO}: {seq_o / seq_p:.2f}  {'PASS' if ok2 else 'MISS'}")
    for e in (ours.errors + plain.errors)[:10]:
        add(f"error: {e}")
    return "\n".join(lines)


def ice_port_flags() -> list[str]:
    """Free ports for the shared ICE mux (defaults 3478/443 may be taken), if this CLI has them."""
    help_text = subprocess.run([sys.executable, "-m", "openrealtime", "serve", "--help"], cwd=ROOT,
                               capture_output=True, text=True, timeout=60).stdout
    flags = []
    if "--udp-port" in help_text:
        flags += ["--udp-port", str(free_port(kind=socket.SOCK_DGRAM))]
    if "--tcp-port" in help_text:
        flags += ["--tcp-port", str(free_port())]
    return flags


async def run(args: argparse.Namespace, logdir: Path) -> str:
    port = free_port()
    ours = Server("ours", [sys.executable, "-m", "openrealtime", "serve", "--engine", "echo", "--host", "127.0.0.1",
                           "--port", str(port), "--log-level", "warning",
                           "--max-calls", str(max(64, args.idle + args.concurrency + 8)),
                           *ice_port_flags()], port)
    port = free_port()
    plain = Server("plain", [sys.executable, str(ROOT / "bench" / "_plain_aiortc.py"), "--port", str(port)], port)
    servers = (ours, plain)
    res = {s.name: Results() for s in servers}
    try:
        for s in servers:
            s.start(logdir)
        for s in servers:
            await s.wait_ready()
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(timeout=CALL_TIMEOUT_S, limits=limits) as http:
            for s in servers:  # warm-up: imports, codec tables, first-call lazies
                await one_call(s, http)
            for s in servers:
                print(f"[{s.name}] idle RSS with {args.idle} calls …", file=sys.stderr)
                await idle_rss(s, http, args.idle, res[s.name])
            print(f"sequential: {args.n} calls each …", file=sys.stderr)
            for _ in range(args.n):
                for s in servers:
                    try:
                        res[s.name].seq.append(await one_call(s, http))
                    except Exception as exc:  # noqa: BLE001
                        res[s.name].errors.append(f"sequential: {type(exc).__name__}: {exc}")
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            for s in servers:
                print(f"[{s.name}] concurrent: {args.n} calls, {args.concurrency} in flight …", file=sys.stderr)
                await concurrent(s, http, args.n, args.concurrency, res[s.name])
    finally:
        for s in servers:
            s.stop()
    return report(args, res["ours"], res["plain"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20, help="calls per phase per server")
    parser.add_argument("--concurrency", type=int, default=None, help="calls in flight in the concurrent phase (default: n)")
    parser.add_argument("--idle", type=int, default=20, help="idle connected calls for the RSS figure (K)")
    parser.add_argument("--deadline", type=float, default=300.0, help="abort the whole run after this many seconds")
    args = parser.parse_args()
    args.concurrency = args.concurrency or args.n
    print(run_bounded("call_setup", lambda logdir: run(args, logdir), args.deadline))


if __name__ == "__main__":
    main()
