"""The RTP leg of a SIP call: G.711 or Opus in and out on one UDP socket, RFC 4733 key presses, SDES-SRTP.

In: each datagram is authenticated and decrypted (SRTP), checked (version 2, a negotiated payload
type, within size), latched (symmetric RTP: we send to where the caller's media comes from, so a
caller behind NAT hears us), reordered and gap-concealed (jitter.py), decoded to the canonical 24 kHz
(codec.py: G.711 resampled as a stream, Opus decoded at 24 kHz with its FEC and PLC for losses) and
handed to the session (`sink`). Telephone-events go to dtmf.py.

Out: every 20 ms the paced player (media/audio_out.py `OutboundAudioTrack`, the same object the
session engine writes to on WebRTC, with its started/stopped playout events and played-ms accounting)
gives one frame; it is resampled to 8 kHz and encoded as one G.711 packet, or it is already an Opus
packet (the player encodes Opus itself, as for WebRTC). While the caller holds the
call (we answered recvonly/inactive), the player is not read: the answer waits, and the VAD hears
nothing.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
import time
from collections.abc import Callable

import numpy as np
import pylibsrtp

from ..media.audio_out import OutboundAudioTrack
from .codec import PACKET_MS, G711Stream, OpusStream, audio_stream
from .dtmf import DtmfReceiver
from .jitter import JitterBuffer
from .sdp import MediaPlan

log = logging.getLogger("openrealtime.sip.rtp")

MAX_PACKET_BYTES = 1500
RELATCH_AFTER_S = 1.0  # the latched source silent this long: media from a new address takes over
SILENT_AFTER_S = 0.1  # no audio packet this long (silence suppression, hold): the session hears silence
_VOICED_RMS = 0.00316 * 32768  # -50 dBFS
_PROFILES = {"AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
             "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32}


def _srtp_session(suite: str, key: bytes, direction: int) -> pylibsrtp.Session:
    return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=direction, srtp_profile=_PROFILES[suite]))


def parse_rtp(data: bytes) -> tuple[int, bool, int, int, int, bytes] | None:
    """(payload type, marker, sequence, timestamp, ssrc, payload) of an RTP packet, or None."""
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    first, second = data[0], data[1]
    offset = 12 + 4 * (first & 0x0F)
    if first & 0x10:
        if len(data) < offset + 4:
            return None
        offset += 4 + 4 * int.from_bytes(data[offset + 2:offset + 4], "big")
    end = len(data)
    if first & 0x20:
        end -= data[-1]
    if offset > end:
        return None
    seq, timestamp, ssrc = struct.unpack_from("!HII", data, 2)
    return second & 0x7F, bool(second & 0x80), seq, timestamp, ssrc, data[offset:end]


def is_rtcp(data: bytes) -> bool:
    return len(data) >= 2 and 192 <= data[1] <= 223  # RFC 5761 §4: PT 64-95 with the marker bit


class RtpLeg(asyncio.DatagramProtocol):
    def __init__(self, plan: MediaPlan, audio_out: OutboundAudioTrack, sink: Callable[[bytes], None],
                 on_key: Callable[[str], None], *, symmetric: bool = True) -> None:
        self.plan = plan
        self.audio_out = audio_out
        self._sink = sink
        self.symmetric = symmetric
        self.dtmf = DtmfReceiver(on_key)
        self.stream: G711Stream | OpusStream | None = None  # set by set_plan, with the jitter buffer
        self.jitter = JitterBuffer()
        self._transport: asyncio.DatagramTransport | None = None
        self._remote: tuple[str, int] | None = None
        self._latched_at: float | None = None  # when the latched source last sent
        self._srtp_in: pylibsrtp.Session | None = None
        self._srtp_out: pylibsrtp.Session | None = None
        self._seq = secrets.randbelow(65536)
        self._timestamp = secrets.randbelow(2 ** 32)
        self._ssrc = secrets.randbelow(2 ** 32)
        self._marker = True
        self._task: asyncio.Task | None = None
        self._last_arrival: tuple[float, int] | None = None
        self.jitter_ts = 0.0  # RFC 3550 interarrival jitter, in RTP clock units
        self.packets_in = self.packets_out = self.bytes_in = self.bytes_out = 0
        self.dropped = 0  # packets refused: not RTP, unknown payload type, failed SRTP, wrong source
        self.frames = 0  # 20 ms of decoded input handed to the session (the monitor's "audio_frames_in")
        self.voiced_frames = 0
        self.concealed_ms = 0.0
        self._lost = 0  # ticks lost, concealed with the packet that follows them (Opus: from its FEC)
        self._audio_at: float | None = None  # when the last audio packet arrived
        self._filled = 0  # ticks of silence given in real time since then (not given again for the gap)
        self.filled_samples = 0  # in RTP clock ticks
        self.filled_ms = 0.0
        self.set_plan(plan)

    # ---- setup --------------------------------------------------------------------------------
    async def open(self, host: str) -> int:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, 0))
        return self._transport.get_extra_info("sockname")[1]

    def set_plan(self, plan: MediaPlan) -> None:
        """A new offer/answer (the first, or a re-INVITE): remote address, direction, codec, keys."""
        old = self.plan
        self.plan = plan
        if self.stream is None or plan.codec != old.codec:
            self.stream = audio_stream(plan.codec, self._deliver)
            self.jitter = JitterBuffer(duration=self.stream.ticks, max_gap=self.stream.clock)
            self._lost = self._filled = 0
            self.audio_out.set_send_codec("audio/opus" if plan.codec == "OPUS" else None)
        if plan.sends and not _unspecified(plan.remote_host):
            if self._remote is None or (plan.remote_host, plan.remote_port) != (old.remote_host, old.remote_port):
                self._remote = (plan.remote_host, plan.remote_port)
                self._latched_at = None
        if plan.remote_crypto is not None and (self._srtp_in is None or plan.remote_crypto != old.remote_crypto):
            self._srtp_in = _srtp_session(plan.remote_crypto.suite, plan.remote_crypto.key,
                                          pylibsrtp.Policy.SSRC_ANY_INBOUND)
        if plan.local_crypto is not None and (self._srtp_out is None or plan.local_crypto != old.local_crypto):
            self._srtp_out = _srtp_session(plan.local_crypto.suite, plan.local_crypto.key,
                                           pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        if plan.remote_crypto is None:
            self._srtp_in = self._srtp_out = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._send_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        self.audio_out.stop()
        if self._transport is not None:
            self._transport.close()

    @property
    def local_port(self) -> int:
        return self._transport.get_extra_info("sockname")[1] if self._transport is not None else 0

    @property
    def remote(self) -> tuple[str, int] | None:
        return self._remote

    # ---- receiving ----------------------------------------------------------------------------
    def datagram_received(self, data: bytes, addr) -> None:
        try:
            self._receive(data, (addr[0], addr[1]))
        except Exception:  # noqa: BLE001 - one bad packet never ends the call
            self.dropped += 1
            log.debug("rtp packet dropped", exc_info=True)

    def _receive(self, data: bytes, source: tuple[str, int]) -> None:
        if len(data) > MAX_PACKET_BYTES or is_rtcp(data):
            return
        if self._srtp_in is not None:
            try:
                data = self._srtp_in.unprotect(data)
            except pylibsrtp.Error:
                self.dropped += 1
                return
        parsed = parse_rtp(data)
        if parsed is None:
            self.dropped += 1
            return
        pt, _marker, seq, timestamp, ssrc, payload = parsed
        plan = self.plan
        if pt != plan.payload_type and pt != plan.dtmf_payload_type:
            self.dropped += 1
            return
        now = time.monotonic()
        if not self._latch(source, now):
            self.dropped += 1
            return
        self.packets_in += 1
        self.bytes_in += len(data)
        if pt == plan.dtmf_payload_type:
            self.dtmf.packet(payload, timestamp, now)
            return
        if not plan.receives:
            return
        self._measure_jitter(now, timestamp)
        self._audio_at = now
        for released in self.jitter.push(ssrc, seq, timestamp, payload, now):
            self._play_in(released)

    def _latch(self, source: tuple[str, int], now: float) -> bool:
        """Symmetric RTP: the first source (and later one that takes over from a silent one) is where we send."""
        if not self.symmetric:
            return True
        if self._latched_at is not None and source != self._remote and now - self._latched_at < RELATCH_AFTER_S:
            return False
        if source != self._remote:
            log.info("rtp latched to %s:%s (was %s)", source[0], source[1], self._remote)
        self._remote = source
        self._latched_at = now
        return True

    def _measure_jitter(self, now: float, timestamp: int) -> None:
        arrival = int(now * self.stream.clock)
        if self._last_arrival is not None:
            last_now, last_ts = self._last_arrival
            transit_delta = (arrival - last_now) - ((timestamp - last_ts + 2 ** 31) % 2 ** 32 - 2 ** 31)
            self.jitter_ts += (abs(transit_delta) - self.jitter_ts) / 16
        self._last_arrival = (arrival, timestamp)

    def _play_in(self, released) -> None:
        stream = self.stream
        if released.kind == "audio":
            if self._lost:  # the jitter buffer gives a loss just before the packet that ends it
                stream.conceal(self._lost, released.payload)
                self._lost = 0
            stream.decoded(released.payload)
            self._filled = 0
            return
        count = released.samples - self._filled  # a gap partly given as silence already (_fill_silence)
        self._filled = max(0, self._filled - released.samples)
        if count <= 0:
            return
        if released.kind == "lost":
            self._lost += count
            self.concealed_ms += count * 1000 / stream.clock
        else:
            stream.silence(count)

    def _fill_silence(self, now: float) -> None:
        """A caller that stops sending (silence suppression, or on hold) is heard as silence in real time, so
        the session's turn detection and idle timeout go on; the gap is not replayed when packets resume."""
        if self._audio_at is None or now - self._audio_at < SILENT_AFTER_S or not self.plan.receives:
            return
        ticks = self.stream.packet_ticks
        self._filled += ticks
        self.filled_samples += ticks
        self.filled_ms += PACKET_MS
        self.stream.silence(ticks)

    def _deliver(self, pcm: bytes) -> None:
        """24 kHz PCM from the codec stream, to the session."""
        if pcm:
            self._count_in(pcm)
            self._sink(pcm)

    def _count_in(self, pcm: bytes) -> None:
        self.frames += 1
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        if samples.size and float(np.sqrt(np.mean(samples * samples))) > _VOICED_RMS:
            self.voiced_frames += 1

    # ---- sending --------------------------------------------------------------------------------
    async def _send_loop(self) -> None:
        while True:
            now = time.monotonic()
            for released in self.jitter.tick(now):
                self._play_in(released)
            self._fill_silence(now)
            self.dtmf.tick(now)
            if not self.plan.sends or self._remote is None:
                await asyncio.sleep(PACKET_MS / 1000)  # on hold: the answer waits
                self._marker = True
                continue
            frame = await self.audio_out.recv()  # paced: one 20 ms frame per call
            if not self.plan.sends:
                continue  # put on hold while the frame was due
            for payload in self.stream.encode(frame):
                self._send_packet(payload)

    def _send_packet(self, payload: bytes) -> None:
        header = struct.pack("!BBHII", 0x80, (0x80 if self._marker else 0) | self.plan.payload_type,
                             self._seq, self._timestamp, self._ssrc)
        packet = header + payload
        if self._srtp_out is not None:
            packet = self._srtp_out.protect(packet)
        self._marker = False
        self._seq = (self._seq + 1) & 0xFFFF
        self._timestamp = (self._timestamp + self.stream.packet_ticks) & 0xFFFFFFFF
        if self._transport is not None and self._remote is not None:
            self._transport.sendto(packet, self._remote)
            self.packets_out += 1
            self.bytes_out += len(packet)

    # ---- reading ------------------------------------------------------------------------------
    def stats(self) -> dict:
        return {"packets_in": self.packets_in, "packets_out": self.packets_out, "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out, "lost_in": self.jitter.lost, "late_in": self.jitter.late,
                "dropped_in": self.dropped, "concealed_ms": int(self.concealed_ms),
                "silence_filled_ms": int(self.filled_ms),
                "jitter_in_ms": round(self.jitter_ts * 1000 / self.stream.clock, 1), "dtmf_keys": self.dtmf.keys,
                "remote": f"{self._remote[0]}:{self._remote[1]}" if self._remote else None}


def _unspecified(host: str) -> bool:
    return host in ("0.0.0.0", "::")
