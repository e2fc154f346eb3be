"""`openrealtime serve` frees a finished call soon: its startup heap is frozen out of the cyclic collector
(full collections stay cheap) and a full collection runs shortly after calls end, finding the call's
objects (aiortc's peer connection and our call live in reference cycles, so reference counting alone never
frees them). Read from the server's own /metrics (python_gc_*), on a real server process."""

import asyncio
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from openrealtime.api.embedded import free_port
from openrealtime.client.rtc import RealtimeRtcClient
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]


def gc_counters(text: str) -> tuple[float, float]:
    """(full collections, objects they found) from python_gc_* on /metrics."""
    runs = re.search(r'^python_gc_collections_total\{generation="2"\} (\S+)', text, re.M)
    found = re.search(r'^python_gc_objects_collected_total\{generation="2"\} (\S+)', text, re.M)
    return float(runs.group(1)), float(found.group(1))


async def test_a_finished_call_is_collected_soon():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "openrealtime", "serve", "--engine", "echo", "--port", str(port),
                             "--udp-port", str(free_port(kind=socket.SOCK_DGRAM)), "--tcp-port", str(free_port()),
                             "--log-level", "warning"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:
            async def ready():
                try:
                    return (await http.get(url + "/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False
            await wait_for(ready, 60, what="server ready")
            runs, found = gc_counters((await http.get(url + "/metrics")).text)
            for _ in range(3):
                client = RealtimeRtcClient(url, session={"type": "realtime"})
                assert (await client.connect(http)).status_code == 201
                await client.next_event("session.created")
                await asyncio.sleep(0.5)
                await client.close()
            await wait_for(lambda: _no_calls(http, url), 20, what="the calls ended on the server")

            async def collected():
                now_runs, now_found = gc_counters((await http.get(url + "/metrics")).text)
                # a full collection after the calls ended, finding their objects (a call is thousands)
                return now_runs > runs and now_found - found > 1000
            await wait_for(collected, 30, what="a full collection found the finished calls")
    finally:
        proc.terminate()
        proc.wait(10)


async def _no_calls(http: httpx.AsyncClient, url: str) -> bool:
    return not (await http.get(url + "/v1/realtime/calls", headers={"Authorization": "Bearer x"})).json()["data"]
