"""A caller that vanishes without a goodbye (its process SIGKILLed: no DTLS close, no hangup) is let go when
its ICE consent expires (RFC 7675: no answer to our consent checks for consent_timeout_s, 30 s by default):
the call ends with reason `consent_expired` and leaves the call list. A live caller keeps answering the
checks and stays. The consent clock is shortened here (IceSettings) so the test takes seconds."""

import asyncio
import dataclasses
import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from openrealtime.client.rtc import RealtimeRtcClient
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]


def short_consent(server, timeout_s: float = 2.0) -> None:
    server.state.ice = dataclasses.replace(server.state.ice, consent_interval_s=0.4, consent_timeout_s=timeout_s)


async def listed(http: httpx.AsyncClient, url: str) -> set[str]:
    return {c["id"] for c in (await http.get(url + "/v1/realtime/calls", headers={"Authorization": "Bearer test"})).json()["data"]}


async def test_killed_caller_is_reaped_when_consent_expires(echo_server):
    short_consent(echo_server)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.support.caller_process",
                                                echo_server.url, "2", cwd=ROOT, stdin=subprocess.PIPE,
                                                stdout=subprocess.PIPE)
    try:
        ids = [json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))["call_id"] for _ in range(2)]
        async with httpx.AsyncClient() as http:
            assert set(ids) <= await listed(http, echo_server.url)
            proc.send_signal(signal.SIGKILL)
            await proc.wait()

            async def gone():
                return not set(ids) & await listed(http, echo_server.url)
            await wait_for(gone, timeout=30, what="the vanished calls reaped")
            metrics = (await http.get(echo_server.url + "/metrics")).text
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert echo_server.state.calls.ended_by_reason == {"consent_expired": 2}
    assert 'openrealtime_calls_ended_total{reason="consent_expired"} 2.0' in metrics


async def test_live_caller_keeps_consent(echo_server):
    short_consent(echo_server, timeout_s=1.5)
    client = RealtimeRtcClient(echo_server.url, session={"type": "realtime"})
    assert (await client.connect()).status_code == 201
    await client.next_event("session.created")
    call = echo_server.state.calls.get(client.call_id)
    await asyncio.sleep(5)  # more than three consent timeouts: every check was answered
    assert call.state == "connected" and echo_server.state.calls.get(client.call_id) is call
    await client.close()
    await asyncio.wait_for(call.closed.wait(), 10)
    assert call.stats.end_reason == "peer_closed"
