"""The demo page's live-call list (GET /v1/realtime/calls) shows a SIP phone call beside the page's own WebRTC
call, each with its transport. Headless Debian Chromium (Playwright) and SIPp."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.browser.conftest import CHROMIUM, chromium_args
from tests.support import spoken_wav, wait_for
from tests.support.sip import API_KEY, SIPP, Sipp, phone_server, speech_pcap

pytestmark = pytest.mark.skipif(SIPP is None or not Path(CHROMIUM).exists(), reason="needs SIPp and chromium")


async def test_the_demo_page_lists_sip_and_webrtc_calls(tmp_path):
    from playwright.async_api import async_playwright

    mic = spoken_wav(tmp_path / "mic.wav", "Hello there.", pad_after_s=20.0)
    async with phone_server() as phone, async_playwright() as p:
        sipp = await Sipp("answered_until_bye.xml", phone.sip_port, tmp_path, pcap=speech_pcap(tmp_path)).start()
        context = await p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                             headless=True, args=chromium_args(mic))
        try:
            call_id = (await phone.app.next_call()).data.call_id
            await phone.client.realtime.calls.accept(call_id, type="realtime")
            page = context.pages[0] if context.pages else await context.new_page()
            settings = json.dumps({"apiKey": API_KEY, "micProcessing": False})
            await page.add_init_script(f"localStorage.setItem('openrealtime.demo.v1', {json.dumps(settings)});")
            await page.goto(phone.server.url + "/")
            await page.click("#connect:not([disabled])")
            await page.wait_for_selector("#text-input:not([disabled])", timeout=20_000)

            async def transports():
                rows = await page.eval_on_selector_all("#live-calls tbody tr", "rs => rs.map(r => r.dataset.transport)")
                return sorted(t for t in rows if t) == ["sip", "webrtc"] and rows

            await wait_for(transports, timeout=20, what="both calls listed")
            text = await page.text_content("#live-calls")
            assert "PCMU" in text and call_id[:14] in text
            await phone.client.realtime.calls.hangup(call_id)
            await sipp.succeeds()
        finally:
            sipp.kill()
            await context.close()
