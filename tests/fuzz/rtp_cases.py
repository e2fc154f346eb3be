"""RTP and RTCP for fuzzing, as they arrive after SRTP: RTP with odd headers, header extensions (the
transport-wide sequence number and MID among them), padding and CSRCs, carrying Opus and H.264 payloads
that reach the decoders (real encoder output, mutated); RTCP compounds of SR/RR/SDES/BYE/APP, NACK,
transport-cc feedback, PLI/FIR/REMB and XR with wrong counts and lengths."""

from __future__ import annotations

import fractions
import random
import struct
from dataclasses import dataclass, field
from functools import lru_cache

from .core import INTERESTING_INTS, choice, mutate_bytes

RTCP_SR, RTCP_RR, RTCP_SDES, RTCP_BYE, RTCP_APP, RTCP_RTPFB, RTCP_PSFB, RTCP_XR = range(200, 208)


@dataclass
class MediaContext:
    """What the packets are aimed at: the call's negotiated payload types, SSRCs and extension ids."""

    audio_pt: int = 111
    video_pt: int = 102
    other_pts: tuple[int, ...] = (0, 8)
    audio_ssrc: int = 1111
    video_ssrc: int = 2222
    our_ssrcs: tuple[int, ...] = (3333,)  # the server's senders (RTCP feedback is about them)
    twcc_id: int = 3
    mid_id: int = 1
    mids: tuple[str, ...] = ("0", "1", "2")
    seq: dict[int, int] = field(default_factory=dict)
    ts: dict[int, int] = field(default_factory=dict)
    frame: int = -1  # the last H.264 frame sent whole (a keyframe, then P frames, cycling)


# ---- payloads that reach the decoders --------------------------------------------------------------------
@lru_cache(maxsize=1)
def opus_seeds() -> tuple[bytes, ...]:
    """Real Opus packets (libopus through openrealtime's encoder: speech-like noise and silence, with LBRR)."""
    import numpy as np

    from openrealtime.media.opus_fec import OpusSendEncoder

    enc = OpusSendEncoder(24000)
    rng = np.random.default_rng(7)
    out = []
    for n in range(12):
        pcm = (rng.normal(0, 3000 if n % 4 else 0, enc.frame_samples)).astype("<i2").tobytes()
        out.append(enc.encode(pcm))
    return tuple(out)


@lru_cache(maxsize=1)
def h264_frames() -> tuple[tuple[bytes, ...], ...]:
    """Real H.264 RTP payloads per frame (libx264 through aiortc's packetizer: a keyframe with SPS/PPS in
    STAP-A and FU-A fragments, then P frames)."""
    import av
    import numpy as np
    from aiortc.codecs.h264 import H264Encoder

    enc = H264Encoder()
    out = []
    for n in range(4):
        image = (np.arange(96 * 128 * 3, dtype=np.uint32).reshape(96, 128, 3) * (n + 3) % 251).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = n * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        payloads, _ = enc.encode(frame, force_keyframe=n == 0)
        out.append(tuple(payloads))
    return tuple(out)


def h264_seeds() -> tuple[bytes, ...]:
    return tuple(p for frame in h264_frames() for p in frame)


def opus_payload(rng: random.Random) -> bytes:
    seed = choice(rng, opus_seeds())
    op = rng.randrange(8)
    if op == 0:
        return seed
    if op == 1:  # every TOC: mode, bandwidth, frame size, stereo, frame-count code
        return bytes([rng.randrange(256)]) + seed[1:]
    if op == 2:  # code 3 (several frames) with an odd count byte, VBR and padding flags
        return bytes([(seed[0] & 0xFC) | 3, rng.randrange(256)]) + rng.randbytes(rng.randrange(64))
    if op == 3:
        return seed[:rng.randrange(len(seed) + 1)]
    if op == 4:
        return b""
    if op == 5:
        return rng.randbytes(rng.choice((1, 2, 3, 40, 400, 1400)))
    return mutate_bytes(rng, seed, max_len=1500)


def h264_payload(rng: random.Random) -> bytes:
    seed = choice(rng, h264_seeds())
    op = rng.randrange(9)
    if op == 0:
        return seed
    if op == 1:  # another NAL type (0-31: slices, SPS/PPS, STAP-A/B, MTAP, FU-A/B, reserved)
        return bytes([(seed[0] & 0xE0) | rng.randrange(32)]) + seed[1:]
    if op == 2:  # FU-A with odd start/end bits
        return bytes([(seed[0] & 0xE0) | 28, rng.randrange(256)]) + seed[2:]
    if op == 3:  # STAP-A with lengths that overrun or underrun
        sizes = [rng.choice((0, 1, 2, 50, 65535)) for _ in range(rng.randint(1, 4))]
        body = b"".join(struct.pack("!H", s) + rng.randbytes(min(s, rng.randrange(64))) for s in sizes)
        return bytes([24]) + body
    if op == 4:
        return seed[:rng.randrange(len(seed) + 1)]
    if op == 5:
        return b""
    if op == 6:
        return rng.randbytes(rng.choice((1, 2, 10, 300, 1200)))
    return mutate_bytes(rng, seed, max_len=1500)


# ---- RTP ----------------------------------------------------------------------------------------------
def _extensions(rng: random.Random, ctx: MediaContext) -> bytes:
    """A one-byte (0xBEDE) or two-byte (0x100x) header extension block, mostly the ones negotiated."""
    items = []
    for _ in range(rng.randrange(4)):
        kind = rng.randrange(4)
        if kind == 0:
            items.append((ctx.twcc_id, struct.pack("!H", rng.randrange(65536))))
        elif kind == 1:
            items.append((ctx.mid_id, choice(rng, ctx.mids).encode() if rng.random() < 0.7 else rng.randbytes(3)))
        elif kind == 2:
            items.append((rng.randrange(16), rng.randbytes(rng.randint(1, 16))))
        else:
            items.append((rng.choice((0, 15)), b""))
    if rng.random() < 0.8:
        body = b"".join(bytes([(i << 4) | (max(1, len(v)) - 1)]) + (v or b"\0") for i, v in items)
        profile = 0xBEDE
    else:
        body = b"".join(bytes([i, len(v)]) + v for i, v in items)
        profile = 0x1000 | rng.randrange(16)
    body += bytes(-len(body) % 4)
    words = len(body) // 4 if rng.random() < 0.9 else rng.choice((0, 1, 255, 65535))
    return struct.pack("!HH", profile, words) + body


def h264_frame_packets(rng: random.Random, ctx: MediaContext) -> list[bytes]:
    """A whole real frame in order (so the depacketizer and decoder get complete access units), with one
    payload sometimes mutated or dropped."""
    frames = h264_frames()
    ctx.frame = (ctx.frame + 1) % len(frames) if rng.random() < 0.9 else rng.randrange(len(frames))
    payloads = list(frames[ctx.frame])
    if rng.random() < 0.3:
        i = rng.randrange(len(payloads))
        if rng.random() < 0.3:
            del payloads[i]
        else:
            payloads[i] = mutate_bytes(rng, payloads[i], max_len=1500)
    ssrc = ctx.video_ssrc
    ts = ctx.ts[ssrc] = (ctx.ts.get(ssrc, 0) + 3000) & 0xFFFFFFFF
    out = []
    for n, payload in enumerate(payloads):
        seq = ctx.seq[ssrc] = (ctx.seq.get(ssrc, 0) + 1) & 0xFFFF
        marker = 0x80 if n == len(payloads) - 1 else 0
        out.append(struct.pack("!BBHII", 0x80, marker | ctx.video_pt, seq, ts, ssrc) + payload)
    return out


def rtp_packet(rng: random.Random, ctx: MediaContext) -> bytes:
    kind = rng.randrange(10)
    if kind < 5:
        pt, ssrc, payload, step = ctx.audio_pt, ctx.audio_ssrc, opus_payload(rng), 960
    elif kind < 8:
        pt, ssrc, payload, step = ctx.video_pt, ctx.video_ssrc, h264_payload(rng), 3000
    else:
        pt = choice(rng, ctx.other_pts + (rng.randrange(128),))
        ssrc, payload, step = rng.choice((ctx.audio_ssrc, rng.getrandbits(32))), rng.randbytes(rng.randrange(200)), 160
    if rng.random() < 0.05:
        ssrc = choice(rng, INTERESTING_INTS) & 0xFFFFFFFF
    seq = ctx.seq.get(ssrc, rng.randrange(65536))
    r = rng.random()
    seq = (seq + (1 if r < 0.7 else rng.choice((-1, 0, 2, 3, 17, -500, 3000, 32768)))) & 0xFFFF
    ctx.seq[ssrc] = seq
    ts = (ctx.ts.get(ssrc, rng.getrandbits(32)) + (step if r < 0.8 else rng.getrandbits(32))) & 0xFFFFFFFF
    ctx.ts[ssrc] = ts
    csrcs = [rng.getrandbits(32) for _ in range(rng.choice((0, 0, 0, 1, 15)))]
    extension = _extensions(rng, ctx) if rng.random() < 0.6 else b""
    padding = b""
    if rng.random() < 0.05:
        pad = rng.choice((0, 1, 4, 255))
        padding = bytes(max(0, pad - 1)) + bytes([pad]) if rng.random() < 0.7 else bytes([pad])
    marker = rng.random() < 0.3
    b0 = 0x80 | (0x20 if padding else 0) | (0x10 if extension else 0) | len(csrcs)
    if rng.random() < 0.03:
        b0 = rng.randrange(256)
    header = struct.pack("!BBHII", b0, (0x80 if marker else 0) | (pt & 0x7F), seq, ts, ssrc)
    data = header + b"".join(struct.pack("!I", c) for c in csrcs) + extension + payload + padding
    if rng.random() < 0.05:
        data = mutate_bytes(rng, data, max_len=1500)
    return data


# ---- RTCP ---------------------------------------------------------------------------------------------
def _rtcp(pt: int, count: int, body: bytes, rng: random.Random, padded: bool = False) -> bytes:
    body += bytes(-len(body) % 4)
    length = len(body) // 4
    if rng.random() < 0.08:
        length = rng.choice((0, 1, length - 1, length + 1, 65535)) & 0xFFFF
    return struct.pack("!BBH", 0x80 | (0x20 if padded else 0) | (count & 0x1F), pt, length) + body


def _report_blocks(rng: random.Random, ctx: MediaContext, n: int) -> bytes:
    out = b""
    for _ in range(n):
        ssrc = choice(rng, ctx.our_ssrcs + (rng.getrandbits(32),))
        out += struct.pack("!IIIIII", ssrc, rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(32),
                           rng.getrandbits(32), rng.getrandbits(32))
    return out


def _ssrc(rng: random.Random, ctx: MediaContext) -> int:
    return choice(rng, (ctx.audio_ssrc, ctx.video_ssrc) + ctx.our_ssrcs + (rng.getrandbits(32), 0))


def twcc_fci(rng: random.Random, ctx: MediaContext) -> bytes:
    """Transport-cc feedback about our packets (sender SSRC + media SSRC + FCI), valid or bent."""
    from openrealtime.media.twcc import serialize_feedback

    n = rng.choice((1, 2, 7, 14, 100, 400))
    t0 = rng.getrandbits(24) * 64000
    arrivals = [None if rng.random() < 0.2 else t0 + rng.randrange(-40000, 200000) for _ in range(n)]
    arrivals[0] = arrivals[0] or t0
    packet = serialize_feedback(_ssrc(rng, ctx), choice(rng, ctx.our_ssrcs), rng.randrange(65536),
                                rng.randrange(256), arrivals)
    fci = packet[4:]
    if rng.random() < 0.5:
        fci = mutate_bytes(rng, fci, max_len=1400)
    if rng.random() < 0.1:  # a status count far beyond the chunks
        fci = fci[:12] + struct.pack("!H", rng.choice((65535, 20000, 0))) + fci[14:]
    return fci


def rtcp_packet(rng: random.Random, ctx: MediaContext) -> bytes:
    """A compound RTCP packet of 1-4 parts."""
    parts = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(12)
        if kind == 0:  # SR
            n = rng.choice((0, 1, 2, 31))
            body = struct.pack("!IIIIII", _ssrc(rng, ctx), *(rng.getrandbits(32) for _ in range(5)))
            parts.append(_rtcp(RTCP_SR, n, body + _report_blocks(rng, ctx, min(n, rng.randrange(3))), rng))
        elif kind == 1:  # RR
            n = rng.choice((0, 1, 2, 31))
            parts.append(_rtcp(RTCP_RR, n, struct.pack("!I", _ssrc(rng, ctx)) +
                               _report_blocks(rng, ctx, n if rng.random() < 0.7 else rng.randrange(3)), rng))
        elif kind == 2:  # SDES
            chunks = b""
            for _ in range(rng.randrange(3)):
                items = b"".join(bytes([rng.randrange(9), ln]) + rng.randbytes(ln)
                                 for ln in (rng.randrange(40) for _ in range(rng.randrange(3))))
                chunks += struct.pack("!I", _ssrc(rng, ctx)) + items + b"\0" * rng.randrange(1, 5)
            parts.append(_rtcp(RTCP_SDES, rng.randrange(32), chunks, rng))
        elif kind == 3:  # BYE (not for the camera: a BYE ends that track for good, as it should)
            n = rng.randrange(4)
            body = b"".join(struct.pack("!I", rng.choice((ctx.audio_ssrc, rng.getrandbits(32))))
                            for _ in range(n))
            if rng.random() < 0.5:
                reason = rng.randbytes(rng.randrange(20))
                body += bytes([rng.choice((len(reason), 255))]) + reason
            parts.append(_rtcp(RTCP_BYE, n if rng.random() < 0.8 else 31, body, rng))
        elif kind == 4:  # APP
            parts.append(_rtcp(RTCP_APP, rng.randrange(32), struct.pack("!I", _ssrc(rng, ctx)) + b"name" +
                               rng.randbytes(rng.randrange(32)), rng))
        elif kind == 5:  # generic NACK
            pairs = b"".join(struct.pack("!HH", rng.randrange(65536), rng.randrange(65536))
                             for _ in range(rng.randrange(5)))
            parts.append(_rtcp(RTCP_RTPFB, 1, struct.pack("!II", _ssrc(rng, ctx), choice(rng, ctx.our_ssrcs)) +
                               pairs, rng))
        elif kind == 6:  # transport-cc
            parts.append(_rtcp(RTCP_RTPFB, 15, twcc_fci(rng, ctx), rng))
        elif kind == 7:  # PLI / FIR / other PSFB
            fmt = rng.choice((1, 4, 2, 3, 5, 31))
            body = struct.pack("!II", _ssrc(rng, ctx), choice(rng, ctx.our_ssrcs))
            if fmt == 4:
                body += struct.pack("!IBBH", choice(rng, ctx.our_ssrcs), rng.randrange(256), 0, 0)
            parts.append(_rtcp(RTCP_PSFB, fmt, body + rng.randbytes(rng.choice((0, 0, 3, 8))), rng))
        elif kind == 8:  # REMB
            n = rng.choice((0, 1, 2, 255))
            body = struct.pack("!II", _ssrc(rng, ctx), 0) + b"REMB" + bytes([n]) + \
                rng.randbytes(3) + b"".join(struct.pack("!I", choice(rng, ctx.our_ssrcs))
                                            for _ in range(min(n, rng.randrange(4))))
            parts.append(_rtcp(RTCP_PSFB, 15, body, rng))
        elif kind == 9:  # XR
            blocks = b"".join(bytes([rng.randrange(256), 0]) + struct.pack("!H", ln) + rng.randbytes(4 * min(ln, 4))
                              for ln in (rng.choice((0, 1, 2, 300)) for _ in range(rng.randrange(3))))
            parts.append(_rtcp(RTCP_XR, 0, struct.pack("!I", _ssrc(rng, ctx)) + blocks, rng))
        elif kind == 10:  # another RTPFB format
            parts.append(_rtcp(RTCP_RTPFB, rng.randrange(32), struct.pack("!II", _ssrc(rng, ctx),
                                                                          choice(rng, ctx.our_ssrcs)) +
                               rng.randbytes(rng.randrange(24)), rng))
        else:  # padding bit, a reserved type, or garbage
            parts.append(_rtcp(rng.choice((RTCP_RR, 199, 208, 255)), rng.randrange(32),
                               rng.randbytes(rng.randrange(40)), rng, padded=True))
    data = b"".join(parts)
    if rng.random() < 0.1:
        data = mutate_bytes(rng, data, max_len=1500)
    return data
