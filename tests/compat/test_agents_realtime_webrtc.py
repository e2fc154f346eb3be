"""@openai/agents-realtime (the official Agents SDK, stock) over its OpenAIRealtimeWebRTC transport inside
headless Chromium: an ephemeral key from /v1/realtime/client_secrets, `baseUrl` = our /v1/realtime/calls,
the fake microphone asks a question; then an interrupt and a tool defined with the SDK's tool()."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.browser.conftest import CHROMIUM
from tests.compat.conftest import JS_DIR, KEY
from tests.support import piper_wav, wait_for

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream", "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.fixture(scope="session")
def agents_page_bundle(node_js, tmp_path_factory) -> Path:
    """webrtc_page.mjs + the SDK bundled for the browser with esbuild (an IIFE exposing window.startAgent)."""
    out = tmp_path_factory.mktemp("bundle") / "agents_page.js"
    subprocess.run([str(JS_DIR / "node_modules" / ".bin" / "esbuild"), "webrtc_page.mjs", "--bundle", "--format=iife",
                    "--platform=browser", f"--outfile={out}", "--log-level=warning"], cwd=JS_DIR, check=True)
    return out


@pytest.fixture
async def agent_page(tmp_path, model_stack, agents_page_bundle, compat_server):
    """Chromium on a page of the server's origin with the bundled SDK loaded."""
    from playwright.async_api import async_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install chromium (.ci/run does)")
    # the fake mic loops the file: one question, then five minutes of silence
    wav = piper_wav(model_stack, tmp_path / "question.wav", "What is the capital of France?",
                    pad_before_s=2.0, pad_after_s=300.0)
    async with async_playwright() as p:
        context = await p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True,
            args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}"])
        page = context.pages[0] if context.pages else await context.new_page()
        page.on("console", lambda msg: print("[browser]", msg.text))
        await page.goto(compat_server.url + "/healthz")
        await page.set_content("<!doctype html><title>agents-realtime</title>")
        await page.add_script_tag(path=str(agents_page_bundle))
        yield page
        await context.close()


async def wait_event(page, start: int, type_: str, timeout: float = 240.0, where: str = "true") -> dict:
    """The first event of `type_` at index >= start for which the JS expression `where` (on `e`) holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await page.evaluate(
            f"([s, t]) => window.events.slice(s).find((e) => e.type === t && ({where})) ?? null", [start, type_])
        if found is not None:
            return found
        if loop.time() > deadline:
            types = await page.evaluate("""(s) => window.events.slice(s).map((e) => e.type === 'response.done'
                ? `response.done(${e.response.status}:${JSON.stringify(e.response.status_details)})` : e.type)""", start)
            errors = await page.evaluate("window.errors")
            raise AssertionError(f"no {type_} ({where}) within {timeout}s; events: {types}; errors: {errors}")
        await asyncio.sleep(0.1)


async def test_agents_sdk_webrtc_in_chromium(compat_server, agent_page):
    page = agent_page
    async with httpx.AsyncClient() as http:
        secret = (await http.post(compat_server.url + "/v1/realtime/client_secrets",
                                  headers={"Authorization": f"Bearer {KEY}"},
                                  json={"session": {"type": "realtime"}})).json()
    assert secret["value"].startswith("ek_")
    info = await page.evaluate("([u, k]) => startAgent(u, k)", [compat_server.url + "/v1/realtime/calls",
                                                               secret["value"]])
    assert info["status"] == "connected" and info["callId"].startswith("rtc_"), info
    await wait_event(page, 0, "session.updated", 10)

    # 1. the spoken question from the fake microphone, answered in speech
    transcript = await wait_event(page, 0, "conversation.item.input_audio_transcription.completed")
    assert "capital" in transcript["transcript"].lower(), transcript
    done = await wait_event(page, 0, "response.done", 240, "e.response.output.some((o) => o.type === 'message')")
    answer = next(o for o in done["response"]["output"] if o["type"] == "message")["content"][0]["transcript"]
    assert done["response"]["status"] == "completed" and answer, done
    if "france" in transcript["transcript"].lower():  # Whisper sometimes hears "friends" after Chrome's DSP + Opus
        assert "paris" in answer.lower(), (transcript["transcript"], answer)
    await wait_event(page, 0, "output_audio_buffer.started", 30)
    async def heard():
        stats = await page.evaluate("inboundAudio()")
        return stats if stats and stats["totalAudioEnergy"] > 0.001 else None

    await wait_for(heard, 10, what="the answer's audio energy in Chromium")
    await wait_event(page, 0, "output_audio_buffer.stopped", 60)

    # 2. an interrupt while the next answer plays: response.cancel (if generating) + output_audio_buffer.clear
    mark = await page.evaluate("window.events.length")
    await page.evaluate("session.sendMessage('Describe the city of Paris in five long sentences.')")
    started = await wait_event(page, mark, "output_audio_buffer.started")
    await asyncio.sleep(1.0)
    await page.evaluate("session.interrupt()")
    cleared = await wait_event(page, mark, "output_audio_buffer.cleared", 15)
    truncated = await wait_event(page, mark, "conversation.item.truncated", 15)
    assert cleared["response_id"] == started["response_id"]
    assert 300 < truncated["audio_end_ms"] < 10_000, truncated
    interrupted = await wait_event(page, mark, "response.done", 60)
    assert interrupted["response"]["id"] == started["response_id"]

    # 3. a tool call: switch to the agent with the tool (session.update), then ask; the local model needs
    # tool_choice "required" on this turn (the follow-up response the SDK requests uses the session's "auto")
    mark = await page.evaluate("window.events.length")
    await page.evaluate("useWeatherAgent()")
    updated = await wait_event(page, mark, "session.updated", 10, "e.session.tools?.length")
    assert [t["name"] for t in updated["session"]["tools"]] == ["get_weather"]
    mark = await page.evaluate("window.events.length")
    await page.evaluate("""() => {
        transport.sendEvent({type: 'conversation.item.create', item: {type: 'message', role: 'user',
            content: [{type: 'input_text', text: 'What is the weather in Paris right now?'}]}});
        transport.sendEvent({type: 'response.create', response: {tool_choice: 'required'}});
    }""")
    await wait_event(page, mark, "response.done", 240, "e.response.output.some((o) => o.type === 'function_call')")
    final = await wait_event(page, mark, "response.done", 240, "e.response.output.some((o) => o.type === 'message')")
    assert [c.lower() for c in await page.evaluate("window.toolCalls")] == ["paris"]
    text = next(o for o in final["response"]["output"] if o["type"] == "message")["content"][0]["transcript"]
    assert "21" in text or "sunny" in text.lower(), text
    assert await page.evaluate("window.errors") == []
    await page.evaluate("session.close()")
