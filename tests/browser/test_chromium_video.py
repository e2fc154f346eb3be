"""Chromium's fake camera (a moving test pattern, H.264 from OpenH264) → the server's video sampler."""

import asyncio

import av
import pytest

from openrealtime.media.image_tokens import fit_size, image_tokens
from tests.browser.conftest import open_seed_page
from tests.support import wait_for


async def outbound_video(page):
    return await page.evaluate("""async () => {
      const stats = await window.pc.getStats(); let out = null; const codecs = {};
      stats.forEach((s) => { if (s.type === 'codec') codecs[s.id] = s; });
      stats.forEach((s) => { if (s.type === 'outbound-rtp' && s.kind === 'video') out = {
        framesEncoded: s.framesEncoded, keyFramesEncoded: s.keyFramesEncoded, pliCount: s.pliCount,
        frameWidth: s.frameWidth, frameHeight: s.frameHeight, encoderImplementation: s.encoderImplementation,
        codec: codecs[s.codecId] && codecs[s.codecId].mimeType,
        fmtp: codecs[s.codecId] && codecs[s.codecId].sdpFmtpLine}; });
      return out; }""")


CONTENT_HINT = """(hint) => {
  const orig = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (c) => {
    const s = await orig(c); s.getVideoTracks().forEach((t) => { t.contentHint = hint; }); return s; };
}"""


@pytest.mark.parametrize("hint", ["", "detail"])
async def test_fake_camera_to_jpeg(echo_server, browser_page, hint):
    """The seed's constraints (1080p, 1 fps). Without a hint Chrome starts at 640x360 (no BWE
    feedback from us, 300 kbps start) and climbs slowly; `contentHint = "detail"` (maintain
    resolution) gets 1080p from the first frame, which the sampler turns into a 1365x768 JPEG."""
    page = browser_page
    await open_seed_page(page, echo_server.url)
    if hint:
        await page.evaluate(CONTENT_HINT, hint)
    call_id = await page.evaluate("([u, s]) => startCall(u, 'test', s, true)", [echo_server.url, {"type": "realtime"}])
    call = echo_server.state.calls.get(call_id)
    assert call is not None

    async def frames():
        return call.video is not None and call.video.stats.frames_decoded > 0

    await wait_for(frames, timeout=30)
    video = call.video
    assert video.receiver is not None, "PLI needs the receiver"
    assert video.stats.plis_sent >= 1, "a keyframe is requested at start"

    snap = await video.latest_jpeg_async("auto")
    assert snap is not None and snap.jpeg[:2] == b"\xff\xd8"
    decoded = av.CodecContext.create("mjpeg", "r").decode(av.Packet(snap.jpeg))[0]
    assert (decoded.width, decoded.height) == (snap.width, snap.height)
    assert (snap.source_width, snap.source_height) == video.frame_size
    assert (snap.width, snap.height) == fit_size(*video.frame_size, "auto")
    assert snap.bytes <= 256 * 1024
    assert snap.image_tokens == image_tokens(*video.frame_size, "auto")
    assert video.is_live
    if hint == "detail":
        assert video.frame_size == (1920, 1080), video.counters()
        assert (snap.width, snap.height) == (1365, 768) and snap.image_tokens == 1105

    low = await video.latest_jpeg_async("low")
    assert max(low.width, low.height) <= 512 and low.image_tokens == 85

    sent = await outbound_video(page)
    print("browser outbound video:", sent, "server:", video.counters(), "jpeg:", snap.width, snap.height,
          snap.bytes, f"{snap.encode_ms:.1f} ms")
    assert sent["codec"] == "video/H264"
    assert sent["pliCount"] >= 1, "the browser saw our PLI"

    await page.evaluate("window.pc.close()")
    await asyncio.wait_for(call.closed.wait(), 40)
