"""Opus with in-band FEC both ways, on PyAV's bundled libopus.

Receive: aiortc decodes Opus with FFmpeg's libopus wrapper, which has no FEC and never learns
about losses (so no PLC either), behind a 16-packet jitter buffer that stalls on a gap and keeps
4 packets (80 ms) prefetched. :class:`OpusReceiveBuffer` takes the jitter buffer's place in the
server's audio ``RTCRtpReceiver`` (aiortc_patches/rtp_receiver.py) and decodes on the event loop
through ctypes:

* in-order packets are decoded at once (no prefetch: 0 ms added latency);
* a gap waits for reordered packets for at most ``reorder_packets`` (2 → 40 ms) or
  ``reorder_s`` (60 ms), then the missing audio is concealed: the last missing 20 ms comes from
  the *next* packet's LBRR data (``opus_decode(next, decode_fec=1)``) when it carries any, the rest
  (or all of it, without LBRR) is libopus PLC (``opus_decode(NULL)``). The stream stays sample
  continuous: every RTP timestamp step becomes exactly that much audio (capped at 1 s per gap);
* packets older than what was already played (or concealed) are dropped and counted;
* non-Opus payloads (PCMU/PCMA) go to aiortc's own jitter buffer and decoder thread unchanged.

Frames are mono ``s16`` at the track's configured rate (48 kHz by default, or whatever
:func:`configure_track` asked for, e.g. the engine's 24 kHz so no resampling is needed later),
queued for ``track.recv()`` or, with a ``sink``, handed to it as ``bytes`` (what ``InboundAudio`` does).

Send: :class:`OpusSendEncoder` encodes the server's 24 kHz PCM straight to Opus packets with the
same ctypes libopus (mono 32 kbps ``voip``, complexity 5 unless ``serve --opus-complexity`` says
otherwise, LBRR on, 10 % expected loss), so
:class:`.audio_out.OutboundAudioTrack` hands aiortc finished packets (no resampler, no audio-level
loop, no executor hop per frame) and repeats one cached packet while it has nothing to say.
:class:`FecOpusEncoder` (the Opus encoder of the server's RTP senders, aiortc_patches/rtp_sender.py)
keeps the same settings for any track that still gives aiortc raw frames.
"""

from __future__ import annotations

import asyncio
import ctypes
import fractions
import glob
import os
from dataclasses import dataclass
from typing import Any

import av
from aiortc.codecs.opus import SAMPLE_RATE as OPUS_RATE
from aiortc.codecs.opus import SAMPLES_PER_FRAME, TIME_BASE, OpusEncoder
from aiortc.jitterbuffer import JitterBuffer
from .rtp_seq import SeqUnwrapper

SEND_BITRATE = 32000
SEND_PACKET_LOSS_PERCENT = 10
# libopus complexity (FFmpeg "compression_level"). LBRR costs SILK encoding time: at the default
# 10, mono 32 kbps + FEC encodes in ~1.4x the time of aiortc's 96 kbps stereo CELT; at 5 (what
# libwebrtc uses on mobile) it is on par with it. Speech at 32 kbps does not need more.
SEND_COMPLEXITY = 5
VALID_RATES = (8000, 12000, 16000, 24000, 48000)
MAX_FRAME_MS = 120
LATE_RUN_RESYNC = 10  # this many "late" packets in a row means the sequence jumped back

_NOTHING: tuple[bool, None] = (False, None)
_lib: ctypes.CDLL | None = None


def opus_library() -> ctypes.CDLL:
    """PyAV's bundled libopus (``av.libs/libopus-*.so*``), with prototypes set."""
    global _lib
    if _lib is not None:
        return _lib
    base = os.path.dirname(av.__file__)
    candidates = sorted(glob.glob(os.path.join(base, os.pardir, "av.libs", "libopus-*.so*")))
    candidates += sorted(glob.glob(os.path.join(base, ".dylibs", "libopus*.dylib")))
    if not candidates:
        raise RuntimeError("PyAV's bundled libopus was not found (av.libs/libopus-*.so)")
    lib = ctypes.CDLL(os.path.realpath(candidates[0]))
    vp, cp, i32 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32
    lib.opus_decoder_get_size.argtypes = [ctypes.c_int]
    lib.opus_decoder_get_size.restype = ctypes.c_int
    lib.opus_decoder_init.argtypes = [vp, i32, ctypes.c_int]
    lib.opus_decoder_init.restype = ctypes.c_int
    lib.opus_decode.argtypes = [vp, cp, i32, vp, ctypes.c_int, ctypes.c_int]
    lib.opus_decode.restype = ctypes.c_int
    lib.opus_decoder_get_nb_samples.argtypes = [vp, cp, i32]
    lib.opus_decoder_get_nb_samples.restype = ctypes.c_int
    lib.opus_packet_has_lbrr.argtypes = [cp, i32]
    lib.opus_packet_has_lbrr.restype = ctypes.c_int
    lib.opus_get_version_string.restype = ctypes.c_char_p
    lib.opus_encoder_get_size.argtypes = [ctypes.c_int]
    lib.opus_encoder_get_size.restype = ctypes.c_int
    lib.opus_encoder_init.argtypes = [vp, i32, ctypes.c_int, ctypes.c_int]
    lib.opus_encoder_init.restype = ctypes.c_int
    lib.opus_encode.argtypes = [vp, cp, ctypes.c_int, vp, i32]
    lib.opus_encode.restype = i32
    lib.opus_encoder_ctl.restype = ctypes.c_int  # variadic: arguments passed as explicit c_int / pointers
    _lib = lib
    return lib


class OpusDecoder:
    """A libopus decoder whose state lives in a Python-owned buffer (freed with the object)."""

    __slots__ = ("rate", "channels", "_mem", "ptr", "_decode", "_nb_samples", "_has_lbrr")

    def __init__(self, rate: int = OPUS_RATE, channels: int = 1) -> None:
        if rate not in VALID_RATES:
            raise ValueError(f"Opus decodes at {VALID_RATES}, not {rate}")
        lib = opus_library()
        self.rate = rate
        self.channels = channels
        self._mem = ctypes.create_string_buffer(lib.opus_decoder_get_size(channels))
        self.ptr = ctypes.addressof(self._mem)
        err = lib.opus_decoder_init(self.ptr, rate, channels)
        if err != 0:
            raise RuntimeError(f"opus_decoder_init failed ({err})")
        self._decode = lib.opus_decode
        self._nb_samples = lib.opus_decoder_get_nb_samples
        self._has_lbrr = lib.opus_packet_has_lbrr

    def samples(self, payload: bytes) -> int:
        """Samples per channel in ``payload`` at this decoder's rate (< 0: invalid packet)."""
        return self._nb_samples(self.ptr, payload, len(payload))

    def has_lbrr(self, payload: bytes) -> bool:
        return self._has_lbrr(payload, len(payload)) > 0

    def decode_into(self, payload: bytes | None, out_ptr: int, frame_size: int, fec: int = 0) -> int:
        """Decode into ``out_ptr`` (int16 samples). ``payload=None`` is PLC; ``fec=1`` decodes the
        previous frame from ``payload``'s LBRR data. Returns samples per channel or < 0."""
        if payload is None:
            return self._decode(self.ptr, None, 0, out_ptr, frame_size, 0)
        return self._decode(self.ptr, payload, len(payload), out_ptr, frame_size, fec)

    def decode(self, payload: bytes | None, frame_size: int, fec: int = 0) -> bytes:
        """Convenience (tests, tools): decode to bytes."""
        buf = ctypes.create_string_buffer(frame_size * 2 * self.channels)
        n = self.decode_into(payload, ctypes.addressof(buf), frame_size, fec)
        if n < 0:
            raise ValueError(f"opus_decode failed ({n})")
        return buf.raw[: n * 2 * self.channels]


@dataclass
class OpusReceiveStats:
    packets: int = 0             # Opus packets handed to the buffer
    decoded: int = 0             # frames decoded from their own packet
    fec_frames: int = 0          # lost frames recovered from the next packet's LBRR
    plc_frames: int = 0          # lost audio synthesised by PLC (frames of any size)
    lost_packets: int = 0        # sequence numbers concealed (FEC or PLC)
    concealed_samples: int = 0   # output samples that came from FEC or PLC
    samples: int = 0             # every output sample (decoded + concealed)
    late: int = 0                # arrived after their slot was concealed/played
    duplicates: int = 0
    reordered: int = 0           # arrived after a later packet but still in time
    errors: int = 0              # undecodable packets (replaced by PLC)
    padding: int = 0             # empty payloads
    resyncs: int = 0             # sequence jumps treated as a new stream


def configure_track(track: Any, sample_rate: int, sink: Any = None) -> None:
    """Ask for ``sample_rate`` mono output on a remote audio track served by
    :class:`OpusReceiveBuffer` (before its first packet). No-op for other tracks.

    With ``sink`` (a callable taking ``bytes``), the buffer hands it the decoded PCM16 of each
    frame directly, synchronously, instead of queueing ``av.AudioFrame``s for ``track.recv()``."""
    if sample_rate not in VALID_RATES:
        raise ValueError(f"Opus decodes at {VALID_RATES}, not {sample_rate}")
    track._or_opus_rate = sample_rate
    track._or_pcm_sink = sink


def track_stats(track: Any) -> OpusReceiveStats | None:
    """The receive stats of the Opus path feeding ``track`` (None until its first packet)."""
    return getattr(track, "_or_opus_stats", None)


class OpusReceiveBuffer:
    """Drop-in for aiortc's audio ``JitterBuffer``: ``add(packet)`` returns ``(False, None)`` for
    Opus (it decodes and delivers frames itself) and defers to a real JitterBuffer otherwise."""

    def __init__(self, receiver: Any, *, reorder_packets: int = 2, reorder_s: float = 0.06,
                 max_conceal_s: float = 1.0, resync_packets: int = 3000) -> None:
        self._receiver = receiver
        self._codecs: dict[int, Any] = receiver._RTCRtpReceiver__codecs  # filled by receive()
        self._fallback = JitterBuffer(capacity=16, prefetch=4)
        self._opus_pt = -1
        self.reorder_packets = max(1, reorder_packets)
        self.reorder_s = reorder_s
        self.max_conceal_48k = int(max_conceal_s * OPUS_RATE)
        self.resync_packets = resync_packets
        self.stats = OpusReceiveStats()
        self._dec: OpusDecoder | None = None
        self._queue: asyncio.Queue | None = None
        self._rate = OPUS_RATE
        self._ratio = 1           # 48 kHz RTP clock units per output sample
        self._time_base = TIME_BASE
        self._pts = 0
        self._seq = SeqUnwrapper()
        self._next = 0            # next extended sequence number to play
        self._next_ts: int | None = None  # RTP timestamp where the next packet's audio starts
        self._last_n = SAMPLES_PER_FRAME  # output samples of the last frame
        self._held: dict[int, Any] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._ssrc = -1
        self._late_run = 0
        self._sink: Any = None
        self._pcm: Any = None
        self._pcm_ptr = 0

    # ---- aiortc JitterBuffer interface ---------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self._fallback.capacity

    def add(self, packet: Any) -> tuple[bool, Any]:
        if packet.payload_type != self._opus_pt:
            codec = self._codecs.get(packet.payload_type)
            if codec is None or codec.mimeType.lower() != "audio/opus":
                return self._fallback.add(packet)
            self._opus_pt = packet.payload_type
        self._on_packet(packet)
        return _NOTHING

    # ---- sequencing ----------------------------------------------------------------------------
    def _on_packet(self, packet: Any) -> None:
        self.stats.packets += 1
        seq = packet.sequence_number
        last = self._seq.last_seq
        if last < 0 or packet.ssrc != self._ssrc:
            if last < 0 and not self._open():
                return
            if last >= 0:  # a new SSRC: the sender restarted its stream
                self._restart()
            self._ssrc = packet.ssrc
            ext = self._next = self._seq.reset(seq)
        else:
            ext = self._seq.unwrap(seq)
        nxt = self._next
        if ext == nxt:
            self._late_run = 0
            self._play(packet)
            self._next = nxt + 1
            if self._held:  # this one filled a gap in time
                self.stats.reordered += 1
                self._drain()
            return
        if ext < nxt:
            self._late_run += 1
            if self._late_run < LATE_RUN_RESYNC:
                self.stats.late += 1
                return
            self._restart()  # same SSRC, this many "late" in a row: the sequence jumped back
            self._seq.reset(seq)
            self._play(packet)
            self._next = seq + 1
            return
        self._late_run = 0
        if ext - nxt > self.resync_packets:  # a very long outage or a jump: start over there
            self._restart()
            self._play(packet)
            self._next = ext + 1
            return
        held = self._held
        if ext in held:
            self.stats.duplicates += 1
            return
        held[ext] = packet
        if len(held) >= self.reorder_packets:
            self._give_up()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.reorder_s, self._on_timer)

    def _restart(self) -> None:
        self.stats.resyncs += 1
        self._late_run = 0
        self._release_held()
        self._next_ts = None

    def _drain(self) -> None:
        """Play held packets that are now in order; give up on the next gap if it is due."""
        held = self._held
        while True:
            packet = held.pop(self._next, None)
            if packet is None:
                break
            self._play(packet)
            self._next += 1
        if not held:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        elif len(held) >= self.reorder_packets:
            self._give_up()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.reorder_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._held:
            self._give_up()

    def _give_up(self) -> None:
        """Stop waiting for the missing packet(s) before the first held one: conceal them."""
        first = min(self._held)
        packet = self._held.pop(first)
        self._conceal(first - self._next, packet)
        self._play(packet)
        self._next = first + 1
        self._drain()

    def _release_held(self) -> None:
        for ext in sorted(self._held):
            self._play(self._held[ext])
        self._held.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ---- decoding ------------------------------------------------------------------------------
    def _open(self) -> bool:
        track = self._receiver._track
        if track is None:
            return False
        rate = getattr(track, "_or_opus_rate", OPUS_RATE)
        self._rate = rate
        self._ratio = OPUS_RATE // rate
        self._time_base = fractions.Fraction(1, rate)
        self._last_n = SAMPLES_PER_FRAME // self._ratio
        self._dec = OpusDecoder(rate, 1)
        self._queue = track._queue
        self._sink = getattr(track, "_or_pcm_sink", None)
        if self._sink is not None:
            self._pcm = ctypes.create_string_buffer(rate * MAX_FRAME_MS // 1000 * 2)
            self._pcm_ptr = ctypes.addressof(self._pcm)
        track._or_opus_stats = self.stats
        return True

    def _out(self, payload: bytes | None, n: int, fec: int = 0) -> bool:
        """Decode ``n`` samples from ``payload`` (None: PLC; ``fec=1``: its LBRR) and deliver them."""
        sink = self._sink
        if sink is None:
            frame = self._new_frame(n)
            if self._dec.decode_into(payload, frame.planes[0].buffer_ptr, n, fec) != n:
                return False
            self._deliver(frame, n)
            return True
        if self._dec.decode_into(payload, self._pcm_ptr, n, fec) != n:
            return False
        self._pts += n
        self.stats.samples += n
        sink(ctypes.string_at(self._pcm_ptr, n * 2))
        return True

    def _new_frame(self, samples: int) -> av.AudioFrame:
        frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
        frame.sample_rate = self._rate
        frame.time_base = self._time_base
        frame.pts = self._pts
        return frame

    def _deliver(self, frame: av.AudioFrame, samples: int) -> None:
        self._pts += samples
        self.stats.samples += samples
        self._queue.put_nowait(frame)

    def _play(self, packet: Any) -> None:
        payload = packet.payload
        if not payload:
            self.stats.padding += 1
            return
        n = self._dec.samples(payload)
        if n <= 0 or n > self._rate * MAX_FRAME_MS // 1000:
            n = 0
        if n and self._out(payload, n):
            self.stats.decoded += 1
        else:  # corrupt: conceal its (assumed) duration instead
            self.stats.errors += 1
            n = self._last_n
            if not self._out(None, n):
                return
            self.stats.plc_frames += 1
            self.stats.concealed_samples += n
        self._last_n = n
        self._next_ts = (packet.timestamp + n * self._ratio) & 0xFFFFFFFF

    def _conceal(self, missing: int, following: Any) -> None:
        """Fill ``missing`` lost packets that end where ``following`` starts."""
        st = self.stats
        st.lost_packets += missing
        ratio = self._ratio
        gap48 = -1
        if self._next_ts is not None:
            gap48 = (following.timestamp - self._next_ts) & 0xFFFFFFFF
        if not 0 < gap48 <= missing * OPUS_RATE * MAX_FRAME_MS // 1000:
            gap48 = missing * self._last_n * ratio
        gap48 = min(gap48, self.max_conceal_48k)
        quantum = self._rate // 400  # 2.5 ms: the unit of Opus frame sizes
        gap = (gap48 // ratio) // quantum * quantum
        if gap <= 0:
            return
        dec = self._dec
        payload = following.payload
        fec_n = 0
        if payload and dec.has_lbrr(payload):
            nb = dec.samples(payload)
            if nb > 0:
                fec_n = min(gap, nb)
        plc_left = gap - fec_n
        step = max(quantum, min(self._last_n, self._rate * MAX_FRAME_MS // 1000))
        while plc_left > 0:
            n = min(step, plc_left)
            if not self._out(None, n):
                break
            st.plc_frames += 1
            st.concealed_samples += n
            plc_left -= n
        if fec_n and self._out(payload, fec_n, 1):
            st.fec_frames += 1
            st.concealed_samples += fec_n


# libopus encoder CTL requests (opus_defines.h)
OPUS_APPLICATION_VOIP = 2048
_SET_BITRATE, _GET_BITRATE = 4002, 4003
_SET_VBR, _GET_VBR = 4006, 4007
_SET_COMPLEXITY, _GET_COMPLEXITY = 4010, 4011
_SET_INBAND_FEC, _GET_INBAND_FEC = 4012, 4013
_SET_PACKET_LOSS_PERC, _GET_PACKET_LOSS_PERC = 4014, 4015
_SET_DTX, _GET_DTX = 4016, 4017
_RESET_STATE = 4028
MAX_PACKET_BYTES = 1500
# Digital silence this many frames in a row is encoded for real (so the encoder's state settles to
# what the receiver's decoder has after those frames); after that the last such packet is repeated.
SILENCE_HANGOVER_FRAMES = 5


class OpusSendEncoder:
    """A mono libopus encoder (state in a Python-owned buffer) with the send settings above.

    :meth:`encode` takes one frame of PCM16 at ``rate`` and returns the Opus packet. ctypes drops
    the GIL during ``opus_encode``. :meth:`encode_frame` is what the outbound track calls: it skips
    libopus for digital silence after :data:`SILENCE_HANGOVER_FRAMES` encoded silent frames and
    returns the packet the encoder made for the last of them (identical bytes, ~ 3-20 bytes)."""

    __slots__ = ("rate", "frame_samples", "_mem", "ptr", "_out", "_out_ptr", "_encode", "_silence",
                 "_silent_run", "_cached", "frames_encoded", "silence_repeats")

    def __init__(self, rate: int = 24000, frame_ms: int = 20, *, bitrate: int = SEND_BITRATE,
                 complexity: int = SEND_COMPLEXITY, fec: bool = True,
                 packet_loss: int = SEND_PACKET_LOSS_PERCENT) -> None:
        if rate not in VALID_RATES:
            raise ValueError(f"Opus encodes at {VALID_RATES}, not {rate}")
        lib = opus_library()
        self.rate = rate
        self.frame_samples = rate * frame_ms // 1000
        self._mem = ctypes.create_string_buffer(lib.opus_encoder_get_size(1))
        self.ptr = ctypes.addressof(self._mem)
        err = lib.opus_encoder_init(self.ptr, rate, 1, OPUS_APPLICATION_VOIP)
        if err != 0:
            raise RuntimeError(f"opus_encoder_init failed ({err})")
        wanted = ((_SET_BITRATE, _GET_BITRATE, bitrate), (_SET_VBR, _GET_VBR, 1),
                  (_SET_COMPLEXITY, _GET_COMPLEXITY, complexity), (_SET_INBAND_FEC, _GET_INBAND_FEC, int(fec)),
                  (_SET_PACKET_LOSS_PERC, _GET_PACKET_LOSS_PERC, packet_loss), (_SET_DTX, _GET_DTX, 0))
        for set_req, get_req, value in wanted:
            self._ctl(set_req, value)
            got = self.get(get_req)
            if got != value:  # a variadic-call ABI ctypes gets wrong would show up here
                raise RuntimeError(f"opus_encoder_ctl({set_req}) did not take: {got} != {value}")
        self._out = ctypes.create_string_buffer(MAX_PACKET_BYTES)
        self._out_ptr = ctypes.addressof(self._out)
        self._encode = lib.opus_encode
        self._silence = bytes(self.frame_samples * 2)
        self._silent_run = 0
        self._cached: bytes | None = None
        self.frames_encoded = 0
        self.silence_repeats = 0

    def _ctl(self, request: int, value: int) -> None:
        err = opus_library().opus_encoder_ctl(ctypes.c_void_p(self.ptr), ctypes.c_int(request), ctypes.c_int(value))
        if err != 0:
            raise RuntimeError(f"opus_encoder_ctl({request}, {value}) failed ({err})")

    def get(self, request: int) -> int:
        out = ctypes.c_int32(-12345)
        err = opus_library().opus_encoder_ctl(ctypes.c_void_p(self.ptr), ctypes.c_int(request), ctypes.byref(out))
        if err != 0:
            raise RuntimeError(f"opus_encoder_ctl({request}) failed ({err})")
        return out.value

    def encode(self, pcm: bytes) -> bytes:
        """One frame of mono PCM16 (``frame_samples`` samples) → one Opus packet."""
        n = self._encode(self.ptr, pcm, self.frame_samples, self._out_ptr, MAX_PACKET_BYTES)
        if n < 0:
            raise RuntimeError(f"opus_encode failed ({n})")
        self.frames_encoded += 1
        return ctypes.string_at(self._out_ptr, n)

    def encode_frame(self, pcm: bytes) -> bytes:
        """:meth:`encode`, except that settled digital silence repeats a cached packet."""
        if pcm == self._silence:
            cached = self._cached
            if cached is not None:
                self.silence_repeats += 1
                return cached
            packet = self.encode(pcm)
            self._silent_run += 1
            if self._silent_run >= SILENCE_HANGOVER_FRAMES:
                self._cached = packet
            return packet
        self._silent_run = 0
        self._cached = None
        return self.encode(pcm)

    def reset(self) -> None:
        """OPUS_RESET_STATE (a new stream)."""
        err = opus_library().opus_encoder_ctl(ctypes.c_void_p(self.ptr), ctypes.c_int(_RESET_STATE))
        if err != 0:
            raise RuntimeError(f"OPUS_RESET_STATE failed ({err})")
        self._silent_run = 0
        self._cached = None


class EncodedOpus:
    """One Opus frame encoded by :class:`OpusSendEncoder`, as :class:`.audio_out.OutboundAudioTrack`
    hands it to aiortc's sender. It is not an ``av.Frame``, so the sender only calls
    ``encoder.pack()``: :meth:`FecOpusEncoder.pack` takes it as is, and aiortc's stock
    ``OpusEncoder.pack`` reads it like an ``av.Packet`` (``bytes()``, ``pts``, ``time_base``),
    without PyAV's Fraction conversions on every frame."""

    __slots__ = ("payload", "pts")
    time_base = TIME_BASE  # the Opus RTP clock (48 kHz), whatever the coded rate

    def __init__(self, payload: bytes, pts: int) -> None:
        self.payload = payload
        self.pts = pts

    def __bytes__(self) -> bytes:
        return self.payload

    def __len__(self) -> int:
        return len(self.payload)


class FecOpusEncoder(OpusEncoder):
    """aiortc's Opus encoder with mono 32 kbps voice and libopus in-band FEC (LBRR) on."""

    def __init__(self) -> None:  # noqa: D107 - replaces the parent's codec setup
        self.codec = av.CodecContext.create("libopus", "w")
        self.codec.bit_rate = SEND_BITRATE
        self.codec.format = "s16"
        self.codec.layout = "mono"
        self.codec.sample_rate = OPUS_RATE
        self.codec.time_base = TIME_BASE
        self.codec.thread_count = 1
        self.codec.options = {"application": "voip", "fec": "1",
                              "packet_loss": str(SEND_PACKET_LOSS_PERCENT),
                              "compression_level": str(SEND_COMPLEXITY)}
        self.resampler = av.AudioResampler(format="s16", layout="mono", rate=OPUS_RATE,
                                           frame_size=SAMPLES_PER_FRAME)
        self.first_packet_pts = None

    def pack(self, packet: Any) -> tuple[list[bytes], int]:
        if type(packet) is EncodedOpus:  # already on the 48 kHz RTP clock
            return [packet.payload], packet.pts
        return super().pack(packet)


def version() -> str:
    return opus_library().opus_get_version_string().decode()
