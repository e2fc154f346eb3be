"""Headless Debian Chromium driven by Playwright (no browser download), with fake media."""

import shutil
from pathlib import Path

import pytest

from tests.support import spoken_wav

CHROMIUM = "/usr/bin/chromium"
PAGE = Path(__file__).parent / "seed_demo.html"


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    if not shutil.which("espeak-ng") or not shutil.which("sox"):
        pytest.fail("espeak-ng and sox are required (apt-get install espeak-ng sox); .ci/run installs them")
    # the fake mic loops the file: the question, then 30 s of silence
    return spoken_wav(tmp_path_factory.mktemp("audio") / "question.wav", "What is the capital of France?",
                      pad_before_s=0.5, pad_after_s=30.0)


def chromium_args(fake_mic_wav: Path) -> list[str]:
    """Headless Chromium flags that work here: fake devices, loopback ICE, no background traffic."""
    return [
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={fake_mic_wav}",
        "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required",
    ]


@pytest.fixture
async def browser_page(tmp_path, speech_wav):
    from playwright.async_api import async_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install chromium (.ci/run does)")
    args = chromium_args(speech_wav)
    async with async_playwright() as p:
        context = await p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=args)
        page = context.pages[0] if context.pages else await context.new_page()
        page.on("console", lambda msg: print("[browser]", msg.text))
        yield page
        await context.close()


async def open_seed_page(page, base_url: str) -> None:
    """Load the seed demo from the server's origin (same-origin fetch, like a hosted demo)."""
    await page.goto(base_url + "/healthz")
    await page.set_content(PAGE.read_text())
