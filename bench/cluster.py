"""Cluster bench: media capacity of `serve --workers 2` against `--workers 1`, and call setup through a
forwarding node against a direct one, in one run.

    python bench/cluster.py [--ns 10,20,30,40,50,60,80] [--window 8] [--client-procs 2]
                            [--setup-calls 40] [--opus-complexity 5] [--deadline 1200]

1. Media capacity. Two hosts as subprocesses on 127.0.0.1: `openrealtime serve --engine echo
   --workers 1` and `--workers 2` (supervisor + workers sharing the HTTP port, the embedded SQLite
   store, ICE ports per worker). Per N, interleaved (same background load), bench/media_plane.py's
   client workers open N bidirectional Opus calls through the host's one HTTP port and measure a
   `--window`: late % (frames > 60 ms after the previous one), lost %, and the server CPU per
   call-second (utime+stime of the supervisor and every worker, /proc). A host's scan stops at the
   first N that is not good (a failed call, or late + lost ≥ 1 %). Capacity = the largest good N.
   Target: `--workers 2` ≥ 1.6 × the calls of `--workers 1` at the same quality.
2. Call setup. A real redis-server and two single-process nodes, A (`--max-calls 0`: it takes no
   calls, so every POST to it is forwarded) and B. `--setup-calls` calls each, one at a time,
   interleaved: POSTed to B (direct) and POSTed to A (forwarded to B, signed, over HTTP). Printed:
   POST → 201 and POST → session.created p50/p99 for both, and what forwarding adds at p50.
   Target: forwarding adds ≤ 5 ms to setup p50.

The clients share the machine with the servers: on a small box the client processes take CPU the
workers would use, so read the capacity with the load average and core count printed beside it.
Every subprocess is killed on exit; the whole run is bounded by `--deadline`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench._server import CLK_TCK, ServerProcess, run_bounded  # noqa: E402
from bench.media_plane import Row, free_port, measure, table  # noqa: E402
from openrealtime.client.rtc import RealtimeRtcClient  # noqa: E402

TARGET_RATIO = 1.6
TARGET_FORWARD_MS = 5.0
GOOD_LATE_PCT = 1.0
CALL_TIMEOUT_S = 20.0
SECRET = "bench-cluster-secret-0123456789abcdef"


class Host(ServerProcess):
    """A `serve --workers K` process tree: CPU and threads summed over the supervisor and its workers."""

    def _tree(self) -> list[int]:
        pids, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            todo.extend(int(c) for c in children)
        return pids

    def cpu_s(self) -> float:
        total = 0
        for pid in self._tree():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / CLK_TCK

    def threads(self) -> int:
        total = 0
        for pid in self._tree():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))
        return total

    async def metrics(self) -> dict[str, float]:
        return {}  # one worker's /metrics is not the host's: the client-side figures are used


def serve_argv(port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "openrealtime", "serve", "--engine", "echo", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning", *extra]


def good(row: Row) -> bool:
    return row.ok == row.n and row.late_pct + row.lost_pct < GOOD_LATE_PCT


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# ---- 1. media capacity ---------------------------------------------------------------------------
async def capacity(args, logdir: Path) -> list[str]:
    hosts = {}
    for k in (1, 2):
        port = free_port()
        udp = free_port(socket.SOCK_DGRAM) if k == 1 else 0  # K workers take UDP port + i: let each pick
        hosts[k] = Host(f"workers{k}", serve_argv(port, "--workers", str(k), "--max-calls", str(max(args.ns) + 8),
                                                  "--opus-complexity", str(args.opus_complexity),
                                                  "--udp-port", str(udp), "--tcp-port", "0"), port)
    rows: list[Row] = []
    load_before = loadavg()
    try:
        for host in hosts.values():
            host.start(logdir)
        for host in hosts.values():
            await host.wait_ready()
        await asyncio.sleep(3.0)  # every worker registered and serving
        active = list(hosts)
        for n in args.ns:
            for k in list(active):
                print(f"[workers {k}] N={n} …", file=sys.stderr, flush=True)
                try:
                    row = await measure(hosts[k], n, args)
                except Exception as exc:  # noqa: BLE001 - a failed step ends this host's scan
                    row = Row(hosts[k].name, n, errors=[f"{type(exc).__name__}: {exc}"[:300]])
                rows.append(row)
                print("\n".join(table([row])[1:]), file=sys.stderr, flush=True)
                await asyncio.sleep(2.0)  # calls torn down
                if not good(row):
                    active.remove(k)
            if not active:
                break
    finally:
        for host in hosts.values():
            host.stop()
    best = {}
    for k in hosts:
        fine = [r for r in rows if r.server == hosts[k].name and good(r)]
        best[k] = max(fine, key=lambda r: r.n) if fine else None
    lines = [f"1. media capacity (echo engine, bidirectional Opus, opus-complexity={args.opus_complexity}, "
             f"window={args.window:.0f}s, client-procs={args.client_procs}); cpus={os.cpu_count()} "
             f"loadavg before={load_before} after={loadavg()}", *table(sorted(rows, key=lambda r: (r.server, r.n))), ""]
    for k, row in best.items():
        lines.append(f"  --workers {k}: {row.n if row else 0} calls at < {GOOD_LATE_PCT:g} % late+lost"
                     + (f", {row.cpu_per_call_s * 100:.2f} % of a core per call" if row else ""))
    if best[1] and best[2]:
        ratio = best[2].n / best[1].n
        lines.append(f"  ratio {ratio:.2f}× (target ≥ {TARGET_RATIO}×): {'met' if ratio >= TARGET_RATIO else 'NOT met'}"
                     + ("" if max(args.ns) > best[2].n else " (the scan's largest N: raise --ns)"))
    return lines


# ---- 2. call setup through a forwarding node ------------------------------------------------------
async def one_call(url: str, http: httpx.AsyncClient) -> tuple[float, float]:
    client = RealtimeRtcClient(url, encoding="multipart")
    try:
        resp = await asyncio.wait_for(client.connect(http), CALL_TIMEOUT_S)
        if resp.status_code != 201:
            raise RuntimeError(f"POST → {resp.status_code}: {resp.text[:200]}")
        await client.next_event("session.created", timeout=CALL_TIMEOUT_S)
        t = client.timings
        return (t["answer"] - t["post"]) * 1000, (t["session_created"] - t["post"]) * 1000
    finally:
        await client.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))] if ordered else float("nan")


async def setup(args, logdir: Path) -> list[str]:
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        return ["2. call setup: skipped (no redis-server; apt install redis-server)"]
    redis_port = free_port()
    redis = subprocess.Popen([redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(logdir)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    env = {"OPENREALTIME_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "OPENREALTIME_CLUSTER_SECRET": SECRET}
    a_port, b_port = free_port(), free_port()
    nodes = {"forwarding": Host("node-a", serve_argv(a_port, "--node-id", "a", "--max-calls", "0",
                                                     "--udp-port", str(free_port(socket.SOCK_DGRAM)),
                                                     "--tcp-port", "0"), a_port),
             "direct": Host("node-b", serve_argv(b_port, "--node-id", "b", "--udp-port",
                                                 str(free_port(socket.SOCK_DGRAM)), "--tcp-port", "0"), b_port)}
    samples: dict[str, list[tuple[float, float]]] = {"direct": [], "forwarding": []}
    errors: list[str] = []
    load_before = loadavg()
    try:
        for node in nodes.values():
            node.start(logdir, env)
        for node in nodes.values():
            await node.wait_ready()
        await asyncio.sleep(4.0)  # both registered; a's node table has b
        async with httpx.AsyncClient(timeout=CALL_TIMEOUT_S) as http:
            for name in ("direct", "forwarding"):  # warm-up: first-call lazies, the forwarder's connection
                await one_call(nodes[name].url, http)
            for _ in range(args.setup_calls):
                for name in ("direct", "forwarding"):
                    try:
                        samples[name].append(await one_call(nodes[name].url, http))
                    except Exception as exc:  # noqa: BLE001 - reported
                        errors.append(f"{name}: {type(exc).__name__}: {exc}"[:200])
                    await asyncio.sleep(0.05)
    finally:
        for node in nodes.values():
            node.stop()
        redis.kill()
        redis.wait()
    lines = [f"2. call setup, {args.setup_calls} sequential calls each (node b answers every one; node a "
             f"--max-calls 0 forwards); loadavg before={load_before} after={loadavg()}",
             f"  {'path':<11} {'201 p50':>8} {'201 p99':>8} {'created p50':>12} {'created p99':>12}  (ms)"]
    for name in ("direct", "forwarding"):
        answer = [s[0] for s in samples[name]]
        created = [s[1] for s in samples[name]]
        lines.append(f"  {name:<11} {pct(answer, 50):8.1f} {pct(answer, 99):8.1f} {pct(created, 50):12.1f} "
                     f"{pct(created, 99):12.1f}")
    if samples["direct"] and samples["forwarding"]:
        added = statistics.median(s[0] for s in samples["forwarding"]) - statistics.median(
            s[0] for s in samples["direct"])
        lines.append(f"  forwarding adds {added:.1f} ms to POST → 201 at p50 (target ≤ {TARGET_FORWARD_MS:g} ms): "
                     f"{'met' if added <= TARGET_FORWARD_MS else 'NOT met'}")
    lines += [f"  error: {e}" for e in errors[:5]]
    return lines


async def run(args, logdir: Path) -> list[str]:
    head = [f"cluster bench: cpus={os.cpu_count()} python={sys.version.split()[0]} logs={logdir}", ""]
    media = await capacity(args, logdir) if not args.setup_only else []
    calls = await setup(args, logdir) if not args.capacity_only else []
    return head + media + [""] + calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ns", default="10,20,30,40,50,60,80", help="concurrent call counts to scan")
    parser.add_argument("--window", type=float, default=8.0, help="measurement window per N (s)")
    parser.add_argument("--client-procs", type=int, default=2, help="client worker processes")
    parser.add_argument("--opus-complexity", type=int, default=5, help="serve --opus-complexity")
    parser.add_argument("--setup-calls", type=int, default=40, help="sequential calls per path in part 2")
    parser.add_argument("--capacity-only", action="store_true", help="part 1 only")
    parser.add_argument("--setup-only", action="store_true", help="part 2 only")
    parser.add_argument("--deadline", type=float, default=1200.0, help="abort the whole run after this many s")
    args = parser.parse_args()
    args.ns = [int(x) for x in args.ns.split(",") if x.strip()]
    args.profile_s = 0.0  # media_plane.measure: no profiling here
    print("\n".join(run_bounded("cluster", lambda logdir: run(args, logdir), args.deadline)))


if __name__ == "__main__":
    main()
