"""The audio codecs of the RTP leg: G.711 (PCMU, PCMA) and Opus, each turning payloads into the session's
24 kHz PCM and the paced player's frames into payloads.

Every stream speaks its RTP clock (8 kHz for G.711, 48 kHz for Opus): `ticks(payload)` is how much
time a payload covers, which the jitter buffer needs to see gaps; `decoded`, `conceal` and `silence`
hand 24 kHz PCM to `deliver`; `encode` turns one frame from the player into packets.

G.711 is decoded to 8 kHz, concealed by repeating and fading the last 20 ms (jitter.py `Concealer`),
and resampled as a stream. Opus decodes straight to 24 kHz with PyAV's libopus (media/opus_fec.py
`OpusDecoder`): a lost packet is rebuilt from the next one's in-band FEC (LBRR) when it carries some,
the rest by libopus PLC. Out, the player encodes Opus itself (`OutboundAudioTrack.set_send_codec`,
the same encoder and settings as WebRTC calls: 32 kbps voip, LBRR on) and the stream only forwards
its packets.
"""

from __future__ import annotations

import fractions
from collections.abc import Callable

import av
import numpy as np

from ..audio.convert import g711_to_pcm8k, pcm8k_to_g711
from ..audio.format import SAMPLE_RATE
from ..audio.frame_resampler import FrameResampler
from ..media.opus_fec import EncodedOpus, OpusDecoder
from .jitter import Concealer

PACKET_MS = 20
OPUS_CLOCK = 48000
_OPUS_MAX_SAMPLES = SAMPLE_RATE * 120 // 1000  # the longest Opus packet, at 24 kHz
_OPUS_QUANTUM = SAMPLE_RATE // 400  # 2.5 ms: the unit of Opus frame sizes

Deliver = Callable[[bytes], None]


class G711Stream:
    def __init__(self, codec: str, deliver: Deliver) -> None:
        self.law = codec.lower()
        self.clock = 8000
        self.packet_ticks = self.clock * PACKET_MS // 1000
        self._deliver = deliver
        self._concealer = Concealer()
        self._in_resampler = FrameResampler("s16", "mono", SAMPLE_RATE)
        self._out_resampler = FrameResampler("s16", "mono", self.clock)
        self._in_pts = 0
        self._out_pending = bytearray()

    def ticks(self, payload: bytes) -> int:
        return len(payload)

    def decoded(self, payload: bytes) -> None:
        samples = g711_to_pcm8k(payload, self.law)
        self._concealer.heard(samples)
        self._resample_in(samples)

    def conceal(self, ticks: int, following: bytes | None = None) -> None:
        self._resample_in(self._concealer.conceal(ticks))

    def silence(self, ticks: int) -> None:
        self._resample_in(np.zeros(ticks, dtype=np.int16))

    def _resample_in(self, samples: np.ndarray) -> None:
        if not samples.size:
            return
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.clock
        frame.pts = self._in_pts
        frame.time_base = fractions.Fraction(1, self.clock)
        self._in_pts += samples.size
        for out in self._in_resampler.resample(frame):
            self._deliver(bytes(out.planes[0])[: out.samples * 2])

    def encode(self, frame: av.AudioFrame | EncodedOpus) -> list[bytes]:
        if isinstance(frame, EncodedOpus):  # the player still encoding for a previous Opus plan
            return []
        for out in self._out_resampler.resample(frame):
            self._out_pending += bytes(out.planes[0])[: out.samples * 2]
        payloads = []
        size = 2 * self.packet_ticks
        while len(self._out_pending) >= size:
            chunk = np.frombuffer(bytes(self._out_pending[:size]), dtype="<i2")
            del self._out_pending[:size]
            payloads.append(pcm8k_to_g711(chunk, self.law))
        return payloads


class OpusStream:
    def __init__(self, deliver: Deliver) -> None:
        self.clock = OPUS_CLOCK
        self.packet_ticks = self.clock * PACKET_MS // 1000
        self._deliver = deliver
        self._decoder = OpusDecoder(SAMPLE_RATE, 1)
        self._ratio = OPUS_CLOCK // SAMPLE_RATE
        self._last_n = SAMPLE_RATE * PACKET_MS // 1000
        self.fec_frames = 0
        self.plc_frames = 0
        self.errors = 0

    def _samples(self, payload: bytes) -> int:
        n = self._decoder.samples(payload) if payload else 0
        return n if 0 < n <= _OPUS_MAX_SAMPLES else 0

    def ticks(self, payload: bytes) -> int:
        return (self._samples(payload) or self._last_n) * self._ratio

    def decoded(self, payload: bytes) -> None:
        n = self._samples(payload)
        if n:
            try:
                self._deliver(self._decoder.decode(payload, n))
                self._last_n = n
                return
            except ValueError:
                pass
        self.errors += 1  # corrupt: its (assumed) duration is concealed instead
        self._plc(self._last_n)

    def conceal(self, ticks: int, following: bytes | None = None) -> None:
        """`ticks` lost before `following`: its LBRR (in-band FEC) rebuilds the last frame, PLC the rest."""
        gap = (ticks // self._ratio) // _OPUS_QUANTUM * _OPUS_QUANTUM
        if gap <= 0:
            return
        fec_n = 0
        if following and self._decoder.has_lbrr(following):
            fec_n = min(gap, self._samples(following))
        self._plc(gap - fec_n)
        if fec_n:
            try:
                self._deliver(self._decoder.decode(following, fec_n, 1))
                self.fec_frames += 1
            except ValueError:
                self._plc(fec_n)

    def _plc(self, samples: int) -> None:
        step = max(_OPUS_QUANTUM, min(self._last_n, _OPUS_MAX_SAMPLES))
        while samples > 0:
            n = min(step, samples)
            self._deliver(self._decoder.decode(None, n))
            self.plc_frames += 1
            samples -= n

    def silence(self, ticks: int) -> None:
        samples = ticks // self._ratio
        if samples > 0:
            self._deliver(bytes(2 * samples))

    def encode(self, frame: av.AudioFrame | EncodedOpus) -> list[bytes]:
        if isinstance(frame, EncodedOpus):
            return [frame.payload]
        return []  # a frame from before the player switched to Opus: 20 ms not sent


def audio_stream(codec: str, deliver: Deliver) -> G711Stream | OpusStream:
    if codec.upper() == "OPUS":
        return OpusStream(deliver)
    return G711Stream(codec, deliver)
