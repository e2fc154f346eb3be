"""A data-channel peer cannot make the server buffer without bound (a hook into aiortc 1.16's SCTP).

aiortc reassembles a fragmented data-channel message however large it grows: DATA chunks are kept
whatever our advertised receive window (`_advertised_rwnd`, 1 MiB, which only goes negative), so a peer
that ignores both the window and our SDP `max-message-size` (256 KiB) — or never sends a message's last
fragment — makes the server hold everything it sends. A peer that respects the protocol never has more
than the window outstanding, so once the data held for reassembly exceeds the window by more than one
maximum message, the peer is broken or hostile: the association is aborted (its data channels close)
and the held data is dropped. Messages up to the limit that do complete are refused one by one by the
transport (`message_too_large`, media/datachannel.py).
"""

from __future__ import annotations

import logging
from typing import Any

from aiortc.rtcsctptransport import LOCAL_MAX_MESSAGE_SIZE, RTCSctpTransport

log = logging.getLogger(__name__)

# how far below zero the advertised window may go before the association is aborted
MAX_WINDOW_OVERRUN = LOCAL_MAX_MESSAGE_SIZE
_ORIGINAL = "_openrealtime_receive_data_chunk"


def installed() -> bool:
    return hasattr(RTCSctpTransport, _ORIGINAL)


def install() -> None:
    """Wrap `RTCSctpTransport._receive_data_chunk` (idempotent, process-wide)."""
    if installed():
        return
    original = RTCSctpTransport._receive_data_chunk
    setattr(RTCSctpTransport, _ORIGINAL, original)

    async def _receive_data_chunk(self: RTCSctpTransport, chunk: Any) -> None:
        await original(self, chunk)
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

    RTCSctpTransport._receive_data_chunk = _receive_data_chunk  # type: ignore[method-assign]

