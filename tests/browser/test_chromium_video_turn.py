"""Chromium's camera → decoded frame → JPEG `input_image` on the user's turn → the language model."""

import asyncio
import base64

import av

from openrealtime.api.embedded import embedded_server
from tests.browser.conftest import open_seed_page
from tests.support import ScriptedLlm, fake_stack, server_settings, wait_for


class SeeingLlm(ScriptedLlm):
    """Captures requests like a vision model backend would receive them."""

    supports_images = True


async def test_video_frame_reaches_the_language_model(browser_page, tmp_path):
    llm = SeeingLlm("I see a test pattern.")
    async with embedded_server(server_settings(engine="local"), models=fake_stack(llm=llm)) as server:
        page = browser_page
        await open_seed_page(page, server.url)
        session = {"type": "realtime", "output_modalities": ["text"], "audio": {"input": {"turn_detection": None}}}
        call_id = await page.evaluate("([u, s]) => startCall(u, 'test', s, true)", [server.url, session])
        call = server.state.calls.get(call_id)

        async def snapshot_ready():
            return call._fresh_image() is not None

        await wait_for(snapshot_ready, timeout=30)
        await page.evaluate("""() => { send({type: 'conversation.item.create', item: {type: 'message', role: 'user',
            content: [{type: 'input_text', text: 'What do you see?'}]}}); send({type: 'response.create'}); }""")

        async def answered():
            events = await page.evaluate("window.events")
            return next((e for e in events if e["type"] == "response.done"), None)

        done = await wait_for(answered, timeout=30)
        assert done["response"]["status"] == "completed"
        usage = done["response"]["usage"]["input_token_details"]
        assert usage["image_tokens"] >= 85, usage

        user = llm.requests[0].messages[-1]
        image = next(p for p in user["content"] if p["type"] == "image_url")
        url = image["image_url"]["url"]
        assert url.startswith("data:image/jpeg;base64,")
        jpeg = base64.b64decode(url.split(",", 1)[1])
        assert jpeg[:2] == b"\xff\xd8"
        path = tmp_path / "seen.jpg"
        path.write_bytes(jpeg)
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
        assert frame.width > 0 and frame.height > 0
        events = await page.evaluate("window.events")
        added = [e for e in events if e["type"] == "conversation.item.done" and e["item"].get("role") == "user"]
        assert added[-1]["item"]["content"][0]["type"] == "input_image", "the frame the model saw is in the conversation"
        assert added[-1]["item"]["content"][0]["image_url"] == url
        await page.evaluate("window.pc.close()")
        await asyncio.wait_for(call.closed.wait(), 40)
