"""A real browser's call at the end of a graceful drain: it is told why (an `error` event on its data
channel) and its DTLS transport is closed by the server (close_notify), not left to time out."""

from openrealtime.api.embedded import embedded_server
from tests.browser.conftest import open_seed_page
from tests.support import server_settings, wait_for

DTLS_STATE = """async () => {
  const stats = await window.pc.getStats();
  for (const s of stats.values()) if (s.type === "transport") return s.dtlsState;
  return null;
}"""


async def test_drain_timeout_closes_a_chromium_call_cleanly(browser_page):
    async with embedded_server(server_settings(engine="echo", drain_timeout_s=1.0)) as server:
        page = browser_page
        await open_seed_page(page, server.url)
        call_id = await page.evaluate("([u, s]) => startCall(u, 'test', s, false)", [server.url, {"type": "realtime"}])

        async def event(kind):
            events = await page.evaluate("window.events")
            return next((e for e in events if e["type"] == kind), None)

        await wait_for(lambda: event("session.created"), what="session.created")
        assert await page.evaluate(DTLS_STATE) == "connected"
        drain = server.state.lifecycle.start_drain()
        error = await wait_for(lambda: event("error"), what="the shutdown error event")
        assert error["error"]["code"] == "server_shutting_down"

        async def dtls_closed():
            return await page.evaluate(DTLS_STATE) == "closed"
        await wait_for(dtls_closed, timeout=20, what="DTLS closed by the server")
        await drain
        assert server.state.calls.get(call_id) is None
