"""Inbound audio: decode whatever the peer negotiated and resample once to the engine's
canonical PCM16 mono 24 kHz.

Opus goes through :class:`.opus_fec.OpusReceiveBuffer` (FEC/PLC, no prefetch), which we ask to
decode straight at 24 kHz mono and to hand each frame's PCM to :meth:`InboundAudio._on_pcm`
directly (no ``av.AudioFrame``, no queue, no task wake-up). PCMU/PCMA come from aiortc's decoders
through ``track.recv()`` and are resampled."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..audio.format import SAMPLE_RATE
from ..audio.frame_resampler import FrameResampler
from .opus_fec import OpusReceiveStats, configure_track, track_stats

log = logging.getLogger(__name__)

AudioSink = Callable[[bytes], None]
_VOICED_RMS = 0.00316  # -50 dBFS
_FULL_SCALE_SQ = 32768.0 * 32768.0


class InboundAudio:
    """Pulls frames from a remote audio track and hands canonical PCM to a sink."""

    def __init__(self, track: MediaStreamTrack, sink: AudioSink) -> None:
        self._track = track
        self._sink = sink
        self._stopped = False
        configure_track(track, SAMPLE_RATE, sink=self._on_pcm)
        self._resampler: FrameResampler | None = None  # only for frames from aiortc's decoders
        self._task: asyncio.Task[None] | None = None
        self.frames = 0
        self.samples = 0
        self.voiced_frames = 0  # frames whose RMS is above -50 dBFS
        self.peak_rms = 0.0

    @property
    def opus(self) -> OpusReceiveStats | None:
        """FEC/PLC counters of the Opus receive path (None before the first Opus packet)."""
        return track_stats(self._track)

    def start(self) -> None:
        self._stopped = False
        self._task = asyncio.create_task(self._run(), name="inbound-audio")

    async def stop(self) -> None:
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                frame = await self._track.recv()
            except MediaStreamError:
                return
            if self._resampler is None:
                self._resampler = FrameResampler("s16", "mono", SAMPLE_RATE)
            for out in self._resampler.resample(frame):
                self._on_pcm(bytes(out.planes[0])[: out.samples * 2])

    def _on_pcm(self, pcm: bytes) -> None:
        if self._stopped:
            return
        self._account(pcm)
        try:
            self._sink(pcm)
        except Exception:  # a sink bug must not kill the media path
            log.exception("audio sink failed")

    def _account(self, pcm: bytes) -> None:
        samples = np.frombuffer(pcm, dtype=np.int16)
        n = samples.size
        self.frames += 1
        self.samples += n
        if n:
            f = samples.astype(np.float32)
            rms = math.sqrt(float(np.dot(f, f)) / (n * _FULL_SCALE_SQ))
            if rms > _VOICED_RMS:
                self.voiced_frames += 1
            if rms > self.peak_rms:
                self.peak_rms = rms
