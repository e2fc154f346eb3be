"""The narrow interface between a transport (WebRTC call, WebSocket) and the session engine.

The engine never touches sockets, tracks or data channels: it publishes server events on its
bus (events.py), which hands each one's JSON text to `Transport.send_text()`, and, on WebRTC, writes its spoken audio to `Transport.audio_out`, a
clock-paced player it can clear instantly. On WebSocket `audio_out` is None and the engine
sends `response.output_audio.delta` events instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, Protocol


@dataclass
class ClearedAudio:
    """What clearing the output interrupted."""

    response_id: str
    item_id: str
    played_ms: int
    dropped_ms: int


class OutputAudio(Protocol):
    """Server-paced audio playout (WebRTC). PCM is canonical: s16le mono 24 kHz."""

    def set_listener(self, listener: Callable[[str, str], None] | None) -> None:
        """Called with ("started" | "stopped", response_id) as playout begins / drains."""
        ...

    def write(self, pcm: bytes, *, response_id: str, item_id: str) -> None: ...

    def end_response(self, response_id: str, item_id: str | None = None) -> None: ...

    def clear(self) -> ClearedAudio | None: ...

    def pause(self) -> None:
        """Hold playout where it is (silence goes out; nothing more counts as played) until `resume` or `clear`."""
        ...

    def resume(self) -> None: ...

    def played_ms(self, item_id: str) -> int: ...

    @property
    def is_playing(self) -> bool: ...


class Transport(Protocol):
    kind: str  # "webrtc" | "websocket"
    audio_out: OutputAudio | None

    def send_text(self, text: str) -> None:
        """Deliver one server event (its GA JSON text; a transport may rewrite it for beta clients)."""
        ...

    def close(self, reason: str) -> None:
        """End the connection (after the engine's last event has been sent)."""
        ...
