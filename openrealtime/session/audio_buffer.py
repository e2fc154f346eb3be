"""The input audio buffer on the session's audio timeline.

Audio is canonical PCM (s16le mono 24 kHz). Positions are milliseconds since the first
audio of the session (`audio_start_ms` / `audio_end_ms` in VAD events use this clock).
The buffer holds audio not yet committed, bounded: the oldest audio is dropped past
`max_ms` (reported by `overflowed`).
"""

from __future__ import annotations

from ..audio.format import BYTES_PER_MS


class InputAudioBuffer:
    def __init__(self, max_ms: int) -> None:
        self._buf = bytearray()
        self._start_ms = 0.0  # timeline position of _buf[0]
        self.total_bytes = 0  # everything ever appended (the session clock)
        self.max_bytes = max_ms * BYTES_PER_MS
        self.overflowed = False

    @property
    def now_ms(self) -> int:
        """Session audio clock: ms of audio received so far."""
        return self.total_bytes // BYTES_PER_MS

    @property
    def start_ms(self) -> int:
        return int(self._start_ms)

    @property
    def duration_ms(self) -> int:
        return len(self._buf) // BYTES_PER_MS

    def append(self, pcm: bytes) -> None:
        self._buf += pcm
        self.total_bytes += len(pcm)
        excess = len(self._buf) - self.max_bytes
        if excess > 0:
            excess += excess % 2
            del self._buf[:excess]
            self._start_ms += excess / BYTES_PER_MS
            self.overflowed = True

    def trim_before(self, ms: int) -> None:
        """Forget audio older than `ms` on the timeline (VAD keeps only the prefix padding)."""
        cut = int((ms - self._start_ms) * BYTES_PER_MS)
        cut -= cut % 2
        if cut > 0:
            del self._buf[:cut]
            self._start_ms += cut / BYTES_PER_MS

    def take(self, start_ms: int | None = None, end_ms: int | None = None) -> bytes:
        """Remove and return [start_ms, end_ms) (default: everything); later audio stays."""
        begin = 0 if start_ms is None else max(0, int((start_ms - self._start_ms) * BYTES_PER_MS))
        end = len(self._buf) if end_ms is None else max(0, int((end_ms - self._start_ms) * BYTES_PER_MS))
        begin -= begin % 2
        end -= end % 2
        end = min(end, len(self._buf))
        audio = bytes(self._buf[begin:end])
        del self._buf[:end]
        self._start_ms += end / BYTES_PER_MS
        self.overflowed = False
        return audio

    def peek(self, start_ms: int | None = None, end_ms: int | None = None) -> bytes:
        begin = 0 if start_ms is None else max(0, int((start_ms - self._start_ms) * BYTES_PER_MS))
        end = len(self._buf) if end_ms is None else max(0, int((end_ms - self._start_ms) * BYTES_PER_MS))
        return bytes(self._buf[begin - begin % 2:end - end % 2])

    def clear(self) -> None:
        self._start_ms += len(self._buf) / BYTES_PER_MS
        self._buf.clear()
        self.overflowed = False
