"""A real browser runs the seed's demo code against our server."""

import asyncio

from tests.browser.conftest import open_seed_page
from tests.support import wait_for


async def test_seed_demo_connects_and_echoes(echo_server, browser_page):
    page = browser_page
    await open_seed_page(page, echo_server.url)
    call_id = await page.evaluate("([u, s]) => startCall(u, 'test', s, false)",
                                  [echo_server.url, {"type": "realtime", "instructions": "From the browser."}])
    assert call_id.startswith("rtc_")

    async def session_created():
        events = await page.evaluate("window.events")
        return next((e for e in events if e["type"] == "session.created"), None)

    created = await wait_for(session_created)
    assert created["session"]["instructions"] == "From the browser."

    call = echo_server.state.calls.get(call_id)
    assert call is not None

    async def server_hears_voice():
        return call.inbound is not None and call.inbound.voiced_frames > 10

    await wait_for(server_hears_voice)

    async def browser_hears_echo():
        stats = await page.evaluate("inboundAudio()")
        return stats and stats["totalAudioEnergy"] > 0.001 and stats

    stats = await wait_for(browser_hears_echo)
    assert stats["packetsReceived"] > 10

    pair = await page.evaluate("selectedPair()")
    assert pair["remoteAddress"] == "127.0.0.1"

    await page.evaluate("window.pc.close()")
    await asyncio.wait_for(call.closed.wait(), 40)
    assert echo_server.state.calls.get(call_id) is None
