"""The receive side of an RTP audio stream: packets back in order, gaps concealed.

`JitterBuffer` releases payloads in sequence order as soon as they are contiguous (no added delay on
a clean stream); when a packet is missing it waits up to `wait_s` (or until `max_ahead` later packets
are held) for it, then gives up and reports the gap as lost samples, which the leg fills by
concealment (`conceal`). Duplicates and packets later than the play point are dropped. A jump in
timestamp without a jump in sequence (the caller stopped sending in silence, RFC 3551 §4.1) comes
out as silence, at most `max_gap` (1 s of the RTP clock). `duration` gives the time a payload covers
in RTP clock units (its length for G.711; the codec's packet size for Opus). A new SSRC, or a sequence
jump no reordering explains, restarts the buffer (a transfer or a re-INVITE may reset a stream).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MAX_GAP_SAMPLES = 8000  # 1 s at 8 kHz (the default clock): longer silences are not replayed
_RESYNC_SEQ = 1000


@dataclass
class Released:
    kind: str  # "audio" | "lost" | "silence"
    samples: int
    payload: bytes = b""


class JitterBuffer:
    def __init__(self, *, wait_s: float = 0.06, max_ahead: int = 5, max_packets: int = 64,
                 duration: Callable[[bytes], int] = len, max_gap: int = MAX_GAP_SAMPLES) -> None:
        self.duration = duration
        self.max_gap = max_gap
        self.wait_s = wait_s
        self.max_ahead = max_ahead
        self.max_packets = max_packets
        self._ssrc: int | None = None
        self._next: int | None = None  # extended sequence number of the next packet to play
        self._next_ts: int | None = None  # RTP timestamp the next packet should carry
        self._held: dict[int, tuple[int, bytes]] = {}  # extended seq -> (timestamp, payload)
        self._gap_since: float | None = None
        self.lost = 0
        self.late = 0
        self.duplicates = 0
        self.resets = 0

    def push(self, ssrc: int, seq: int, timestamp: int, payload: bytes, now: float) -> list[Released]:
        if self._ssrc != ssrc or self._next is None:
            self._restart(ssrc, seq, timestamp)
        assert self._next is not None
        diff = ((seq - self._next) + 32768) % 65536 - 32768
        if diff < 0:
            if diff < -_RESYNC_SEQ:
                self._restart(ssrc, seq, timestamp)
                diff = 0
            else:
                self.late += 1
                return []
        elif diff > _RESYNC_SEQ:
            self._restart(ssrc, seq, timestamp)
            diff = 0
        ext = self._next + diff
        if ext in self._held:
            self.duplicates += 1
            return []
        if len(self._held) >= self.max_packets:
            return []
        self._held[ext] = (timestamp & 0xFFFFFFFF, payload)
        return self._release(now)

    def tick(self, now: float) -> list[Released]:
        return self._release(now)

    def _restart(self, ssrc: int, seq: int, timestamp: int) -> None:
        if self._ssrc is not None:
            self.resets += 1
        self._ssrc = ssrc
        self._next = seq
        self._next_ts = timestamp
        self._held.clear()
        self._gap_since = None

    def _release(self, now: float) -> list[Released]:
        out: list[Released] = []
        while self._held:
            assert self._next is not None
            if self._next in self._held:
                timestamp, payload = self._held.pop(self._next)
                self._gap_since = None
                self._emit_packet(out, timestamp, payload, lost=False)
                self._next += 1
                continue
            if self._gap_since is None:
                self._gap_since = now
            if now - self._gap_since < self.wait_s and len(self._held) < self.max_ahead:
                break
            following = min(self._held)
            self.lost += following - self._next
            timestamp, payload = self._held.pop(following)
            self._next = following + 1
            self._gap_since = None
            self._emit_packet(out, timestamp, payload, lost=True)
        return out

    def _emit_packet(self, out: list[Released], timestamp: int, payload: bytes, *, lost: bool) -> None:
        if self._next_ts is not None:
            gap = (timestamp - self._next_ts) & 0xFFFFFFFF
            if 0 < gap < 0x80000000:
                out.append(Released("lost" if lost else "silence", min(gap, self.max_gap)))
        ticks = self.duration(payload)
        out.append(Released("audio", ticks, payload))
        self._next_ts = (timestamp + ticks) & 0xFFFFFFFF


class Concealer:
    """Loss concealment for 8 kHz speech: the last 20 ms repeated, fading out over 60 ms, then silence
    (in the spirit of G.711 Appendix I, without its pitch search)."""

    FADE_SAMPLES = 480

    def __init__(self) -> None:
        self._last = np.zeros(160, dtype=np.int16)
        self._run = 0  # samples concealed since the last real audio

    def heard(self, samples: np.ndarray) -> None:
        if samples.size >= 160:
            self._last = samples[-160:].copy()
        elif samples.size:
            self._last = np.concatenate([self._last, samples])[-160:]
        self._run = 0

    def conceal(self, count: int) -> np.ndarray:
        reps = -(-count // self._last.size)
        filled = np.tile(self._last, reps)[:count].astype(np.float32)
        position = self._run + np.arange(count)
        gain = np.clip(1.0 - position / self.FADE_SAMPLES, 0.0, 1.0)
        self._run += count
        return (filled * gain).astype(np.int16)
