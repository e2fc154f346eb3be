"""The seed's demo in Chromium speaks to the real offline stack and hears a spoken answer."""

import asyncio

import pytest

from tests.browser.conftest import CHROMIUM, chromium_args, open_seed_page
from tests.support import piper_wav, wait_for


@pytest.fixture
async def question_page(tmp_path, model_stack):
    """A Chromium whose fake microphone asks (Piper voice) "What is the capital of France?" once."""
    from playwright.async_api import async_playwright

    wav = piper_wav(model_stack, tmp_path / "question.wav", "What is the capital of France?",
                    pad_before_s=1.0, pad_after_s=60.0)
    args = chromium_args(wav)
    async with async_playwright() as p:
        context = await p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=args)
        page = context.pages[0] if context.pages else await context.new_page()
        yield page
        await context.close()


async def test_browser_hears_a_spoken_answer(voice_server, question_page):
    page = question_page
    await open_seed_page(page, voice_server.url)
    session = {"type": "realtime", "instructions": "Answer in one short sentence.",
               "audio": {"input": {"transcription": {"model": "whisper-1", "prompt": "Questions about capital cities of countries."},
                                   "turn_detection": {"type": "server_vad", "silence_duration_ms": 400}}}}
    await page.evaluate("([u, s]) => startCall(u, 'test', s, false)", [voice_server.url, session])

    async def event(type_):
        events = await page.evaluate("window.events")
        return next((e for e in events if e["type"] == type_), None)

    transcript = await wait_for(lambda: event("conversation.item.input_audio_transcription.completed"), timeout=90)
    assert "capital" in transcript["transcript"].lower()
    done = await wait_for(lambda: event("response.done"), timeout=90)
    answer = done["response"]["output"][0]["content"][0]["transcript"]
    assert "paris" in answer.lower(), answer
    await wait_for(lambda: event("output_audio_buffer.started"), timeout=30)

    async def heard():
        stats = await page.evaluate("inboundAudio()")
        return stats and stats["totalAudioEnergy"] > 0.01 and stats

    await wait_for(heard, timeout=30)
    await wait_for(lambda: event("output_audio_buffer.stopped"), timeout=60)
    await page.evaluate("window.pc.close()")
    await asyncio.sleep(0.2)
