"""The Realtime session engine (transport-agnostic, sans-IO where possible).

Inputs: raw client events (`handle_message`), canonical input audio (`feed_audio`) and
playout notifications (`on_playout`). Outputs: server events and output audio through the
`Transport`. Model inference never runs on the caller's thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from .. import ids
from ..protocol.errors import ProtocolError
from ..protocol.session import (
    RealtimeSessionConfig,
    TranscriptionSessionConfig,
    apply_session_update,
    session_object,
)
from .transport import Transport

log = logging.getLogger(__name__)


@dataclass
class SessionLimits:
    max_duration_s: float = 60 * 60
    max_event_bytes: int = 16 * 1024 * 1024
    max_input_buffer_ms: int = 15 * 60 * 1000
    max_items: int = 4096
    max_images: int = 64


def _event(type_: str, **fields: Any) -> dict[str, Any]:
    return {"type": type_, "event_id": ids.event_id(), **fields}


class SessionEngine:
    def __init__(
        self,
        transport: Transport,
        config: RealtimeSessionConfig | TranscriptionSessionConfig,
        *,
        mode: str = "local",
        models: Any = None,
        limits: SessionLimits | None = None,
        echo_delay_s: float = 0.3,
    ) -> None:
        self.transport = transport
        self.config = config
        self.mode = mode
        self.models = models
        self.limits = limits or SessionLimits()
        self.id = ids.session_id()
        self.created_at = time.time()
        self.expires_at = int(self.created_at + self.limits.max_duration_s)
        self.echo_delay_s = echo_delay_s
        self.audio_ms_in = 0
        self.closed = False
        self._echo_item = ids.item_id()
        self._echo_response = ids.response_id()

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._send(_event("session.created", session=self._session_json()))

    def close(self, reason: str = "closed") -> None:
        self.closed = True

    def expire(self) -> None:
        """Max session duration reached: tell the client, then end the connection."""
        self._send(_event("error", error=ProtocolError(
            "Your session hit the maximum duration of "
            f"{int(self.limits.max_duration_s // 60)} minutes.",
            code="session_expired", type="invalid_request_error").detail().model_dump()))
        self.transport.close("session_expired")

    # ---- inputs ------------------------------------------------------------------------------
    def handle_message(self, raw: str | bytes) -> None:
        from ..protocol.parse import parse_client_event

        try:
            event = parse_client_event(raw, max_bytes=self.limits.max_event_bytes)
        except ProtocolError as exc:
            self.send_error(exc)
            return
        try:
            self._dispatch(event)
        except ProtocolError as exc:
            if exc.event_id is None:
                exc.event_id = getattr(event, "event_id", None)
            self.send_error(exc)

    def feed_audio(self, pcm: bytes) -> None:
        self.audio_ms_in += len(pcm) // 48
        if self.mode == "echo" and self.transport.audio_out is not None:
            loop = asyncio.get_running_loop()
            loop.call_later(self.echo_delay_s, self._echo, pcm)

    def on_playout(self, event: str, response_id: str) -> None:
        self._send(_event(f"output_audio_buffer.{event}", response_id=response_id))

    # ---- handlers ----------------------------------------------------------------------------
    def _dispatch(self, event: Any) -> None:
        kind = event.type
        if kind == "session.update":
            raw = event.session if isinstance(event.session, dict) else event.session.model_dump(exclude_unset=True)
            self.config = apply_session_update(self.config, raw)
            self._send(_event("session.updated", session=self._session_json()))
        else:
            raise ProtocolError(f"'{kind}' is not supported by this server yet.", code="unsupported_event",
                                param="type", event_id=getattr(event, "event_id", None))

    def send_error(self, exc: ProtocolError) -> None:
        self._send(_event("error", error=exc.detail().model_dump()))

    # ---- helpers -----------------------------------------------------------------------------
    def _echo(self, pcm: bytes) -> None:
        if not self.closed and self.transport.audio_out is not None:
            self.transport.audio_out.write(pcm, response_id=self._echo_response, item_id=self._echo_item)

    def _session_json(self) -> dict[str, Any]:
        return session_object(self.config, id=self.id, expires_at=self.expires_at).model_dump(mode="json")

    def _send(self, event: Any) -> None:
        if not self.closed:
            self.transport.send(event)
