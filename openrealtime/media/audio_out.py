"""The server's outbound audio track.

Frames leave on a clock (20 ms), never at the producer's pace; silence when idle. The
session engine writes PCM tagged with the response/item it belongs to and can clear the
queue instantly (barge-in), or pause and resume playout (while a possible barge-in is
confirmed). The track tells a listener when a response's audio starts and when it has
fully played out, and reports how much of each item was actually played.

When the call negotiated Opus (:meth:`OutboundAudioTrack.set_send_codec`), the track encodes each
frame itself, inline (:class:`.opus_fec.OpusSendEncoder`, 24 kHz in, no resampling), and returns
:class:`.opus_fec.EncodedOpus` packets stamped on the 48 kHz RTP clock: aiortc's sender then only
packs them. Settled silence repeats one cached packet instead of running libopus. Otherwise
(PCMU/PCMA, or before negotiation) it returns ``av.AudioFrame``s for aiortc's encoders, as before.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..session.transport import ClearedAudio
from ..audio.format import BYTES_PER_MS, FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE
from .opus_fec import SEND_COMPLEXITY, EncodedOpus, OpusSendEncoder

log = logging.getLogger(__name__)

_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
OPUS_CLOCK = 48000  # the Opus RTP clock, whatever the coded rate
_OPUS_TICKS = OPUS_CLOCK // SAMPLE_RATE
_SILENCE = bytes(FRAME_BYTES)
_RESYNC_S = 0.2  # if the loop stalled longer than this, restart the clock instead of bursting


@dataclass
class _Chunk:
    pcm: bytes
    response_id: str
    item_id: str


PlayoutListener = Callable[[str, str], None]  # (event: "started"|"stopped", response_id)


class OutboundAudioTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, listener: PlayoutListener | None = None, *, max_queue_ms: int = 10 * 60 * 1000) -> None:
        super().__init__()
        self._listener = listener
        self._queue: collections.deque[_Chunk] = collections.deque()
        self._queued_bytes = 0
        self._max_queue_bytes = max_queue_ms * BYTES_PER_MS
        self._partial: dict[str, bytearray] = {}
        self._ended: set[str] = set()  # responses whose producer has finished
        self._current: str | None = None  # response currently playing
        self._played_bytes: dict[str, int] = {}  # item_id -> bytes played
        self._started_ids: set[str] = set()  # responses whose `started` was reported
        self._last_item: dict[str, str] = {}  # response_id -> item of its latest frame
        self._writing_item: dict[str, str] = {}  # response_id -> item being written
        self._start: float | None = None
        self._pts = 0
        self.frames_sent = 0
        self.frames_with_audio = 0
        self.late_frames = 0
        self.max_gap_s = 0.0  # longest interval between two frames handed to the encoder
        self.gaps_over_40ms = 0
        self._last_out: float | None = None
        self._encoder: OpusSendEncoder | None = None
        self._paused = False  # holding playout (a possible barge-in): silence goes out, the queue waits

    def set_send_codec(self, mime_type: str | None, *, complexity: int = SEND_COMPLEXITY) -> bool:
        """The codec aiortc's sender will use for this track (from the negotiated answer). For
        Opus, the track encodes and returns packets from the next frame on. Returns whether it
        does (False: frames for aiortc's own encoders)."""
        if mime_type is not None and mime_type.lower() == "audio/opus":
            if self._encoder is None:
                try:
                    self._encoder = OpusSendEncoder(SAMPLE_RATE, complexity=complexity)
                except (OSError, RuntimeError):
                    log.exception("Opus send encoder unavailable; aiortc encodes the frames")
                    return False
            return True
        self._encoder = None
        return False

    @property
    def encoder(self) -> OpusSendEncoder | None:
        return self._encoder

    # ---- producer side (event loop thread) --------------------------------------------------
    def set_listener(self, listener: PlayoutListener | None) -> None:
        self._listener = listener

    def write(self, pcm: bytes, *, response_id: str, item_id: str) -> None:
        """Queue canonical PCM for playout; split into 20 ms frames."""
        buf = self._partial.setdefault(response_id, bytearray())
        buf += pcm
        whole = len(buf) - len(buf) % FRAME_BYTES
        for off in range(0, whole, FRAME_BYTES):
            if self._queued_bytes >= self._max_queue_bytes:
                break
            self._queue.append(_Chunk(bytes(buf[off:off + FRAME_BYTES]), response_id, item_id))
            self._queued_bytes += FRAME_BYTES
        del buf[:whole]
        self._writing_item[response_id] = item_id

    def end_response(self, response_id: str, item_id: str | None = None) -> None:
        """No more audio for this response: flush the tail; `stopped` fires once drained."""
        buf = self._partial.pop(response_id, None)
        if buf:
            last_item = item_id or self._writing_item.get(response_id, "")
            self._queue.append(_Chunk(bytes(buf) + bytes(FRAME_BYTES - len(buf)), response_id, last_item))
            self._queued_bytes += FRAME_BYTES
        self._writing_item.pop(response_id, None)
        self._ended.add(response_id)
        if self._current != response_id and not any(c.response_id == response_id for c in self._queue):
            # nothing more of it will play (already drained or never queued)
            if response_id in self._started_ids:
                self._emit("stopped", response_id)
            self._ended.discard(response_id)

    def pause(self) -> None:
        """Hold playout where it is: silence goes out and nothing more counts as played until `resume`
        (or `clear`). No events: the response is still playing as far as the client knows."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    def clear(self) -> ClearedAudio | None:
        """Drop every unplayed frame now. Returns what was interrupted, if anything was playing."""
        self._paused = False
        playing = self._current
        head = self._queue[0] if self._queue else None
        dropped = self._queued_bytes + sum(len(b) for b in self._partial.values())
        self._queue.clear()
        self._queued_bytes = 0
        self._partial.clear()
        self._writing_item.clear()
        self._ended.clear()
        self._current = None
        rid = playing or (head.response_id if head else None)
        if rid is None:
            return None
        item = self._last_item.get(rid) or (head.item_id if head else "")
        return ClearedAudio(
            response_id=rid,
            item_id=item,
            played_ms=self.played_ms(item),
            dropped_ms=dropped // BYTES_PER_MS,
        )

    def played_ms(self, item_id: str) -> int:
        return self._played_bytes.get(item_id, 0) // BYTES_PER_MS

    @property
    def queued_ms(self) -> int:
        return self._queued_bytes // BYTES_PER_MS

    @property
    def is_playing(self) -> bool:
        return self._current is not None or bool(self._queue)

    # ---- consumer side: aiortc's sender calls recv() ---------------------------------------
    async def recv(self) -> av.AudioFrame | EncodedOpus:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._pts += FRAME_SAMPLES
            due = self._start + self._pts / SAMPLE_RATE
            delay = due - now
            if delay > 0:
                await asyncio.sleep(delay)
            elif -delay > _RESYNC_S:
                self.late_frames += 1
                self._start = now - self._pts / SAMPLE_RATE
        payload = self.next_frame()
        encoder = self._encoder
        if encoder is not None:
            frame = EncodedOpus(encoder.encode_frame(payload), self._pts * _OPUS_TICKS)
        else:
            frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
            frame.planes[0].update(payload)
            frame.pts = self._pts
            frame.sample_rate = SAMPLE_RATE
            frame.time_base = _TIME_BASE
        self.frames_sent += 1
        out_at = time.monotonic()
        if self._last_out is not None:
            gap = out_at - self._last_out
            self.max_gap_s = max(self.max_gap_s, gap)
            if gap > 0.040:
                self.gaps_over_40ms += 1
        self._last_out = out_at
        return frame

    def reset_pacing_stats(self) -> None:
        self.max_gap_s = 0.0
        self.gaps_over_40ms = 0

    def next_frame(self) -> bytes:
        """The next 20 ms of PCM to send (silence when idle or paused); drives the playout events."""
        if self._paused:
            return _SILENCE
        if not self._queue:
            if self._current is not None and self._current in self._ended:
                done = self._current
                self._current = None
                self._ended.discard(done)
                self._emit("stopped", done)
            return _SILENCE
        chunk = self._queue.popleft()
        self._queued_bytes -= FRAME_BYTES
        if chunk.response_id != self._current:
            previous = self._current
            if previous is not None and previous in self._ended:
                self._ended.discard(previous)
                self._emit("stopped", previous)
            self._current = chunk.response_id
            if chunk.response_id not in self._started_ids:
                self._started_ids.add(chunk.response_id)
                self._emit("started", chunk.response_id)
        self._last_item[chunk.response_id] = chunk.item_id
        self._played_bytes[chunk.item_id] = self._played_bytes.get(chunk.item_id, 0) + FRAME_BYTES
        self.frames_with_audio += 1
        return chunk.pcm

    def _emit(self, event: str, response_id: str) -> None:
        if self._listener is not None:
            self._listener(event, response_id)

