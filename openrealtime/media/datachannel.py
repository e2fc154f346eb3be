"""The `oai-events` data channel as a session Transport."""

from __future__ import annotations

import collections
import json
import logging
from collections.abc import Callable
from typing import Any

from aiortc import RTCDataChannel
from pydantic import BaseModel

from ..protocol.errors import ProtocolError
from ..protocol.server_events import to_json
from ..session.transport import OutputAudio

log = logging.getLogger(__name__)

EVENTS_LABEL = "oai-events"
MAX_PENDING_EVENTS = 1000


def encode_event(event: Any) -> str:
    if isinstance(event, BaseModel):
        return to_json(event)
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


class DataChannelTransport:
    """Sends server events on `oai-events` (buffered until the channel opens) and feeds
    client messages to a handler, rejecting ones larger than we advertise."""

    kind = "webrtc"

    def __init__(self, audio_out: OutputAudio | None, on_close: Callable[[str], None], max_message_bytes: int) -> None:
        self.audio_out = audio_out
        self._on_close = on_close
        self._channel: RTCDataChannel | None = None
        self._pending: collections.deque[str] = collections.deque(maxlen=MAX_PENDING_EVENTS)
        self.max_message_bytes = max_message_bytes
        self.events_out = 0
        self.events_in = 0
        self.inbound_observers: list[Callable[[str | bytes], None]] = []  # each client message (monitoring)
        # optional rewriting at the edge (beta event shapes on POST /v1/realtime calls; see protocol/beta.py)
        self.outbound: Callable[[str], list[str]] | None = None  # GA event text -> texts for the channel
        self.inbound: Callable[[str | bytes], str | bytes] | None = None  # client message -> GA message

    def attach(self, channel: RTCDataChannel, on_message: Callable[[str | bytes], None],
               on_error: Callable[[ProtocolError], None]) -> None:
        self._channel = channel

        @channel.on("message")
        def _message(message: str | bytes) -> None:
            self.events_in += 1
            for observer in self.inbound_observers:
                observer(message)
            size = len(message.encode() if isinstance(message, str) else message)
            if size > self.max_message_bytes:
                on_error(ProtocolError(
                    f"Message of {size} bytes exceeds the data channel's max-message-size of "
                    f"{self.max_message_bytes} bytes. Send large images over the WebSocket "
                    "sideband or downscale them.", code="message_too_large"))
                return
            if self.inbound is not None:
                message = self.inbound(message)
            on_message(message)

        while self._pending and channel.readyState == "open":
            channel.send(self._pending.popleft())

    @property
    def is_open(self) -> bool:
        return self._channel is not None and self._channel.readyState == "open"

    def send(self, event: Any) -> None:
        self.send_text(encode_event(event))

    def send_text(self, text: str) -> None:
        """One GA server event's JSON text (the session's bus encodes each event once: events.py)."""
        for out in (self.outbound(text) if self.outbound is not None else (text,)):
            if self.is_open:
                self.events_out += 1
                self._channel.send(out)  # type: ignore[union-attr]
            else:
                self._pending.append(out)

    def close(self, reason: str) -> None:
        self._on_close(reason)
