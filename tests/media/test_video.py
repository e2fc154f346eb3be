"""Video → still images: JPEG encoding, detail scaling, size caps, image tokens, the sampler."""

import asyncio
import base64
import fractions
import time

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from openrealtime.media.image_tokens import fit_size, image_tiles, image_tokens
from openrealtime.media.video import (
    DEFAULT_MAX_BYTES,
    QUALITY_STEPS,
    ImageSnapshot,
    VideoSampler,
    encode_jpeg,
)
from tests.support import wait_for


def synthetic_frame(width: int, height: int, noise: int = 0, seed: int = 0, fmt: str = "yuv420p") -> av.VideoFrame:
    """A gradient test pattern (optionally noisy, which makes JPEGs big), like a decoded H.264 frame."""
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack([xx * 255 // max(1, width - 1), yy * 255 // max(1, height - 1), (xx + yy) % 256], axis=-1)
    if noise:
        rgb = rgb + np.random.default_rng(seed).integers(-noise, noise, rgb.shape)
    frame = av.VideoFrame.from_ndarray(rgb.clip(0, 255).astype(np.uint8), format="rgb24")
    return frame.reformat(format=fmt)


def decode_jpeg(data: bytes) -> av.VideoFrame:
    frames = av.CodecContext.create("mjpeg", "r").decode(av.Packet(data))
    assert len(frames) == 1
    return frames[0]


# ---- image tokens ---------------------------------------------------------------------------
@pytest.mark.parametrize("size, high_size, tiles, tokens", [
    ((1920, 1080), (1365, 768), 6, 1105),
    ((1080, 1920), (768, 1365), 6, 1105),
    ((1024, 1024), (768, 768), 4, 765),
    ((2048, 4096), (768, 1536), 6, 1105),   # OpenAI's published example
    ((640, 360), (640, 360), 2, 425),
    ((512, 512), (512, 512), 1, 255),
    ((4000, 3000), (1024, 768), 4, 765),
    ((100, 5000), (40, 2048), 4, 765),
])
def test_high_detail_rule(size, high_size, tiles, tokens):
    assert fit_size(*size, "high") == high_size == fit_size(*size, "auto")
    assert fit_size(*high_size, "high") == high_size, "idempotent"
    assert image_tiles(*size, "high") == tiles
    assert image_tokens(*size, "high") == tokens == image_tokens(*size, "auto")
    assert image_tokens(*high_size, "high") == tokens, "original and scaled size count the same"


@pytest.mark.parametrize("size, low_size", [
    ((1920, 1080), (512, 288)), ((1080, 1920), (288, 512)), ((640, 480), (512, 384)), ((320, 240), (320, 240)),
])
def test_low_detail_rule(size, low_size):
    assert fit_size(*size, "low") == low_size
    assert image_tokens(*size, "low") == 85
    assert image_tiles(*size, "low") == 0


def test_image_tokens_rejects_bad_input():
    with pytest.raises(ValueError):
        image_tokens(100, 100, "medium")
    with pytest.raises(ValueError):
        image_tokens(0, 100, "high")


# ---- JPEG encoding --------------------------------------------------------------------------
@pytest.mark.parametrize("detail, expected", [("auto", (1365, 768)), ("high", (1365, 768)), ("low", (512, 288))])
def test_encode_1080p_valid_jpeg_scaled_by_detail(detail, expected):
    frame = synthetic_frame(1920, 1080)
    data, w, h, q, attempts = encode_jpeg(frame, detail)
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    assert (w, h) == expected
    back = decode_jpeg(data)
    assert (back.width, back.height) == expected
    assert len(data) <= DEFAULT_MAX_BYTES and q == QUALITY_STEPS[0] and attempts == 1
    # the picture survives: the gradient's corners are dark/bright where they should be
    rgb = back.to_ndarray(format="rgb24").astype(int)
    assert rgb[5, 5, 0] < 40 and rgb[5, -5, 0] > 215 and rgb[-5, 5, 1] > 215


def test_quality_lowered_step_by_step_until_under_cap():
    frame = synthetic_frame(1920, 1080, noise=40)      # noise: the first quality step is far too big
    unlimited, *_ = encode_jpeg(frame, "high", max_bytes=10**9)
    cap = len(unlimited) // 3
    data, w, h, q, attempts = encode_jpeg(frame, "high", max_bytes=cap)
    assert len(data) <= cap < len(unlimited)
    assert (w, h) == (1365, 768), "quality is lowered before the size"
    assert q > QUALITY_STEPS[0] and attempts == QUALITY_STEPS.index(q) + 1
    assert decode_jpeg(data).width == 1365


def test_tiny_cap_shrinks_as_last_resort():
    frame = synthetic_frame(1280, 720, noise=40)
    data, w, h, q, attempts = encode_jpeg(frame, "high", max_bytes=8000)
    assert len(data) <= 8000 and w < 1280 and attempts > len(QUALITY_STEPS)
    assert abs(w / h - 1280 / 720) < 0.02, "aspect ratio kept"
    back = decode_jpeg(data)
    assert (back.width, back.height) == (w, h)
    with pytest.raises(ValueError):
        encode_jpeg(frame, "high", max_bytes=200)


def test_small_odd_frame_kept_full_resolution():
    frame = synthetic_frame(333, 177)
    data, w, h, *_ = encode_jpeg(frame, "high")
    assert (w, h) == (333, 177)
    back = decode_jpeg(data)
    assert (back.width, back.height) == (333, 177)


@pytest.mark.parametrize("fmt", ["yuv420p", "yuvj420p", "nv12", "rgb24"])
def test_any_decoder_pixel_format(fmt):
    data, w, h, *_ = encode_jpeg(synthetic_frame(640, 360, fmt=fmt), "low")
    assert (w, h) == (512, 288) and decode_jpeg(data).width == 512


# ---- the sampler on a fake track ------------------------------------------------------------
class FakeVideoTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self):
        super().__init__()
        self.queue: asyncio.Queue = asyncio.Queue()

    async def recv(self):
        frame = await self.queue.get()
        if frame is None:
            raise MediaStreamError
        return frame


async def test_sampler_keeps_latest_frame_and_encodes_lazily():
    track = FakeVideoTrack()
    sampler = VideoSampler(track)
    sampler.start()
    assert sampler.latest_jpeg() is None and not sampler.is_live
    frames = [synthetic_frame(1920, 1080, seed=i) for i in range(3)]
    for f in frames:
        track.queue.put_nowait(f)
    await wait_for(lambda: sampler.stats.frames_decoded == 3, 5, interval=0.01, what="3 frames decoded")
    assert sampler.stats.snapshots == 0, "no encode per frame"
    assert sampler._frame is frames[-1], "a reference to the latest frame, not a copy"
    assert sampler.is_live and sampler.frame_size == (1920, 1080)

    before = time.time()
    snap = sampler.latest_jpeg("auto")
    assert isinstance(snap, ImageSnapshot)
    assert snap.data_url.startswith("data:image/jpeg;base64,")
    jpeg = base64.b64decode(snap.data_url.split(",", 1)[1])
    assert jpeg == snap.jpeg and snap.bytes == len(jpeg) and jpeg[:2] == b"\xff\xd8"
    assert (snap.width, snap.height) == (1365, 768) and (snap.source_width, snap.source_height) == (1920, 1080)
    assert snap.captured_at <= before
    assert snap.image_tokens == 1105
    assert snap.content_part() == {"type": "input_image", "image_url": snap.data_url, "detail": "auto"}
    assert sampler.latest_jpeg("auto") is snap, "cached until a new frame arrives"
    assert sampler.stats.snapshots == 1
    low = await sampler.latest_jpeg_async("low")
    assert (low.width, low.height) == (512, 288) and low.image_tokens == 85

    track.queue.put_nowait(None)
    await asyncio.sleep(0.05)
    assert sampler.ended
    await sampler.stop()


async def test_is_live_expires():
    track = FakeVideoTrack()
    sampler = VideoSampler(track, live_window_s=0.1)
    sampler.start()
    track.queue.put_nowait(synthetic_frame(64, 48))
    await asyncio.sleep(0.02)
    assert sampler.is_live
    await asyncio.sleep(0.15)
    assert not sampler.is_live and sampler.latest_jpeg() is not None, "stale but still available"
    await sampler.stop()


class FakeReceiver:
    """Just what the sampler uses of RTCRtpReceiver."""

    def __init__(self):
        self.plis = []
        self.sources = []

    def getSynchronizationSources(self):
        return self.sources

    async def _send_rtcp_pli(self, media_ssrc):
        self.plis.append(media_ssrc)

    def packet(self, ssrc=1234):
        import datetime

        from aiortc.rtcrtpreceiver import RTCRtpSynchronizationSource
        self.sources = [RTCRtpSynchronizationSource(
            source=ssrc, timestamp=datetime.datetime.now(datetime.timezone.utc))]


async def test_pli_at_start_and_on_stall():
    track, receiver = FakeVideoTrack(), FakeReceiver()
    # the watchdog is driven by hand (check_interval_s huge) so the test does not depend on timing
    sampler = VideoSampler(track, receiver, stall_pli_s=0.2, check_interval_s=3600)
    sampler.start()
    check = sampler._check_keyframe
    await check()
    assert receiver.plis == [], "no packets, no PLI"
    receiver.packet()
    await check()
    assert receiver.plis == [1234], "PLI as soon as the stream starts"
    await check()
    assert receiver.plis == [1234], "not again before stall_pli_s"
    # packets keep flowing, nothing decodable for 0.2 s: one more PLI, then rate-limited
    await asyncio.sleep(0.25)
    receiver.packet()
    await check()
    await check()
    assert receiver.plis == [1234, 1234]
    # a frame decodes: no PLI while pictures keep coming
    track.queue.put_nowait(synthetic_frame(32, 32))
    await asyncio.sleep(0.01)
    assert sampler.stats.frames_decoded == 1
    await asyncio.sleep(0.25)
    receiver.packet()
    track.queue.put_nowait(synthetic_frame(32, 32))
    await asyncio.sleep(0.01)
    await check()
    assert len(receiver.plis) == 2
    # packets flow but pictures stop for 0.2 s: stall PLI
    await asyncio.sleep(0.25)
    receiver.packet()
    await check()
    assert len(receiver.plis) == 3
    assert sampler.stats.plis_sent == 3 and sampler.stats.plis_total == 3
    # packets stop (sender paused / muted): no PLI
    await asyncio.sleep(1.1)
    await check()
    assert len(receiver.plis) == 3
    # aiortc's own PLIs (decoder error, jitter-buffer reset) are counted in plis_total only
    await receiver._send_rtcp_pli(1234)
    assert sampler.stats.plis_total == 4 and sampler.stats.plis_sent == 3
    await sampler.stop()


# ---- a real aiortc peer sends H.264 to the server ---------------------------------------------
class PatternTrack(MediaStreamTrack):
    """A camera stand-in: a moving gradient at `fps`."""

    kind = "video"

    def __init__(self, width, height, fps=10):
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self.n = 0
        self.base = synthetic_frame(width, height).to_ndarray(format="rgb24")

    async def recv(self):
        await asyncio.sleep(1 / self.fps)
        rgb = np.roll(self.base, self.n * 8, axis=1)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = self.n * 90000 // self.fps
        frame.time_base = fractions.Fraction(1, 90000)
        self.n += 1
        return frame


async def test_aiortc_peer_video_to_jpeg(echo_server):
    from openrealtime.client.rtc import RealtimeRtcClient

    client = RealtimeRtcClient(echo_server.url, session={"type": "realtime"})
    client.pc.addTrack(PatternTrack(1280, 720))
    resp = await client.connect()
    assert resp.status_code == 201, resp.text
    call = echo_server.state.calls.get(client.call_id)
    try:
        await wait_for(lambda: call.video is not None and call.video.stats.frames_decoded >= 5, 10, interval=0.05,
                       what="5 video frames decoded")
        video = call.video
        assert video is not None and video.stats.frames_decoded >= 5 and video.stats.keyframes >= 1
        assert video.receiver is not None and video.stats.plis_sent >= 0
        snap = await video.latest_jpeg_async("auto")
        back = decode_jpeg(snap.jpeg)
        assert (back.width, back.height) == (snap.width, snap.height)
        assert (snap.source_width, snap.source_height) == video.frame_size
        assert (snap.width, snap.height) == fit_size(*video.frame_size, "auto")
        assert video.is_live
    finally:
        await client.close()
