"""RTP sequence numbers: 16-bit on the wire, unwrapped to a monotonic extended count."""

from __future__ import annotations


class SeqUnwrapper:
    """Extends 16-bit sequence numbers across wrap-around; reordered (older) packets map below the
    highest seen without moving it."""

    __slots__ = ("last_seq", "last_ext")

    def __init__(self) -> None:
        self.last_seq = -1  # -1: nothing seen yet
        self.last_ext = 0

    def reset(self, seq: int) -> int:
        """Start over at `seq` (first packet, new SSRC, sequence jump); returns its extended value."""
        self.last_seq = self.last_ext = seq
        return seq

    def unwrap(self, seq: int) -> int:
        last = self.last_seq
        if last < 0:
            return self.reset(seq)
        d = (seq - last) & 0xFFFF
        if d < 0x8000:
            ext = self.last_ext + d
            self.last_ext = ext
            self.last_seq = seq
            return ext
        return self.last_ext + d - 0x10000
