"""Call setup through the shared-port ICE mux never stalls: a burst of callers opening their calls at once,
then a second burst right after the first hung up (its callers get ports just freed), all reach
`session.created`, and every call is up on the server. The callers run in a process of their own, as
real callers do (sharing the server's event loop, two dozen aiortc clients would load it past anything a
server sees). bench/README once recorded 2-9 of 160 calls stalling under heavy load; bench/setup_stalls.py
repeats that scenario at full size, with its figures in bench/README."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BURST = 24


async def burst(url: str) -> tuple[asyncio.subprocess.Process, list[dict]]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.support.caller_process", url,
                                                str(BURST), "--burst", cwd=ROOT, stdin=subprocess.PIPE,
                                                stdout=subprocess.PIPE)
    results = [json.loads(await asyncio.wait_for(proc.stdout.readline(), 90)) for _ in range(BURST)]
    return proc, results


async def test_bursts_of_calls_all_reach_session_created(echo_server):
    calls = echo_server.state.calls
    for _ in range(2):
        proc, results = await burst(echo_server.url)
        try:
            failures = [r for r in results if "error" in r]
            assert not failures, f"{len(failures)} of {BURST} calls missed session.created: {failures[:3]}"
            assert {r["call_id"] for r in results} <= {call.id for call in calls.all()}
        finally:
            proc.stdin.close()  # the callers hang up, then the process exits
            await asyncio.wait_for(proc.wait(), 60)
    assert echo_server.state.mux.stats.udp_dropped_table_full == 0
