"""A video jitter buffer that gives up on a lost packet.

aiortc's video ``JitterBuffer`` (capacity 512) emits frames strictly in sequence order: one
missing packet blocks every later frame until the lost packet arrives or 512 more packets have
piled up. aiortc NACKs a gap once (when it appears) and never again, and a sender may decline a
retransmission (Chrome budgets them against its bandwidth estimate), so an unrecovered loss
freezes the picture for 512 packets — tens of seconds at the seed's 1 fps — and PLI cannot help
because the keyframe it brings queues behind the hole.

:class:`VideoJitterBuffer` is that buffer plus one rule: when packets are missing (per the
receiver's NACK generator) and no frame has come out for ``max_wait_s`` since the hole was first
seen, the frames around the hole are dropped, the buffer restarts at the next frame boundary and
``add`` reports ``pli_flag=True`` so the receiver asks for a keyframe (RFC 4585 §6.3.1).
"""

from __future__ import annotations

import time
from typing import Any

from aiortc.jitterbuffer import JitterBuffer

MAX_WAIT_S = 0.35  # a NACK round trip (aiortc NACKs at once) plus the sender's pacing


class VideoJitterBuffer(JitterBuffer):
    def __init__(self, nack_generator: Any, *, capacity: int = 512, max_wait_s: float = MAX_WAIT_S) -> None:
        super().__init__(capacity=capacity, is_video=True)
        self._nack = nack_generator
        self.max_wait_s = max_wait_s
        self._hole_since: float | None = None
        self.skips = 0             # holes given up on
        self.skipped_packets = 0   # buffered packets dropped with them
        self.frames_out = 0        # encoded frames handed to the decoder

    def add(self, packet: Any) -> tuple[bool, Any]:
        pli_flag, frame = super().add(packet)
        if frame is not None:
            self.frames_out += 1
            self._hole_since = None
            return pli_flag, frame
        if not self._nack.missing:
            self._hole_since = None
            return pli_flag, frame
        now = time.monotonic()
        if self._hole_since is None:
            self._hole_since = now
        elif now - self._hole_since >= self.max_wait_s:
            self._hole_since = None
            if self._skip_hole((packet.sequence_number - self._origin) & 0xFFFF):
                self.skips += 1
                frame = self._remove_frame(packet.sequence_number)
                self.frames_out += frame is not None
                return True, frame
        return pli_flag, frame

    def _skip_hole(self, newest: int) -> bool:
        """Drop from the origin through the frame after the first hole (``newest``: offset of the
        latest packet from the origin); False if no hole blocks anything."""
        cap, origin, slots = self._capacity, self._origin, self._packets
        if origin is None or newest >= cap:
            return False
        span = newest + 1
        hole = next((i for i in range(span) if slots[(origin + i) % cap] is None), None)
        if hole is None:
            return False
        after = next((i for i in range(hole + 1, span) if slots[(origin + i) % cap] is not None), None)
        if after is None:
            return False  # nothing waits behind the hole
        ts = slots[(origin + after) % cap].timestamp
        end = after
        while end < span:
            p = slots[(origin + end) % cap]
            if p is not None and p.timestamp != ts:
                break
            end += 1
        self.skipped_packets += sum(1 for i in range(end) if slots[(origin + i) % cap] is not None)
        self.remove(end)
        return True
