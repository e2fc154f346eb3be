"""Video → still images: the "video to image gateway" of the seed review.

OpenAI's gateway does not feed a video stream to the model; it takes a still of the camera when
the model needs to look, and bills it as an image input (advice: high resolution, low frame rate,
e.g. 1080p at 1 fps). :class:`VideoSampler` is that gateway for one call:

* it consumes the remote video track (aiortc already decodes H.264 in its own decoder thread)
  and keeps **only a reference to the latest decoded** ``av.VideoFrame`` at full resolution;
* a JPEG is made **lazily**, only when :meth:`VideoSampler.latest_jpeg` is called (never per
  frame), scaled by the OpenAI detail rule (:mod:`.image_tokens`) and re-encoded at lower JPEG
  quality step by step until it fits ``max_bytes``; the result is cached per (frame, detail, cap);
* keyframe recovery: aiortc itself sends PLI on a jitter-buffer reset and on a decoder error.
  The sampler additionally sends one PLI as soon as the first packet of the stream is seen, and
  a PLI whenever packets flow but no frame was decoded for ``stall_pli_s`` (2 s), at most once
  per ``stall_pli_s``. It checks every ``check_interval_s`` (0.25 s) with the receiver's public
  ``getSynchronizationSources()`` (last-packet time per SSRC) and sends with aiortc's
  ``RTCRtpReceiver._send_rtcp_pli(media_ssrc)`` (through ``aiortc_patches.internals``).

Encoding uses PyAV only (``VideoFrame.reformat`` to ``yuvj420p`` + the FFmpeg ``mjpeg`` encoder
with a fixed quantiser via ``qmin = qmax``); Pillow is not needed.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import datetime
import fractions
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .aiortc_patches.internals import on_rtcp_sent, rtx_ssrcs, send_pli
from .image_tokens import DETAILS, fit_size, image_tokens

log = logging.getLogger("openrealtime.video")

DEFAULT_MAX_BYTES = 256 * 1024
# FFmpeg mjpeg quantiser (qscale): 2 is the best quality, 31 the worst. ~3 ≈ libjpeg quality 90.
QUALITY_STEPS = (3, 5, 8, 12, 18, 24, 31)
# if even the worst quality does not fit the cap, shrink by this factor and retry (last resort)
SHRINK_FACTOR = 0.75
MIN_SIDE_PX = 16
# packets count as flowing if the last one arrived within this window
FLOWING_S = 1.0


@dataclass(frozen=True)
class ImageSnapshot:
    """One still of the camera, ready for an ``input_image`` content part."""

    data_url: str            # "data:image/jpeg;base64,..."
    width: int               # JPEG size in pixels
    height: int
    captured_at: float       # wall clock (time.time()) when the frame arrived from the decoder
    bytes: int               # JPEG size in bytes (≤ max_bytes)
    detail: str = "auto"
    quality: int = QUALITY_STEPS[0]  # mjpeg qscale used (2 best … 31 worst)
    source_width: int = 0    # the decoded frame's size
    source_height: int = 0
    encode_ms: float = 0.0   # scale + encode time, all attempts together
    attempts: int = 1        # encodes needed to get under max_bytes

    @property
    def jpeg(self) -> builtins.bytes:
        return base64.b64decode(self.data_url.split(",", 1)[1])

    @property
    def image_tokens(self) -> int:
        """Tokens for this image by the documented rule (:func:`.image_tokens.image_tokens`)."""
        return image_tokens(self.width, self.height, self.detail)

    def content_part(self) -> dict[str, Any]:
        """The Realtime ``input_image`` content part (§6.1) for a user message."""
        return {"type": "input_image", "image_url": self.data_url, "detail": self.detail}


# ---- JPEG encoding (PyAV only) --------------------------------------------------------------
def _encode_once(frame: av.VideoFrame, width: int, height: int, qscale: int) -> builtins.bytes:
    scaled = frame.reformat(width=width, height=height, format="yuvj420p", interpolation="AREA")
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuvj420p"
    ctx.time_base = fractions.Fraction(1, 1)
    ctx.qmin = ctx.qmax = qscale
    scaled.pts = 0
    packets = ctx.encode(scaled) + ctx.encode(None)
    return b"".join(bytes(p) for p in packets)


def encode_jpeg(frame: av.VideoFrame, detail: str = "auto", max_bytes: int = DEFAULT_MAX_BYTES
                ) -> tuple[builtins.bytes, int, int, int, int]:
    """Scale ``frame`` by the ``detail`` rule and JPEG-encode it under ``max_bytes``.

    Quality is lowered step by step (:data:`QUALITY_STEPS`); if the worst quality is still too
    big, the image is shrunk by 0.75 and the ladder restarts (a last resort, e.g. a tiny cap).
    Returns ``(jpeg, width, height, qscale, attempts)``; raises ValueError if nothing fits.
    """
    if detail not in DETAILS:
        raise ValueError(f"detail must be one of {DETAILS}, not {detail!r}")
    if max_bytes <= 0:
        raise ValueError("max_bytes must be positive")
    width, height = fit_size(frame.width, frame.height, detail)
    attempts = 0
    while True:
        # 4:2:0 JPEG: odd sizes are valid, but keep ≥ MIN_SIDE_PX on the short side
        for qscale in QUALITY_STEPS:
            attempts += 1
            data = _encode_once(frame, width, height, qscale)
            if len(data) <= max_bytes:
                return data, width, height, qscale, attempts
        if min(width, height) * SHRINK_FACTOR < MIN_SIDE_PX:
            raise ValueError(f"cannot encode a JPEG under {max_bytes} bytes")
        width, height = max(1, int(width * SHRINK_FACTOR)), max(1, int(height * SHRINK_FACTOR))


# ---- the sampler ---------------------------------------------------------------------------
@dataclass
class VideoStats:
    frames_decoded: int = 0      # frames that came out of aiortc's H.264 decoder
    keyframes: int = 0           # of which IDR/key frames
    plis_sent: int = 0           # PLIs this sampler requested (start + stall)
    plis_total: int = 0          # every PLI the receiver sent (aiortc's own included)
    snapshots: int = 0           # JPEGs encoded (cache hits not counted)
    last_encode_ms: float = 0.0
    first_frame_at: float | None = None   # monotonic
    first_packet_at: float | None = None  # monotonic
    sizes: dict[str, int] = field(default_factory=dict)  # "WxH" -> frames seen at that size


class VideoSampler:
    """Keeps the latest decoded frame of a remote video track; makes JPEG stills on demand.

    ``receiver`` (the track's ``RTCRtpReceiver``) enables PLI keyframe requests and PLI counting;
    without it the sampler only consumes frames. Start it with :meth:`start` inside the loop.
    """

    def __init__(self, track: MediaStreamTrack, receiver: Any = None, *, live_window_s: float = 3.0,
                 stall_pli_s: float = 2.0, check_interval_s: float = 0.25) -> None:
        self.track = track
        self.receiver = receiver
        self.live_window_s = live_window_s
        self.stall_pli_s = stall_pli_s
        self.check_interval_s = check_interval_s
        self.stats = VideoStats()
        self.ended = False
        self._frame: av.VideoFrame | None = None
        self._frame_seq = 0
        self._frame_mono = 0.0
        self._frame_wall = 0.0
        self._cache: tuple[tuple[int, str, int], ImageSnapshot] | None = None
        self._task: asyncio.Task | None = None
        self._last_pli = -1e9
        self._start_pli_done = False
        if receiver is not None:
            on_rtcp_sent(receiver, "pli", self._count_pli)  # aiortc's own PLIs and ours

    @classmethod
    def for_track(cls, pc: Any, track: MediaStreamTrack, **kwargs: Any) -> "VideoSampler":
        """A sampler for ``track`` with its receiver looked up on the RTCPeerConnection ``pc``."""
        receiver = next((t.receiver for t in pc.getTransceivers() if t.receiver.track is track), None)
        return cls(track, receiver, **kwargs)

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> asyncio.Task:
        """Start consuming; returns the task (cancel it, or call :meth:`stop`, to end)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._frame = None

    async def _run(self) -> None:
        watchdog = asyncio.ensure_future(self._watchdog()) if self.receiver is not None else None
        try:
            while True:
                frame = await self.track.recv()
                self._on_frame(frame)
        except MediaStreamError:
            pass
        finally:
            self.ended = True
            if watchdog is not None:
                watchdog.cancel()

    def _on_frame(self, frame: av.VideoFrame) -> None:
        now = time.monotonic()
        st = self.stats
        st.frames_decoded += 1
        if frame.key_frame:
            st.keyframes += 1
        key = f"{frame.width}x{frame.height}"
        st.sizes[key] = st.sizes.get(key, 0) + 1
        if st.first_frame_at is None:
            st.first_frame_at = now
            log.info("video first frame %s after %.0f ms", key,
                     (now - (st.first_packet_at or now)) * 1000)
        self._frame = frame          # a reference only: no copy, no conversion
        self._frame_seq += 1
        self._frame_mono = now
        self._frame_wall = time.time()

    # ---- keyframe recovery -----------------------------------------------------------------
    def _count_pli(self) -> None:
        self.stats.plis_total += 1

    def _media_source(self) -> tuple[int, float] | None:
        """(ssrc, seconds since its last packet) of the most recent non-RTX source, if any."""
        try:
            sources = self.receiver.getSynchronizationSources()
        except Exception:  # pragma: no cover - defensive against aiortc internals
            return None
        rtx = rtx_ssrcs(self.receiver)
        sources = [s for s in sources if s.source not in rtx]
        if not sources:
            return None
        latest = max(sources, key=lambda s: s.timestamp)
        age = (datetime.datetime.now(datetime.timezone.utc) - latest.timestamp).total_seconds()
        return latest.source, max(0.0, age)

    async def request_keyframe(self, media_ssrc: int | None = None) -> bool:
        """Send one PLI to the sender (``media_ssrc`` defaults to the active source)."""
        if self.receiver is None:
            return False
        if media_ssrc is None:
            src = self._media_source()
            if src is None:
                return False
            media_ssrc = src[0]
        self._last_pli = time.monotonic()
        self.stats.plis_sent += 1
        await send_pli(self.receiver, media_ssrc)
        return True

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval_s)
            await self._check_keyframe()

    async def _check_keyframe(self) -> None:
        src = self._media_source()
        if src is None:
            return
        ssrc, packet_age = src
        now = time.monotonic()
        st = self.stats
        if st.first_packet_at is None:
            st.first_packet_at = now
        if not self._start_pli_done:
            # start: one keyframe request as soon as the stream is seen (cheap insurance: the
            # first IDR may have been lost or sent before we were ready; one extra keyframe)
            self._start_pli_done = True
            log.debug("video start PLI ssrc=%d", ssrc)
            await self.request_keyframe(ssrc)
            return
        flowing = packet_age < FLOWING_S
        last_picture = self._frame_mono if st.frames_decoded else st.first_packet_at
        if flowing and now - last_picture >= self.stall_pli_s and now - self._last_pli >= self.stall_pli_s:
            log.info("video stall: no decodable frame for %.1f s while packets flow; PLI ssrc=%d",
                     now - last_picture, ssrc)
            await self.request_keyframe(ssrc)

    # ---- snapshots -------------------------------------------------------------------------
    @property
    def is_live(self) -> bool:
        """A frame arrived within the last ``live_window_s`` (3 s)."""
        return self._frame is not None and time.monotonic() - self._frame_mono <= self.live_window_s

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(width, height) of the latest decoded frame."""
        return (self._frame.width, self._frame.height) if self._frame is not None else None

    @property
    def last_frame_age_s(self) -> float | None:
        return time.monotonic() - self._frame_mono if self._frame is not None else None

    def latest_jpeg(self, detail: str = "auto", max_bytes: int = DEFAULT_MAX_BYTES) -> ImageSnapshot | None:
        """JPEG of the latest frame (``None`` before the first frame). Blocks for the encode
        (≈10-40 ms at 1080p); use :meth:`latest_jpeg_async` from the event loop."""
        frame, seq, wall = self._frame, self._frame_seq, self._frame_wall
        if frame is None:
            return None
        key = (seq, detail, max_bytes)
        cached = self._cache
        if cached is not None and cached[0] == key:
            return cached[1]
        t0 = time.perf_counter()
        data, width, height, qscale, attempts = encode_jpeg(frame, detail, max_bytes)
        ms = (time.perf_counter() - t0) * 1000
        snap = ImageSnapshot(
            data_url="data:image/jpeg;base64," + base64.b64encode(data).decode("ascii"),
            width=width, height=height, captured_at=wall, bytes=len(data), detail=detail,
            quality=qscale, source_width=frame.width, source_height=frame.height,
            encode_ms=ms, attempts=attempts)
        self.stats.snapshots += 1
        self.stats.last_encode_ms = ms
        self._cache = (key, snap)
        return snap

    async def latest_jpeg_async(self, detail: str = "auto", max_bytes: int = DEFAULT_MAX_BYTES
                                ) -> ImageSnapshot | None:
        """:meth:`latest_jpeg` in the default executor, so the event loop is not blocked."""
        return await asyncio.get_running_loop().run_in_executor(None, self.latest_jpeg, detail, max_bytes)

    def counters(self) -> dict[str, Any]:
        st = self.stats
        return {
            "live": self.is_live, "ended": self.ended, "frame_size": self.frame_size,
            "last_frame_age_s": self.last_frame_age_s, "frames_decoded": st.frames_decoded,
            "keyframes": st.keyframes, "plis_sent": st.plis_sent, "plis_total": st.plis_total,
            "snapshots": st.snapshots, "last_encode_ms": st.last_encode_ms, "sizes": dict(st.sizes),
        }
