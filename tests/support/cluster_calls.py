"""Calls and probes for cluster tests against real node processes: a talking aiortc call (the echo
engine sends it back), its RTP loss, the call list and the cluster gauges as any node reports them."""

from __future__ import annotations

import re

import httpx

from openrealtime.client.rtc import RealtimeRtcClient
from tests.support.audio import speechlike

KEY = "sk-test"  # ServeProcess's API key
AUTH = {"Authorization": f"Bearer {KEY}"}


async def talking_call(base_url: str, clients: list, seconds: float = 60.0,
                       path: str = "/v1/realtime/calls") -> RealtimeRtcClient:
    """A connected call through `base_url` that talks for `seconds` (added to `clients` for closing)."""
    client = RealtimeRtcClient(base_url, api_key=KEY)
    clients.append(client)
    resp = await client.connect(path=path)
    assert resp.status_code == 201, resp.text
    await client.next_event("session.created", timeout=20)
    client.mic.play(speechlike(seconds, steady=True).tobytes())
    return client


async def packets_lost(client: RealtimeRtcClient) -> int:
    """RTP packets the call's inbound audio lost so far (sequence gaps)."""
    report = await client.pc.getStats()
    return sum(s.packetsLost for s in report.values() if getattr(s, "type", "") == "inbound-rtp")


async def calls_listed(base_url: str) -> dict[str, str]:
    """Call id → node, from GET /v1/realtime/calls on whichever node `base_url` reaches."""
    async with httpx.AsyncClient(timeout=10) as http:
        resp = await http.get(base_url + "/v1/realtime/calls", headers=AUTH)
    assert resp.status_code == 200, resp.text
    return {c["id"]: c["node"] for c in resp.json()["data"]}


async def serving_nodes(base_url: str) -> int:
    """`openrealtime_cluster_nodes{state="serving"}` as the node `base_url` reaches sees it."""
    return int(await _metric(base_url, 'openrealtime_cluster_nodes{state="serving"}'))


async def routed(base_url: str, route: str) -> int:
    """`openrealtime_cluster_routed_total{route=…}` of the node `base_url` reaches."""
    return int(await _metric(base_url, f'openrealtime_cluster_routed_total{{route="{route}"}}'))


async def _metric(base_url: str, sample: str) -> float:
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(base_url + "/metrics", headers=AUTH)).text
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0
