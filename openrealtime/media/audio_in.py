"""Inbound audio: decode whatever the peer negotiated (Opus / PCMU / PCMA — aiortc's
decoders) and resample once to the engine's canonical PCM16 mono 24 kHz."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .audio_format import SAMPLE_RATE

log = logging.getLogger(__name__)

AudioSink = Callable[[bytes], None]


class InboundAudio:
    """Pulls frames from a remote audio track and hands canonical PCM to a sink."""

    def __init__(self, track: MediaStreamTrack, sink: AudioSink) -> None:
        self._track = track
        self._sink = sink
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        self._task: asyncio.Task[None] | None = None
        self.frames = 0
        self.samples = 0
        self.voiced_frames = 0  # frames whose RMS is above -50 dBFS
        self.peak_rms = 0.0

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
