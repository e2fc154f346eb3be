"""A Live session's audio at its edges: the declared WebSocket formats, real-time output pacing, and the
sideband's reflection of the speech written out.

- `decode_input` / `encode_output`: the session's `audio.format` (PCM16 at 24 or 16 kHz, G.711 μ-law or
  A-law at 8 kHz) ↔ the engine's canonical PCM16 24 kHz.
- `PacedOutput`: Live has no clear or truncate event, so a WebSocket client plays whatever it receives;
  only output sent at real time lets barge-in cut speech on the server. This is the WebRTC calls' own
  player (media/audio_out.py `OutboundAudioTrack`: the queue per response, playout events, `clear()`),
  drained on a clock into a sink `LEAD_MS` ahead of real time instead of into RTP.
- `ReflectedOutput`: any `OutputAudio`, with each write also handed to a callback (the sideband's
  timestamped `session.output_audio.delta`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ..audio.convert import f32_to_pcm16, g711_decode, g711_encode, pcm16_to_f32
from ..audio.format import FRAME_MS, SAMPLE_RATE
from ..audio.resample import resample
from ..media.audio_out import OutboundAudioTrack, PlayoutListener
from ..protocol.errors import ProtocolError
from ..protocol.live import LiveAudioFormat, LivePcm
from ..session.transport import ClearedAudio, OutputAudio

LEAD_MS = 160  # how far ahead of real time output is sent (covers network jitter; what barge-in cannot take back)


def decode_input(data: bytes, fmt: LiveAudioFormat) -> bytes:
    """Appended audio in the session's format → canonical PCM16 24 kHz."""
    if isinstance(fmt, LivePcm):
        if len(data) % 2:
            raise ProtocolError("audio/pcm data must be whole 16-bit samples (an even number of bytes).",
                                code="invalid_value", param="audio")
        return data if fmt.rate == SAMPLE_RATE else f32_to_pcm16(resample(pcm16_to_f32(data), fmt.rate, SAMPLE_RATE))
    return g711_decode(data, fmt.type.split("/")[1])


def encode_output(pcm: bytes, fmt: LiveAudioFormat) -> bytes:
    """Canonical PCM16 24 kHz → the session's format."""
    if isinstance(fmt, LivePcm):
        return pcm if fmt.rate == SAMPLE_RATE else f32_to_pcm16(resample(pcm16_to_f32(pcm), SAMPLE_RATE, fmt.rate))
    return g711_encode(pcm, fmt.type.split("/")[1])


class PacedOutput:
    """`OutputAudio` for a WebSocket: written speech leaves through `sink` at real time, `lead_ms` ahead."""

    def __init__(self, sink: Callable[[bytes], None], *, lead_ms: int = LEAD_MS) -> None:
        self.track = OutboundAudioTrack()
        self._sink = sink
        self._lead_ms = lead_ms
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None

    # ---- OutputAudio ------------------------------------------------------------------------
    def set_listener(self, listener: PlayoutListener | None) -> None:
        self.track.set_listener(listener)

    def write(self, pcm: bytes, *, response_id: str, item_id: str) -> None:
        self.track.write(pcm, response_id=response_id, item_id=item_id)
        self._wake()

    def end_response(self, response_id: str, item_id: str | None = None) -> None:
        self.track.end_response(response_id, item_id)
        self._wake()

    def clear(self) -> ClearedAudio | None:
        return self.track.clear()

    def pause(self) -> None:
        self.track.pause()

    def resume(self) -> None:
        self.track.resume()
        self._wake()

    def played_ms(self, item_id: str) -> int:
        return self.track.played_ms(item_id)

    @property
    def is_playing(self) -> bool:
        return self.track.is_playing

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.track.stop()

    # ---- the clock ---------------------------------------------------------------------------
    def _wake(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="live-paced-output")
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            start, sent_ms = time.monotonic(), 0
            while self.track.is_playing:
                now = time.monotonic()
                held = self.track.paused  # a possible barge-in: nothing goes out meanwhile
                if held or self.track.queued_ms == 0:  # waiting: that time earns no credit
                    start = max(start, now - sent_ms / 1000)
                frames = []
                while not held and self.track.queued_ms > 0 and sent_ms < (now - start) * 1000 + self._lead_ms:
                    frames.append(self.track.next_frame())
                    sent_ms += FRAME_MS
                if frames:
                    self._sink(b"".join(frames))
                if not held and self.track.queued_ms == 0:
                    self.track.next_frame()  # reports `stopped` once a finished response has drained
                await asyncio.sleep(FRAME_MS / 1000)


class ReflectedOutput:
    """An `OutputAudio` whose writes are also handed to `reflect` (PCM, canonical) and whose clears are
    reported to `cleared`."""

    def __init__(self, out: OutputAudio, reflect: Callable[[bytes], None], cleared: Callable[[], None]) -> None:
        self.out = out
        self._reflect = reflect
        self._cleared = cleared

    def set_listener(self, listener: PlayoutListener | None) -> None:
        self.out.set_listener(listener)

    def write(self, pcm: bytes, *, response_id: str, item_id: str) -> None:
        self.out.write(pcm, response_id=response_id, item_id=item_id)
        self._reflect(pcm)

    def end_response(self, response_id: str, item_id: str | None = None) -> None:
        self.out.end_response(response_id, item_id)

    def clear(self) -> ClearedAudio | None:
        self._cleared()
        return self.out.clear()

    def pause(self) -> None:
        self.out.pause()

    def resume(self) -> None:
        self.out.resume()

    def played_ms(self, item_id: str) -> int:
        return self.out.played_ms(item_id)

    @property
    def is_playing(self) -> bool:
        return self.out.is_playing
