"""The event-loop lag histogram on /metrics (observability/loop_lag.py): it runs from the app's startup and
records a loop that was held up."""

import asyncio
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from openrealtime.observability.loop_lag import LoopLagProbe

NAME = "openrealtime_event_loop_lag_seconds"


def lag_samples(text: str) -> dict[str, float]:
    for family in text_string_to_metric_families(text):
        if family.name == NAME:
            return {s.name[len(NAME):] + s.labels.get("le", ""): s.value for s in family.samples}
    raise AssertionError(f"{NAME} is not on /metrics")


async def test_metrics_show_the_loop_held_up(echo_server):
    await asyncio.sleep(0.2)  # a few ticks of the probe
    async with httpx.AsyncClient() as http:
        before = lag_samples((await http.get(echo_server.url + "/metrics")).text)
        assert before["_count"] > 0, "the probe samples from startup on, with no call up"
        time.sleep(0.4)  # hold the server's loop (the test runs on it): the probe's next tick is 0.35+ s late
        await asyncio.sleep(0.2)
        after = lag_samples((await http.get(echo_server.url + "/metrics")).text)
    assert after["_count"] > before["_count"]
    held = (after["_count"] - after["_bucket0.25"]) - (before["_count"] - before["_bucket0.25"])
    assert held >= 1, "a tick more than 0.25 s late was recorded"


async def test_probe_stops_and_restarts():
    probe = LoopLagProbe(interval_s=0.01)
    probe.start()
    probe.start()  # a no-op: one timer
    await asyncio.sleep(0.1)
    assert probe.running and probe.samples >= 3
    probe.stop()
    seen = probe.samples
    await asyncio.sleep(0.05)
    assert not probe.running and probe.samples == seen
