"""Several Chromium calls at once, all on the server's one shared ICE UDP port."""

import asyncio

from tests.browser.conftest import open_seed_page
from tests.support import wait_for

N_CALLS = 3


async def test_three_chromium_calls_share_one_udp_port(echo_server, browser_page):
    context = browser_page.context
    pages = [browser_page] + [await context.new_page() for _ in range(N_CALLS - 1)]
    for page in pages:
        await open_seed_page(page, echo_server.url)
    mux = echo_server.state.mux
    udp_port = mux.udp_port
    assert udp_port and udp_port > 0

    # all three offers are POSTed at once
    call_ids = await asyncio.gather(*(
        page.evaluate("([u, s]) => startCall(u, 'test', s, false)",
                      [echo_server.url, {"type": "realtime", "instructions": f"page {i}"}])
        for i, page in enumerate(pages)))
    assert len(set(call_ids)) == N_CALLS and all(c.startswith("rtc_") for c in call_ids)
    assert mux.calls == N_CALLS  # one mux entry (ufrag) per call, one socket for all

    async def created(page):
        events = await page.evaluate("window.events")
        return next((e for e in events if e["type"] == "session.created"), None)

    sessions = await asyncio.gather(*(wait_for(lambda p=p: created(p), what="session.created") for p in pages))
    assert [s["session"]["instructions"] for s in sessions] == [f"page {i}" for i in range(N_CALLS)]

    async def echo_heard(page):
        stats = await page.evaluate("inboundAudio()")
        return stats and stats["totalAudioEnergy"] > 0.001 and stats["packetsReceived"] > 10 and stats

    for page in pages:
        await wait_for(lambda p=page: echo_heard(p), what="echoed audio energy")

    pairs = [await page.evaluate("selectedPair()") for page in pages]
    for pair in pairs:
        assert pair is not None, "no selected candidate pair"
        assert pair["remoteAddress"] == "127.0.0.1", pair
        assert pair["protocol"] == "udp", pair
        assert pair["remotePort"] == udp_port, (pair, udp_port)
    # every call really went through the shared socket: it learned each browser's address
    assert len(mux.udp) == 1
    assert len(mux.udp[0].by_addr) >= N_CALLS
    assert mux.stats.udp_dropped_bad_integrity == 0

    calls = [echo_server.state.calls.get(c) for c in call_ids]
    assert all(c is not None for c in calls)
    for page in pages:
        await page.evaluate("window.pc.close()")
    await asyncio.wait_for(asyncio.gather(*(c.closed.wait() for c in calls)), 40)
    assert mux.calls == 0
