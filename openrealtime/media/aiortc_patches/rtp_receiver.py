"""The server's ``RTCRtpReceiver``: Opus FEC/PLC, a video jitter buffer that gives up, lazy decoder threads.

:class:`ServerRtpReceiver`:

* puts an :class:`.opus_fec.OpusReceiveBuffer` in place of the audio jitter buffer (FEC/PLC, no
  prefetch stall), and a :class:`.video_jitter.VideoJitterBuffer` in place of the video one (gives
  up on an unrecovered lost packet after 0.35 s and asks for a keyframe, instead of freezing for
  512 packets);
* ``receive`` is aiortc's body (the contract pins it), except that an audio receiver's decoder
  thread (:class:`LazyThread`) starts only when the first frame for it arrives (PCMU/PCMA): Opus is
  decoded by the receive buffer on the loop, so most calls never start it;
* ``_send_rtcp`` skips a report the peer's streams made unencodable (more than 31 report blocks, a
  jitter beyond 32 bits) instead of ending the receiver's RTCP task for the rest of the call (its
  stop() then waited for that task forever: found by fuzzing).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import struct
import threading
from typing import Any

from aiortc.rtcrtpreceiver import RTCRtpReceiver, decoder_worker

from ..opus_fec import OpusReceiveBuffer
from ..video_jitter import VideoJitterBuffer

log = logging.getLogger("openrealtime.rtp")


class LazyDecoderQueue(queue.Queue):
    """An audio receiver's decoder queue: the first frame put starts its decoder thread."""

    def __init__(self) -> None:
        super().__init__()
        self.thread: LazyThread | None = None

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is not None and self.thread is not None:
            self.thread.ensure_started()
        super().put(item, block, timeout)


class LazyThread:
    """Stands in for the decoder ``threading.Thread`` of an audio receiver."""

    def __init__(self, target: Any, name: str, args: tuple) -> None:
        self._args = args
        self.thread = threading.Thread(target=target, name=name, args=args)
        self._wanted = False
        self._lock = threading.Lock()

    def start(self) -> None:
        self._wanted = True  # the real thread starts with the first frame

    @property
    def started(self) -> bool:
        return self.thread.ident is not None

    def ensure_started(self) -> None:
        if self._wanted and not self.started:
            with self._lock:
                if not self.started:
                    self.thread.start()

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        with self._lock:
            self._wanted = False
            started = self.started
        if started:
            self.thread.join(timeout)
            return
        # never started: what decoder_worker does on its None, end the remote track
        loop, _queue, output_q, _error = self._args
        try:
            loop.call_soon_threadsafe(output_q.put_nowait, None)
        except RuntimeError:  # loop already closed
            pass


class ServerRtpReceiver(RTCRtpReceiver):
    def __init__(self, kind: str, transport: Any) -> None:
        super().__init__(kind, transport)
        if kind == "audio":
            self._RTCRtpReceiver__jitter_buffer = OpusReceiveBuffer(self)
            self._RTCRtpReceiver__decoder_queue = LazyDecoderQueue()
        else:
            self._RTCRtpReceiver__jitter_buffer = VideoJitterBuffer(self._RTCRtpReceiver__nack_generator)

    async def receive(self, parameters: Any) -> None:
        # aiortc 1.16's body; an audio receiver's decoder thread is a LazyThread
        if not self._RTCRtpReceiver__started:
            for codec in parameters.codecs:
                self._RTCRtpReceiver__codecs[codec.payloadType] = codec
            for encoding in parameters.encodings:
                if encoding.rtx:
                    self._RTCRtpReceiver__rtx_ssrc[encoding.rtx.ssrc] = encoding.ssrc

            decoder_queue = self._RTCRtpReceiver__decoder_queue
            name = self._RTCRtpReceiver__kind + "-decoder"
            args = (asyncio.get_event_loop(), decoder_queue, self._track._queue,
                    self._RTCRtpReceiver__decoder_error)
            if isinstance(decoder_queue, LazyDecoderQueue):
                thread = decoder_queue.thread = LazyThread(decoder_worker, name, args)
            else:
                thread = threading.Thread(target=decoder_worker, name=name, args=args)
            self._RTCRtpReceiver__decoder_thread = thread
            thread.start()

            self._RTCRtpReceiver__transport._register_rtp_receiver(self, parameters)
            self._RTCRtpReceiver__rtcp_task = asyncio.ensure_future(self._run_rtcp())
            self._RTCRtpReceiver__started = True

    async def _send_rtcp(self, packet: Any) -> None:
        try:
            data = bytes(packet)
        except (ValueError, struct.error, OverflowError) as exc:
            log.debug("x RTCP report not sent: %s", exc)
            return
        try:
            await self.transport._send_rtp(data)
        except ConnectionError:
            pass


def decoder_thread_started(receiver: RTCRtpReceiver) -> bool | None:
    """Whether an audio receiver's decoder thread runs (None: no lazy thread here)."""
    thread = getattr(receiver, "_RTCRtpReceiver__decoder_thread", None)
    if isinstance(thread, LazyThread):
        return thread.started
    return None


def opus_buffer(receiver: RTCRtpReceiver) -> OpusReceiveBuffer | None:
    buf = getattr(receiver, "_RTCRtpReceiver__jitter_buffer", None)
    return buf if isinstance(buf, OpusReceiveBuffer) else None


def video_buffer(receiver: RTCRtpReceiver) -> VideoJitterBuffer | None:
    buf = getattr(receiver, "_RTCRtpReceiver__jitter_buffer", None)
    return buf if isinstance(buf, VideoJitterBuffer) else None
