"""Reads of aiortc / aioice state that their API does not expose (every name here is pinned in
:mod:`.contract`): the ICE agent behind a peer connection, the nominated candidate pair, the codecs
a transceiver negotiated, a receiver's RTX SSRCs, and its RTCP NACK / PLI sends (counted, and a PLI
sent on request)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any


def dtls_transports(pc: Any) -> list[Any]:
    """The DTLS transports of a peer connection (one when everything is BUNDLEd)."""
    transports = [t.receiver.transport for t in pc.getTransceivers()]
    if getattr(pc, "sctp", None) is not None:
        transports.append(pc.sctp.transport)
    return transports


def ice_connections(pc: Any) -> Iterator[Any]:
    """The aioice Connections under a peer connection's DTLS transports."""
    for dtls in dtls_transports(pc):
        connection = getattr(getattr(dtls, "transport", None), "_connection", None)
        if connection is not None:
            yield connection


def ice_connection(pc: Any) -> Any:
    """The aioice Connection of a peer connection (one per call: BUNDLE), or None."""
    return next(ice_connections(pc), None)


def ice_close_reason(pc: Any) -> str | None:
    """Why the server's ICE agent of a peer connection closed itself ("consent_expired"), or None."""
    return next(filter(None, (getattr(c, "close_reason", None) for c in ice_connections(pc))), None)


def nominated_pair(connection: Any) -> Any:
    """The nominated candidate pair of an aioice Connection (component 1 first), or None."""
    nominated = getattr(connection, "_nominated", None) or {}
    return nominated.get(1) or next(iter(nominated.values()), None)


def transceiver_codecs(transceiver: Any) -> list[Any]:
    """The codecs a transceiver negotiated (RTCRtpCodecParameters), in preference order."""
    return list(getattr(transceiver, "_codecs", []))


def rtx_ssrcs(receiver: Any) -> set[int]:
    """The RTX SSRCs a receiver was told about."""
    return set(getattr(receiver, "_RTCRtpReceiver__rtx_ssrc", {}) or {})


def on_rtcp_sent(receiver: Any, kind: str, listener: Callable[[], None]) -> bool:
    """Call ``listener`` each time the receiver sends a ``kind`` ("nack" or "pli") RTCP packet (an
    instance attribute over ``_send_rtcp_nack`` / ``_send_rtcp_pli``, which aiortc calls on self).
    False when the receiver has no such method."""
    name = {"nack": "_send_rtcp_nack", "pli": "_send_rtcp_pli"}[kind]
    original = getattr(receiver, name, None)
    if original is None:
        return False

    async def counted(*args: Any) -> None:
        listener()
        await original(*args)

    setattr(receiver, name, counted)
    return True


def send_pli(receiver: Any, media_ssrc: int) -> Awaitable[None]:
    """Ask the sender of ``media_ssrc`` for a keyframe (RTCP PLI)."""
    return receiver._send_rtcp_pli(media_ssrc)
