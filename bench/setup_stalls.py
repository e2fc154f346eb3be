"""Setup stalls under heavy load: do calls through the shared-port ICE mux ever miss `session.created`?

    python bench/setup_stalls.py [--rounds 8] [--per-round 20] [--modes sequential,burst] [--busy 8]
                                 [--runs 1] [--server ours|plain] [--deadline 900]

bench/README once recorded 2-9 of 160 calls never reaching `session.created` within 8 s on a loaded 2-core
box (shared-port mux only; a per-call socket and plain aiortc had none). This repeats that scenario: a real
`python -m openrealtime serve --engine echo` process (shared UDP/TCP ICE ports, the default), `--busy`
processes spinning `while True: pass` at normal priority for the whole run, and aiortc callers
(openrealtime.client.rtc.RealtimeRtcClient: multipart offer, data channel, a microphone sending silence)
in this process; the audio they receive is counted, not decoded (our echo server sends audio from the
start and the plain one none: decoding 20 streams would slow this process, and so the callers' side of
setup, for ours only). Per mode, `--rounds` rounds of `--per-round` calls:
  sequential  the calls of a round are opened one by one (each waits for its `session.created`, at most
              8 s, before the next is opened) and stay up until the round's last one is set up;
  burst       the calls of a round are opened all at once.
Then every call of the round hangs up (pc.close), and after 1 s the next round starts: the OS hands the
new callers ports the last round just freed, which is what the mux's address take-over is for.
Printed per mode: calls, stalls (no `session.created` within 8 s), calls that never got one (20 s), setup
POST→session.created p50/p99/max, the server's CPU time per call (set up, held, hung up), and the mux's drop counters (`openrealtime_ice_mux_events_total`)
over the mode. `--server plain` runs the same against bench/_plain_aiortc.py (stock aiortc, a socket per
call) to tell the load's share from ours. The HTTP client lets idle connections go after 2 s: with httpx's
default (5 s, the same as uvicorn's keep-alive timeout) a POST can race the server closing the connection
and fail with ReadError, which is not what this bench is about. Bounded by `--deadline`; every subprocess
dies with the bench.
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
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._server import ServerProcess, die_with_parent, run_bounded  # noqa: E402
from bench.soak import metric, parse_metrics  # noqa: E402
from openrealtime.api.embedded import free_port  # noqa: E402
from openrealtime.client.rtc import RealtimeRtcClient  # noqa: E402

STALL_S = 8.0
NEVER_S = 20.0
MUX_DROPS = ("udp_dropped_unknown", "udp_dropped_malformed", "udp_dropped_bad_integrity", "udp_dropped_class",
             "udp_dropped_table_full", "udp_tx_dropped", "addrs_taken_over")


class Call:
    def __init__(self, url: str, http: httpx.AsyncClient) -> None:
        self.client = RealtimeRtcClient(url, session={"type": "realtime"})
        self.http = http
        self.setup_ms: float | None = None
        self.error: str | None = None
        self.created = asyncio.Event()

    async def open(self) -> None:
        t0 = time.monotonic()
        try:
            resp = await self.client.connect(self.http)
            if resp.status_code != 201:
                self.error = f"POST → {resp.status_code}"
                return
            await self.client.next_event("session.created", timeout=NEVER_S)
            self.setup_ms = (time.monotonic() - t0) * 1000
        except Exception as exc:  # noqa: BLE001 - counted
            self.error = f"{type(exc).__name__}: {exc}"[:200]
        finally:
            self.created.set()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.close(), 10)


async def one_round(url: str, http: httpx.AsyncClient, n: int, mode: str) -> list[Call]:
    calls = [Call(url, http) for _ in range(n)]
    tasks = []
    if mode == "burst":
        tasks = [asyncio.create_task(c.open()) for c in calls]
    else:
        for c in calls:
            tasks.append(asyncio.create_task(c.open()))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(c.created.wait(), STALL_S)  # a stalled call is left to finish alone
    await asyncio.gather(*tasks)
    await asyncio.gather(*(c.close() for c in calls))
    return calls


async def mux_counters(http: httpx.AsyncClient, url: str) -> dict[str, float]:
    resp = await http.get(url + "/metrics")
    m = parse_metrics(resp.text) if resp.status_code == 200 else {}  # the plain server has no /metrics
    return {k: metric(m, "openrealtime_ice_mux_events_total", f'{{event="{k}"}}') for k in MUX_DROPS}


def count_received_rtp() -> None:
    """The callers count received RTP instead of buffering and decoding it (see the docstring)."""
    from aiortc.rtcrtpreceiver import RTCRtpReceiver

    async def _count(self, packet, arrival_time_ms) -> None:
        self._bench_rtp = getattr(self, "_bench_rtp", 0) + 1

    RTCRtpReceiver._handle_rtp_packet = _count


async def run(args: argparse.Namespace, logdir: Path) -> str:
    count_received_rtp()
    port = free_port()
    if args.server == "plain":
        server = ServerProcess("plain", [sys.executable, str(ROOT / "bench" / "_plain_aiortc.py"), "--port",
                                         str(port)], port)
    else:
        server = ServerProcess("server", [sys.executable, "-m", "openrealtime", "serve", "--engine", "echo",
                                          "--host", "127.0.0.1", "--port", str(port),
                                          "--udp-port", str(free_port(kind=socket.SOCK_DGRAM)), "--tcp-port",
                                          str(free_port()), "--max-calls", str(args.per_round * 3 + 8),
                                          "--log-level", "warning"], port)
    busy: list[subprocess.Popen] = []
    lines = [f"setup_stalls: server {args.server}, {args.rounds} rounds × {args.per_round} calls per mode, {args.busy} busy loops, "
             f"cpus={os.cpu_count()}"]
    try:
        server.start(logdir)
        await server.wait_ready()
        limits = httpx.Limits(max_connections=args.per_round * 2 + 8, keepalive_expiry=2.0)
        async with httpx.AsyncClient(timeout=NEVER_S, limits=limits) as http:
            await one_round(server.url, http, 2, "sequential")  # warm-up
            busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=die_with_parent)
                    for _ in range(args.busy)]
            await asyncio.sleep(1.0)
            for run_index in range(args.runs):
                for mode in args.modes.split(","):
                    before = await mux_counters(http, server.url)
                    load0, cpu0 = os.getloadavg()[0], server.cpu_s()
                    calls: list[Call] = []
                    for r in range(args.rounds):
                        calls += await one_round(server.url, http, args.per_round, mode)
                        await asyncio.sleep(1.0)
                    after = await mux_counters(http, server.url)
                    cpu_ms = (server.cpu_s() - cpu0) / len(calls) * 1000 if calls else float("nan")
                    ok = [c.setup_ms for c in calls if c.setup_ms is not None]
                    stalls = sum(1 for c in calls if c.setup_ms is None or c.setup_ms > STALL_S * 1000)
                    never = sum(1 for c in calls if c.setup_ms is None)
                    arr = np.array(ok) if ok else np.array([float("nan")])
                    drops = {k: int(after[k] - before[k]) for k in MUX_DROPS if after[k] - before[k]}
                    errors = sorted({c.error for c in calls if c.error})[:3]
                    line = (f"run {run_index + 1} {mode:<10} calls {len(calls)}  stalls (> {STALL_S:.0f} s) {stalls}  "
                            f"never {never}  setup p50 {np.percentile(arr, 50):.0f} ms  p99 "
                            f"{np.percentile(arr, 99):.0f} ms  max {np.max(arr):.0f} ms  server CPU {cpu_ms:.0f} ms/call  load {load0:.1f}→"
                            f"{os.getloadavg()[0]:.1f}  mux {drops or 'no drops'}"
                            + (f"  errors {errors}" if errors else ""))
                    print(line, file=sys.stderr)
                    lines.append(line)
    finally:
        for p in busy:
            p.kill()
        for p in busy:
            p.wait()
        server.stop()
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--per-round", type=int, default=20)
    parser.add_argument("--modes", default="sequential,burst")
    parser.add_argument("--busy", type=int, default=8, help="busy-loop processes (CPU load)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--server", choices=("ours", "plain"), default="ours")
    parser.add_argument("--deadline", type=float, default=900.0)
    args = parser.parse_args()
    print(run_bounded("setup_stalls", lambda logdir: run(args, logdir), args.deadline))


if __name__ == "__main__":
    main()
