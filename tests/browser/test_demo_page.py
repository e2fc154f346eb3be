"""The demo page (`GET /`) in headless Chromium with fake media: against the echo server (fast) and
the real local stack (transcripts, per-turn latency, usage). Screenshots go to test-artifacts/."""

import asyncio
import json
import re
from pathlib import Path

import pytest

from tests.browser.pngcheck import drawn_stats
from tests.support import spoken_wav, wait_for

ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "test-artifacts"
SETTINGS_KEY = "openrealtime.demo.v1"


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory) -> Path:
    """The fake microphone's question, then 2 minutes of silence: on a loaded machine the real stack can take
    longer than the conftest's 30 s pad, and the looped question would start a second turn."""
    return spoken_wav(tmp_path_factory.mktemp("demo-audio") / "question.wav",
                      "What is the largest planet in the solar system?", pad_before_s=0.5, pad_after_s=120.0)


async def open_demo(page, base_url: str, **settings) -> None:
    stored = {"apiKey": "test", "micProcessing": False, **settings}  # the fake mic's own samples
    await page.add_init_script(
        f"if (!localStorage.getItem({SETTINGS_KEY!r})) localStorage.setItem({SETTINGS_KEY!r}, "
        f"{json.dumps(json.dumps(stored))});")
    await page.goto(base_url + "/")
    await page.wait_for_selector("#connect:not([disabled])")


async def text(page, selector: str) -> str:
    return (await page.text_content(selector)) or ""


async def filled(page, selector: str) -> str | None:
    value = (await text(page, selector)).strip()
    return value if value and value != "—" else None


async def screenshot(page, name: str, *, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    await page.evaluate("window.scrollTo(0, 0)")  # the sticky header belongs at the top
    data = await page.screenshot(path=str(path), full_page=full_page)
    stats = drawn_stats(data)
    assert stats["drawn_fraction"] > 0.03 and stats["distinct_colours"] > 40, (name, stats)
    return path


async def connect(page) -> None:
    await page.click("#connect")
    await page.wait_for_selector("#text-input:not([disabled])", timeout=20_000)  # data channel open
    assert await page.get_attribute("#conn-pill", "data-state") in ("connecting", "connected")


async def hang_up(page, server) -> None:
    await page.click("#hangup")
    await wait_for(lambda: _no_calls(server), 15, what="the server to end the call")
    assert await page.get_attribute("#conn-pill", "data-state") == "closed"
    assert await page.is_enabled("#connect")


async def _no_calls(server) -> bool:
    return len(server.state.calls) == 0


async def test_demo_page_echo_server(echo_server, browser_page):
    page = browser_page
    await page.set_viewport_size({"width": 1280, "height": 900})
    await open_demo(page, echo_server.url)
    assert await page.title() == "openrealtime — WebRTC demo"
    await connect(page)
    await wait_for(lambda: page.evaluate("document.getElementById('conn-pill').dataset.state === 'connected'"),
                   what="connected")

    # live meters: the selected candidate pair, RTT, packets and the fake microphone's level
    pair = await wait_for(lambda: filled(page, "#m-pair"), what="candidate pair")
    assert re.search(r"UDP 127\.0\.0\.1:%d" % echo_server.state.mux.udp_port, pair), pair
    assert re.search(r"\d+(\.\d+)? ms", await wait_for(lambda: _has_ms(page, "#m-rtt"), what="rtt"))
    await wait_for(lambda: page.evaluate("+document.getElementById('mic-meter').getAttribute('aria-valuenow') > 0"),
                   what="mic level")
    await wait_for(lambda: page.evaluate(
        "+document.getElementById('remote-meter').getAttribute('aria-valuenow') > 0"), what="echoed audio level")
    assert (await text(page, "#m-call")).startswith("rtc_")
    assert "sess_" in await text(page, "#m-session")

    # a text turn: the user bubble renders; the echo engine answers response.create with an error
    await page.fill("#text-input", "Hello from the demo page")
    await page.click("#send-text")
    await page.wait_for_selector(".bubble.user >> text=Hello from the demo page")
    await page.wait_for_selector(".bubble.error >> text=model_not_available")

    # connection details drawer: the seed's tables for the offer and the answer
    await page.click("#details-drawer > summary")
    await page.wait_for_selector("#sdp-tables h3 >> text=Answer (server)")
    tables = await text(page, "#sdp-tables")
    assert tables.count("Single PeerConnection using BUNDLE") == 2, tables[:500]
    assert "Host-candidates only" in tables

    # event log: filter + copy as JSON lines (clipboard, or the fallback box)
    await page.fill("#log-filter", "session.created")
    rows = await page.eval_on_selector_all("#log summary code", "els => els.map(e => e.textContent)")
    assert rows == ["session.created"]
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=echo_server.url)
    await page.click("#copy-log")
    copied = await page.evaluate("navigator.clipboard.readText().catch(() => '')") or \
        await page.input_value("#copy-fallback")
    lines = [json.loads(line) for line in copied.strip().splitlines()]
    assert [entry["event"]["type"] for entry in lines] == ["session.created"]
    assert lines[0]["direction"] == "server"
    await page.fill("#log-filter", "")

    await page.evaluate("document.getElementById('settings-toggle').click()")
    shot = await screenshot(page, "demo-echo.png")
    await page.evaluate("document.getElementById('settings-toggle').click()")

    # phone width: one column, nothing wider than the screen
    await page.set_viewport_size({"width": 390, "height": 844})
    await asyncio.sleep(0.2)
    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"page is {overflow}px wider than a phone screen"
    await screenshot(page, "demo-phone.png", full_page=False)
    await page.set_viewport_size({"width": 1280, "height": 900})

    await hang_up(page, echo_server)
    assert shot.exists()


async def _has_ms(page, selector):
    value = await text(page, selector)
    return value if value.endswith("ms") else None


async def test_demo_page_ephemeral_key_and_push_to_talk(echo_server, browser_page):
    page = browser_page
    await open_demo(page, echo_server.url, authMode="ephemeral", turnMode="ptt", transcription=False)
    await connect(page)
    await page.wait_for_selector(".bubble >> text=Minted ephemeral key ek_")
    assert await page.is_visible("#ptt")
    created = await page.evaluate("window.demo.S.events.find(e => e.type === 'session.created').event.session")
    assert created["audio"]["input"]["turn_detection"] is None
    assert created["audio"]["input"]["transcription"] is None
    # hold to talk → commit + response.create when released
    await page.hover("#ptt")
    await page.mouse.down()
    await asyncio.sleep(0.3)
    await page.mouse.up()
    await wait_for(lambda: page.evaluate(
        "window.demo.S.events.some(e => e.type === 'response.create')"), what="commit + response.create sent")
    sent = await page.evaluate("window.demo.S.events.filter(e => e.dir === 'out').map(e => e.type)")
    assert sent[-3:] == ["input_audio_buffer.clear", "input_audio_buffer.commit", "response.create"], sent
    # stop talking: output_audio_buffer.clear (no response.cancel without an active response)
    await page.click("#stop")
    sent = await page.evaluate("window.demo.S.events.filter(e => e.dir === 'out').map(e => e.type)")
    assert sent[-1] == "output_audio_buffer.clear"
    await hang_up(page, echo_server)


@pytest.mark.models
async def test_demo_page_real_stack_voice_turn(voice_server, browser_page):  # voice_server: tests/conftest.py
    page = browser_page
    await page.set_viewport_size({"width": 1280, "height": 900})
    await open_demo(page, voice_server.url,
                    instructions="You are a helpful assistant. Answer in one short sentence.",
                    silenceDurationMs=400)
    await connect(page)

    # the fake microphone asks "What is the largest planet in the solar system?"
    async def user_transcript():
        return await page.evaluate("""() => {
            const b = [...document.querySelectorAll('.bubble.user .text')].find(t => !t.classList.contains('partial')
                && t.textContent.trim());
            return b ? b.textContent : null; }""")

    heard = await wait_for(user_transcript, 60, what="the user's transcript")
    assert re.search(r"planet|solar|largest", heard.lower()), heard

    async def assistant_answer():
        return await page.evaluate("""() => {
            const done = window.demo.S.events.some(e => e.type === 'response.done');
            const t = [...document.querySelectorAll('.bubble.assistant .text')].map(e => e.textContent).join(' ');
            return done && t.trim() ? t : null; }""")

    answer = await wait_for(assistant_answer, 90, what="the assistant's answer")
    assert answer.strip()
    try:
        latency = await wait_for(lambda: _latency(page), 15, what="a latency readout")
    except AssertionError:
        state = await page.evaluate("""() => ({awaiting: window.demo.S.awaiting, quiet: window.demo.S.remoteQuiet,
            source: window.demo.S.turnSource, ctx: window.demo.S.audioCtx && window.demo.S.audioCtx.state,
            remote: document.getElementById('remote-meter').getAttribute('aria-valuenow'),
            types: window.demo.S.events.map(e => e.type)})""")
        raise AssertionError(f"no latency readout: {state}") from None
    timeline = await page.evaluate("""() => window.demo.S.events.filter(e => !e.type.endsWith('.delta'))
        .map(e => `${(e.t / 1000).toFixed(2)} ${e.type}`).join('\\n')""")
    # measured from speech_stopped, the readout spans at least the answer's creation (its audio comes later)
    created = await page.evaluate("""() => { const t = (type) => window.demo.S.events.find(e => e.type === type).t;
        return t('response.created') - t('input_audio_buffer.speech_stopped'); }""")
    assert 0 < created <= latency, (latency, created, timeline)
    print(f"demo page: speech_stopped → first audio heard {latency} ms; answer {answer!r}\n{timeline}")
    assert "speech_stopped" in await text(page, "#latency-source")
    assert (await text(page, "#cost-total")).startswith("$")
    assert await page.locator("#usage-table tbody tr").count() >= 1
    await page.click("#details-drawer > summary")
    await page.wait_for_selector("#sdp-tables h3 >> text=Answer (server)")
    await screenshot(page, "demo-voice.png")
    await hang_up(page, voice_server)


async def _latency(page):
    value = await text(page, "#latency")
    m = re.fullmatch(r"(\d+) ms", value.strip())
    return int(m.group(1)) if m else None
