"""Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01).

aiortc 1.16 parses/writes the transport-wide sequence number header extension but neither sends
feedback nor stamps its own packets. This module is the wire format and the bookkeeping; the
server's transport and sender that use it live in :mod:`.aiortc_patches` (dtls_transport.py,
rtp_sender.py).

* :class:`TwccRecorder` — receive side, one per BUNDLE transport. ``record()`` is called for
  every incoming RTP packet that carries the extension (one dict store, ~0.5 µs) and ``build()``
  turns what arrived since the last call into RTCP transport-cc feedback packets (RTPFB, FMT=15).
  Each feedback starts where the previous one ended, so a packet lost at a feedback boundary is
  reported as lost; a packet arriving after its sequence number was already reported (reordered
  across a feedback) is dropped (counted in ``late``).
* :func:`serialize_feedback` / :func:`parse_feedback` — the packet format. Arrival times are in
  microseconds; the reference time is in 64 ms units (24 bit, wraps), receive deltas in 250 µs
  units (8 bit unsigned "small" or 16 bit signed "large"). Deltas are computed against the
  *reconstructed* previous time, so rounding never accumulates (every reported arrival is within
  ±125 µs of the recorded one). Padding uses the RTCP padding bit, as libwebrtc does.
* :class:`TwccSendStats` — send side: the transport-wide sequence counter shared by every sender
  on the transport, plus counters over the feedback the peer sends about our packets.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from .rtp_seq import SeqUnwrapper

TWCC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
RTCP_RTPFB = 205
FMT_TWCC = 15

DELTA_US = 250          # receive delta unit
REFERENCE_US = 64000    # reference time unit
MAX_STATUSES = 0xFFFF   # packet status count field
MAX_RECEIVED_PER_PACKET = 400  # keeps one feedback well below the MTU (~1.2 kB at worst)
MAX_SPAN = 16384        # a feedback never reports more than this many sequence numbers

NOT_RECEIVED, SMALL_DELTA, LARGE_DELTA, NO_DELTA = 0, 1, 2, 3

_HEADER = struct.Struct("!BBHIIHHI")  # v/p/fmt, pt, length, sender, media, base, count, ref<<8|fb
_I16 = struct.Struct("!h")


# ---- serializer ------------------------------------------------------------------------------
def serialize_feedback(sender_ssrc: int, media_ssrc: int, base_seq: int, fb_pkt_count: int,
                       arrivals: Sequence[int | None]) -> bytes:
    """One transport-cc feedback packet.

    ``arrivals[i]`` is the arrival time in µs of transport sequence ``base_seq + i`` (mod 2^16),
    or None if it was not received. The first entry should be a received packet (the reference
    time is taken from the first received arrival).
    """
    n = len(arrivals)
    if not 0 < n <= MAX_STATUSES:
        raise ValueError(f"packet status count {n} out of range")
    first = next((a for a in arrivals if a is not None), None)
    if first is None:
        raise ValueError("a feedback needs at least one received packet")
    ref = first // REFERENCE_US
    prev = ref * REFERENCE_US
    statuses = bytearray(n)
    deltas = bytearray()
    for i, t in enumerate(arrivals):
        if t is None:
            continue
        ticks = (t - prev + DELTA_US // 2) // DELTA_US
        if 0 <= ticks <= 0xFF:
            statuses[i] = SMALL_DELTA
            deltas.append(ticks)
        else:
            ticks = -0x8000 if ticks < -0x8000 else 0x7FFF if ticks > 0x7FFF else ticks
            statuses[i] = LARGE_DELTA
            deltas += _I16.pack(ticks)
        prev += ticks * DELTA_US
    chunks = _encode_chunks(statuses)
    body_len = 8 + 8 + len(chunks) + len(deltas)  # ssrcs + base/count/ref/fb + chunks + deltas
    pad = -body_len % 4
    length_words = (body_len + pad) // 4
    head = _HEADER.pack(0x80 | (0x20 if pad else 0) | FMT_TWCC, RTCP_RTPFB, length_words,
                        sender_ssrc & 0xFFFFFFFF, media_ssrc & 0xFFFFFFFF, base_seq & 0xFFFF, n,
                        ((ref & 0xFFFFFF) << 8) | (fb_pkt_count & 0xFF))
    tail = bytes(pad - 1) + bytes((pad,)) if pad else b""
    return head + chunks + deltas + tail


def _encode_chunks(statuses: bytearray) -> bytes:
    """Run-length chunks for runs, one-bit vectors (14 symbols) without large deltas, else
    two-bit vectors (7 symbols). The last vector may cover past the end (the count bounds it)."""
    out = bytearray()
    n = len(statuses)
    i = 0
    while i < n:
        s = statuses[i]
        j = i + 1
        while j < n and statuses[j] == s and j - i < 0x1FFF:
            j += 1
        run = j - i
        window = statuses[i:i + 14]
        if run >= 14 or j == n:
            out += ((s << 13) | run).to_bytes(2, "big")
            i = j
        elif LARGE_DELTA not in window:
            word = 0x8000
            for k, sym in enumerate(window):
                word |= sym << (13 - k)
            out += word.to_bytes(2, "big")
            i += 14
        elif run >= 7:
            out += ((s << 13) | run).to_bytes(2, "big")
            i = j
        else:
            word = 0xC000
            for k, sym in enumerate(statuses[i:i + 7]):
                word |= sym << (12 - 2 * k)
            out += word.to_bytes(2, "big")
            i += 7
    return bytes(out)


# ---- parser ----------------------------------------------------------------------------------
@dataclass
class TwccFeedback:
    sender_ssrc: int
    media_ssrc: int
    base_seq: int
    status_count: int
    reference_time: int      # 64 ms units, 24 bit
    fb_pkt_count: int
    statuses: list[int] = field(default_factory=list)       # one symbol per sequence number
    deltas_us: list[int] = field(default_factory=list)      # one per packet with a delta

    def arrivals(self) -> list[tuple[int, int | None]]:
        """(sequence number, arrival µs or None) for every reported packet."""
        out: list[tuple[int, int | None]] = []
        t = self.reference_time * REFERENCE_US
        it = iter(self.deltas_us)
        for i, sym in enumerate(self.statuses):
            seq = (self.base_seq + i) & 0xFFFF
            if sym in (SMALL_DELTA, LARGE_DELTA):
                t += next(it)
                out.append((seq, t))
            elif sym == NO_DELTA:
                out.append((seq, t))
            else:
                out.append((seq, None))
        return out

    @property
    def received(self) -> int:
        return sum(1 for s in self.statuses if s != NOT_RECEIVED)

    @property
    def lost(self) -> int:
        return self.status_count - self.received


def parse_feedback(data: bytes, *, fci_only: bool = False) -> TwccFeedback:
    """Parse a transport-cc packet: the whole RTCP packet (header included, padding honoured)
    or, with ``fci_only``, the payload after the 4-byte header as aiortc hands it over (its RTCP
    parser already stripped the padding): sender SSRC, media SSRC, then the FCI."""
    if not fci_only:
        if len(data) < 4:
            raise ValueError("truncated RTCP header")
        b0, pt, length = struct.unpack_from("!BBH", data, 0)
        if b0 >> 6 != 2 or pt != RTCP_RTPFB or b0 & 0x1F != FMT_TWCC:
            raise ValueError("not an RTPFB FMT=15 packet")
        end = 4 + 4 * length
        if len(data) < end:
            raise ValueError("truncated transport-cc packet")
        payload = data[4:end]
        if b0 & 0x20:
            pad = payload[-1] if payload else 0
            if not 0 < pad <= len(payload):
                raise ValueError("bad RTCP padding")
            payload = payload[:-pad]
    else:
        payload = data
    if len(payload) < 16:
        raise ValueError("transport-cc packet too short")
    sender, media, base, count, ref_fb = struct.unpack_from("!IIHHI", payload, 0)
    ref = ref_fb >> 8
    if ref & 0x800000:
        ref -= 0x1000000
    fb = TwccFeedback(sender, media, base, count, ref, ref_fb & 0xFF)
    pos = 16
    statuses = fb.statuses
    while len(statuses) < count:
        if pos + 2 > len(payload):
            raise ValueError("transport-cc chunks truncated")
        word = (payload[pos] << 8) | payload[pos + 1]
        pos += 2
        left = count - len(statuses)
        if not word & 0x8000:                        # run length chunk
            sym, run = (word >> 13) & 0x3, word & 0x1FFF
            statuses.extend([sym] * min(run, left))
        elif not word & 0x4000:                      # status vector, 14 one-bit symbols
            for k in range(min(14, left)):
                statuses.append((word >> (13 - k)) & 0x1)
        else:                                        # status vector, 7 two-bit symbols
            for k in range(min(7, left)):
                statuses.append((word >> (12 - 2 * k)) & 0x3)
    for sym in statuses:
        if sym == SMALL_DELTA:
            if pos + 1 > len(payload):
                raise ValueError("transport-cc deltas truncated")
            fb.deltas_us.append(payload[pos] * DELTA_US)
            pos += 1
        elif sym == LARGE_DELTA:
            if pos + 2 > len(payload):
                raise ValueError("transport-cc deltas truncated")
            fb.deltas_us.append(_I16.unpack_from(payload, pos)[0] * DELTA_US)
            pos += 2
    return fb


# ---- receive side ----------------------------------------------------------------------------
class TwccRecorder:
    """Arrival times by transport-wide sequence number → feedback packets."""

    __slots__ = ("_pending", "_seq", "_next_base", "media_ssrc", "sender_ssrc",
                 "_fb_count", "packets", "late", "feedbacks_built", "_epoch_us")

    def __init__(self, sender_ssrc: int = 0, epoch_us: int = 0) -> None:
        self._pending: dict[int, int] = {}
        self._seq = SeqUnwrapper()
        self._next_base: int | None = None
        self.media_ssrc = 0
        self.sender_ssrc = sender_ssrc
        self._fb_count = 0
        self.packets = 0
        self.late = 0
        self.feedbacks_built = 0
        self._epoch_us = epoch_us

    def record(self, seq: int, arrival_us: int, ssrc: int) -> None:
        """Per packet: unwrap the 16-bit sequence and remember the arrival time."""
        ext = self._seq.unwrap(seq)
        nb = self._next_base
        if nb is not None and ext < nb:
            self.late += 1
            return
        self._pending[ext] = arrival_us
        self.media_ssrc = ssrc
        self.packets += 1

    @property
    def pending(self) -> int:
        return len(self._pending)

    def build(self) -> list[bytes]:
        """Feedback for everything recorded since the last call (usually one packet)."""
        pending = self._pending
        if not pending:
            return []
        self._pending = {}
        seqs = sorted(pending)
        end = seqs[-1]
        base = self._next_base if self._next_base is not None else seqs[0]
        if end - base >= MAX_SPAN:  # a jump (sender restart): do not report thousands as lost
            base = end - MAX_SPAN + 1
            seqs = [s for s in seqs if s >= base]
        self._next_base = end + 1
        epoch = self._epoch_us
        out = []
        i = 0
        while i < len(seqs):
            chunk = seqs[i:i + MAX_RECEIVED_PER_PACKET]
            i += len(chunk)
            last = chunk[-1]
            first = base
            arrivals: list[int | None] = [None] * (last - first + 1)
            for s in chunk:
                arrivals[s - first] = pending[s] - epoch
            out.append(serialize_feedback(self.sender_ssrc, self.media_ssrc, first, self._fb_count, arrivals))
            self._fb_count = (self._fb_count + 1) & 0xFF
            base = last + 1
        self.feedbacks_built += len(out)
        return out


# ---- send side -------------------------------------------------------------------------------
class TwccSendStats:
    """The transport-wide sequence counter for our outgoing packets and what the peer reports."""

    __slots__ = ("next_seq", "stamped", "feedbacks", "reported_received", "reported_lost", "parse_errors")

    def __init__(self) -> None:
        self.next_seq = 1
        self.stamped = 0
        self.feedbacks = 0
        self.reported_received = 0
        self.reported_lost = 0
        self.parse_errors = 0

    def take(self) -> int:
        seq = self.next_seq
        self.next_seq = (seq + 1) & 0xFFFF
        self.stamped += 1
        return seq

    def on_feedback(self, fci: bytes) -> TwccFeedback | None:
        try:
            fb = parse_feedback(fci, fci_only=True)
        except ValueError:
            self.parse_errors += 1
            return None
        self.feedbacks += 1
        received = fb.received
        self.reported_received += received
        self.reported_lost += fb.status_count - received
        return fb
