"""The demo page switched to Live: the call is `POST /v1/live/sessions` (JSON offer and answer), its data channel
carries Live events (session.started, the transcripts of the turn the fake microphone speaks), and hanging up
is `POST /v1/live/sessions/{id}/hangup` (headless Chromium against a server on scripted models)."""

from tests.browser.test_demo_page import hang_up, open_demo, text
from tests.live.conftest import KEY, live_server
from tests.support import wait_for


async def test_demo_page_talks_over_the_live_api(browser_page):
    page = browser_page
    async with live_server() as server:
        await open_demo(page, server.url, api="live", apiKey=KEY)
        assert await page.eval_on_selector_all("#s-api option", "els => els.map(e => e.value)") == ["realtime", "live"]
        await page.click("#connect")
        await page.wait_for_selector("#mute:not([disabled])", timeout=20_000)  # the data channel is open
        assert await page.is_disabled("#text-input")  # Live has no text turns
        await wait_for(lambda: len(server.state.calls) == 1, 15, what="the Live call")
        call = next(iter(server.state.calls.all()))
        assert call.id.startswith("live_") and call.engine.config.model == "gpt-live-1"
        await page.wait_for_function("document.getElementById('m-session').textContent.startsWith('live_')",
                                     timeout=20_000)
        # the fake microphone asks its question; the scripted models hear it and answer
        await page.wait_for_selector(".bubble.user .text:not(:empty)", timeout=30_000)
        await page.wait_for_function("[...document.querySelectorAll('.bubble.assistant .text')]"
                                     ".some(e => e.textContent.includes('Paris'))", timeout=30_000)
        assert "capital of France" in await text(page, ".bubble.user .text")
        logged = await page.evaluate("window.demo.S.events.map(e => e.type)")
        assert "session.started" in logged
        await hang_up(page, server)
