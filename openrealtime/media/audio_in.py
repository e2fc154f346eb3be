"""Inbound audio: decode whatever the peer negotiated and resample once to the engine's
canonical PCM16 mono 24 kHz.

Opus goes through :class:`.opus_fec.OpusReceiveBuffer` (FEC/PLC, no prefetch), which we ask to
decode straight at 24 kHz mono, so the resampler below is a pass-through for it; PCMU/PCMA come
from aiortc's decoders and are resampled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .audio_format import SAMPLE_RATE
from .opus_fec import OpusReceiveStats, configure_track, track_stats

log = logging.getLogger(__name__)

AudioSink = Callable[[bytes], None]


class InboundAudio:
    """Pulls frames from a remote audio track and hands canonical PCM to a sink."""

    def __init__(self, track: MediaStreamTrack, sink: AudioSink) -> None:
        self._track = track
        self._sink = sink
        configure_track(track, SAMPLE_RATE)
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
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
        self._task = asyncio.create_task(self._run(), name="inbound-audio")

    async def stop(self) -> None:
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
            for out in self._resampler.resample(frame):
                pcm = bytes(out.planes[0])[: out.samples * 2]
                self._account(pcm)
                try:
                    self._sink(pcm)
                except Exception:  # a sink bug must not kill the media path
                    log.exception("audio sink failed")

    def _account(self, pcm: bytes) -> None:
        samples = np.frombuffer(pcm, dtype=np.int16)
        self.frames += 1
        self.samples += samples.size
        if samples.size:
            rms = float(np.sqrt(np.mean(samples.astype(np.float32) ** 2)) / 32768.0)
            if rms > 0.00316:
                self.voiced_frames += 1
            self.peak_rms = max(self.peak_rms, rms)
