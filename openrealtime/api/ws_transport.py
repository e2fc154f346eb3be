"""A Realtime WebSocket as a session Transport: JSON text frames out through a bounded queue.

The engine never waits on the network: `send()` encodes the event and appends it to a per-connection
queue that one writer task drains into the socket (which applies TCP backpressure). A client that
stops reading lets the queue grow; past `MAX_PENDING_BYTES` or `MAX_PENDING_EVENTS` the connection is
dropped with close code 4001 instead of buffering without bound. Audio rides
`response.output_audio.delta` events (`audio_out` is None), so the engine paces nothing here.

Close codes (also in README.md):
  1000  normal closure (client closed, the sideband's call ended)
  1011  unexpected server error
  4000  session expired (max session duration; an `error` event with code `session_expired` precedes it)
  4001  client too slow: more than MAX_PENDING_BYTES / MAX_PENDING_EVENTS unsent
The protocol layer (uvicorn) adds 1007 (invalid UTF-8), 1009 (frame over the transport limit) and 1012
(server restarting).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

from fastapi import WebSocket
from starlette.websockets import WebSocketState

from ..media.datachannel import encode_event
from ..protocol import beta as beta_protocol

log = logging.getLogger("openrealtime.websocket")

MAX_PENDING_BYTES = 16 * 1024 * 1024
MAX_PENDING_EVENTS = 10_000
CLOSE_TIMEOUT_S = 5.0

CLOSE_NORMAL = 1000
CLOSE_SERVER_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012  # the server is shutting down (drain): reconnect, to another node
CLOSE_SESSION_EXPIRED = 4000
CLOSE_SLOW_CLIENT = 4001
CLOSE_CODES = {"session_expired": CLOSE_SESSION_EXPIRED, "slow_client": CLOSE_SLOW_CLIENT,
               "server_error": CLOSE_SERVER_ERROR, "server_shutting_down": CLOSE_SERVICE_RESTART}


class WebSocketTransport:
    """Server events → one WebSocket, never blocking the caller."""

    kind = "websocket"
    audio_out = None

    def __init__(self, websocket: WebSocket, *, beta: bool = False, conversation_id: str | None = None,
                 max_pending_bytes: int | None = None, max_pending_events: int | None = None) -> None:
        self.ws = websocket
        self.beta = beta
        self.conversation_id = conversation_id  # for beta's `conversation.created`
        self.max_pending_bytes = max_pending_bytes or MAX_PENDING_BYTES
        self.max_pending_events = max_pending_events or MAX_PENDING_EVENTS
        self._queue: collections.deque[str] = collections.deque()
        self._pending_bytes = 0
        self._wakeup = asyncio.Event()
        self._close: tuple[int, str] | None = None
        self.closed = asyncio.Event()  # set once the writer has finished (close sent or peer gone)
        self.close_code: int | None = None
        self.events_out = 0
        self._writer = asyncio.create_task(self._write_loop())

    # ---- Transport -------------------------------------------------------------------------
    def send(self, event: Any) -> None:
        self.send_text(encode_event(event))

    def close(self, reason: str) -> None:
        """After the last queued event: close with the code for `reason` (see module docstring)."""
        self.close_with(CLOSE_CODES.get(reason, CLOSE_NORMAL), reason)

    # ---- queue -----------------------------------------------------------------------------
    def send_text(self, text: str) -> None:
        """Queue one GA server event (JSON text); translated here when the client chose beta."""
        if self._close is not None:
            return
        if self.beta:
            for out in beta_protocol.server_text_to_beta(text, self.conversation_id):
                self._enqueue(out)
        else:
            self._enqueue(text)

    def _enqueue(self, text: str) -> None:
        size = len(text)
        if self._pending_bytes + size > self.max_pending_bytes or len(self._queue) >= self.max_pending_events:
            log.warning("websocket client too slow: %d events / %d bytes unsent; closing with %d",
                        len(self._queue), self._pending_bytes, CLOSE_SLOW_CLIENT)
            self._queue.clear()
            self._pending_bytes = 0
            self.close_with(CLOSE_SLOW_CLIENT, "client too slow: send queue overflow", flush=False)
            return
        self._queue.append(text)
        self._pending_bytes += size
        self._wakeup.set()

    @property
    def pending(self) -> int:
        return len(self._queue)

    def close_with(self, code: int, reason: str, *, flush: bool = True) -> None:
        if self._close is not None:
            return
        self._close = (code, reason[:120])
        if not flush:
            self._queue.clear()
            self._pending_bytes = 0
            self._writer.cancel()  # it may be stuck behind a client that does not read
            asyncio.ensure_future(self._send_close())
        self._wakeup.set()

    def abort(self) -> None:
        """The peer is gone: stop writing (nothing more can be delivered)."""
        if self._close is None:
            self._close = (CLOSE_NORMAL, "")
        self._queue.clear()
        self._writer.cancel()
        self.closed.set()

    async def _write_loop(self) -> None:
        try:
            while True:
                while self._queue:
                    text = self._queue.popleft()
                    self._pending_bytes -= len(text)
                    await self.ws.send_text(text)
                    self.events_out += 1
                if self._close is not None:
                    break
                self._wakeup.clear()
                await self._wakeup.wait()
        except asyncio.CancelledError:
            return
        except Exception:  # peer vanished mid-send (ClientDisconnected, RuntimeError after close)
            self.closed.set()
            return
        await self._send_close()

    async def _send_close(self) -> None:
        code, reason = self._close or (CLOSE_NORMAL, "")
        self.close_code = code
        try:
            if self.ws.application_state == WebSocketState.CONNECTED and \
                    self.ws.client_state == WebSocketState.CONNECTED:
                await asyncio.wait_for(self.ws.close(code, reason), CLOSE_TIMEOUT_S)
        except (asyncio.TimeoutError, Exception):
            pass
        finally:
            self.closed.set()
