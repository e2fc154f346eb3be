"""The server's ``RTCSctpTransport``: a data-channel peer can neither end its call nor fill memory.

Malformed input: aiortc's data-channel receive path raises on input the peer chooses: an
AssertionError for a DCEP OPEN on a stream that is already open (or an ACK for one that is not, or
an INIT bundled with other chunks), a UnicodeDecodeError for a label, protocol or string message
that is not UTF-8 (found by fuzzing, tests/fuzz). The exception climbs to ``RTCDtlsTransport``'s
receive loop and ends it, and with it the whole call: audio, video and every data channel.
:class:`ServerSctpTransport` drops such a user message (``_data_channel_receive``) or packet
(``_handle_data``); the association goes on. The first drop on an association is logged with its
traceback (a bug of ours in a message handler shows up there too), then every 100th.

Reassembly: aiortc reassembles a fragmented data-channel message however large it grows: DATA
chunks are kept whatever our advertised receive window (``_advertised_rwnd``, 1 MiB, which only goes
negative), so a peer that ignores both the window and our SDP ``max-message-size`` (256 KiB) — or
never sends a message's last fragment — makes the server hold everything it sends. A peer that
respects the protocol never has more than the window outstanding, so once the data held for
reassembly exceeds the window by more than one maximum message (``_receive_data_chunk``), the peer is
broken or hostile: the association is aborted (its data channels close) and the held data is
dropped. Messages up to the limit that do complete are refused one by one by the transport
(``message_too_large``, media/datachannel.py).
"""

from __future__ import annotations

import logging
from typing import Any

from aiortc.rtcsctptransport import LOCAL_MAX_MESSAGE_SIZE, RTCSctpTransport

log = logging.getLogger("openrealtime.media.sctp")

# how far below zero the advertised window may go before the association is aborted
MAX_WINDOW_OVERRUN = LOCAL_MAX_MESSAGE_SIZE


class ServerSctpTransport(RTCSctpTransport):
    async def _data_channel_receive(self, stream_id: int, pp_id: int, data: bytes) -> None:
        try:
            await super()._data_channel_receive(stream_id, pp_id, data)
        except Exception as exc:  # noqa: BLE001 - see the module docstring
            self.dropped(f"message (stream {stream_id}, ppid {pp_id})", exc)

    async def _handle_data(self, data: bytes) -> None:
        try:
            await super()._handle_data(data)
        except Exception as exc:  # noqa: BLE001 - see the module docstring
            self.dropped("packet", exc)

    async def _receive_data_chunk(self, chunk: Any) -> None:
        await super()._receive_data_chunk(chunk)
        if self._advertised_rwnd < -MAX_WINDOW_OVERRUN and \
                self._association_state != RTCSctpTransport.State.CLOSED:
            held = sum(len(c.user_data) for s in self._inbound_streams.values() for c in s.reassembly)
            log.warning("data channel peer sent %d bytes it never completed into messages (more than the "
                        "receive window plus one %d-byte message): aborting the SCTP association", held,
                        LOCAL_MAX_MESSAGE_SIZE)
            for stream in self._inbound_streams.values():
                stream.reassembly.clear()
            self._advertised_rwnd = 0
            await self._abort()
            self._set_state(RTCSctpTransport.State.CLOSED)

    def dropped(self, what: str, exc: Exception) -> None:
        count = self.__dict__.get("_or_dropped", 0) + 1
        self._or_dropped = count
        self._or_dropped_last = f"{what}: {type(exc).__name__}: {exc}"
        if count == 1 or count % 100 == 0:
            log.warning("dropped an SCTP %s the data-channel receive path failed on (%d on this association)",
                        what, count, exc_info=exc)
