"""The demo page offers the turn-detection mode, semantic_vad's eagerness and input noise reduction, and
the call's session gets exactly what was chosen (headless Chromium against the echo server)."""

from tests.browser.test_demo_page import connect, hang_up, open_demo
from tests.support import wait_for


async def fieldset_disabled(page, element_id: str) -> bool:
    return await page.evaluate(f"document.getElementById({element_id!r}).disabled")


async def test_turn_detection_and_noise_reduction_settings_reach_the_session(echo_server, browser_page):
    page = browser_page
    await open_demo(page, echo_server.url, turnMode="semantic_vad", eagerness="high", noiseReduction="far_field",
                    noiseStrength=0.5)
    options = await page.eval_on_selector_all("#s-turnMode option", "els => els.map(e => e.value)")
    assert options == ["server_vad", "semantic_vad", "ptt"]
    assert await page.eval_on_selector_all("#s-eagerness option", "els => els.map(e => e.value)") == \
        ["auto", "low", "medium", "high"]
    assert await page.eval_on_selector_all("#s-noiseReduction option", "els => els.map(e => e.value)") == \
        ["off", "near_field", "far_field"]
    assert await page.input_value("#s-eagerness") == "high"
    assert await fieldset_disabled(page, "vad-fields") and not await fieldset_disabled(page, "semantic-fields")
    await connect(page)
    await wait_for(lambda: len(echo_server.state.calls) == 1, 15, what="the call")
    audio_in = next(iter(echo_server.state.calls.all())).engine.config.audio.input
    assert audio_in.turn_detection.type == "semantic_vad" and audio_in.turn_detection.eagerness == "high"
    assert audio_in.noise_reduction.type == "far_field" and audio_in.noise_reduction.strength == 0.5

    # switched in the form and applied to the live call (session.update)
    await page.evaluate("document.getElementById('settings-toggle').click()")
    await page.select_option("#s-noiseReduction", "off")
    await page.select_option("#s-turnMode", "server_vad")
    assert await page.is_disabled("#s-noiseStrength") and await fieldset_disabled(page, "semantic-fields")
    await page.click("#apply-session")
    call = next(iter(echo_server.state.calls.all()))
    await wait_for(lambda: call.engine.config.audio.input.turn_detection.type == "server_vad", 15,
                   what="the session update")
    assert call.engine.config.audio.input.noise_reduction is None
    await hang_up(page, echo_server)
