"""The server's ``RTCDtlsTransport``: transport-cc both ways, and a bad packet cannot end the call.

:class:`ServerDtlsTransport` replaces two receive methods of aiortc 1.16's transport (the contract
pins their source, :mod:`.contract`):

* ``_handle_rtp_data`` is aiortc's body (parse → route → ``receiver._handle_rtp_packet``) that also
  records the transport-wide sequence number and arrival time of every RTP packet on the transport
  (routed or not) in a :class:`.twcc.TwccRecorder`, lets a receiver learn at most
  ``MAX_SSRCS_PER_RECEIVER`` SSRCs, and drops a packet the receive path fails on instead of letting
  the exception end the transport's receive loop (the call). A timer per transport (every 50 ms)
  sends transport-cc feedback with ``_send_rtp`` when ≥ 8 packets are pending or 100 ms have passed.
* ``_handle_rtcp_data`` takes transport-cc feedback (RTPFB FMT=15, which aiortc's parser misreads as
  a NACK list) out of each compound packet for :class:`.twcc.TwccSendStats` (counters over the
  peer's feedback on our packets), drops a REMB whose SSRC list is shorter than its count (aiortc's
  parser raised struct.error, which ended the receive loop: found by fuzzing, tests/fuzz), routes
  the rest as aiortc does, and drops what the receive path fails on.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from typing import Any

from aiortc import rtp as aiortc_rtp
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RtcpPacket, RtcpPsfbPacket, RtcpRtpfbPacket, RtpPacket, pack_rtcp_packet

from ..twcc import FMT_TWCC, RTCP_RTPFB, TwccRecorder, TwccSendStats

log = logging.getLogger("openrealtime.rtp")

FEEDBACK_TICK_S = 0.05
FEEDBACK_MAX_INTERVAL_S = 0.1
FEEDBACK_MIN_PENDING = 8
# SSRCs one receiver learns (aiortc maps any new SSRC with its payload type to it, and keeps statistics and
# a receiver-report block per SSRC): a peer cycling SSRCs would otherwise grow both without bound.
MAX_SSRCS_PER_RECEIVER = 16
# A/B switch for experiments and tests: False records arrivals but never sends feedback.
SEND_FEEDBACK = True

_STATE_ATTR = "_or_twcc"


# ---- per-transport state -----------------------------------------------------------------------
class TwccTransportState:
    """TWCC bookkeeping for one BUNDLE transport (``transport._or_twcc``)."""

    def __init__(self, transport: RTCDtlsTransport) -> None:
        self.transport = transport
        self.recorder = TwccRecorder(epoch_us=time.monotonic_ns() // 1000)
        self.send = TwccSendStats()
        self.feedback_packets_sent = 0
        self.feedback_bytes_sent = 0
        self.send_errors = 0
        self._timer: asyncio.TimerHandle | None = None
        self._last_sent = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        if self._timer is None:
            self._loop = asyncio.get_running_loop()
            self._last_sent = self._loop.time()
            self._timer = self._loop.call_later(FEEDBACK_TICK_S, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def running(self) -> bool:
        return self._timer is not None

    def _tick(self) -> None:
        state = self.transport.state
        if state in ("closed", "failed"):
            self._timer = None
            return
        loop = self._loop
        self._timer = loop.call_later(FEEDBACK_TICK_S, self._tick)
        rec = self.recorder
        if not rec.pending:
            return
        now = loop.time()
        if rec.pending < FEEDBACK_MIN_PENDING and now - self._last_sent < FEEDBACK_MAX_INTERVAL_S - 0.005:
            return
        if state != "connected" or not SEND_FEEDBACK:
            return
        if not rec.sender_ssrc:
            rec.sender_ssrc = next(iter(self.transport._rtp_router.senders), 0) or 1
        packets = rec.build()
        self._last_sent = now
        if packets:
            loop.create_task(self._send(packets))

    async def _send(self, packets: list[bytes]) -> None:
        for data in packets:
            try:
                await self.transport._send_rtp(data)
            except ConnectionError:
                self.send_errors += 1
                return
            self.feedback_packets_sent += 1
            self.feedback_bytes_sent += len(data)

    def counters(self) -> dict[str, int]:
        rec, snd = self.recorder, self.send
        return {"rtp_recorded": rec.packets, "rtp_late": rec.late, "feedback_sent": self.feedback_packets_sent,
                "feedback_bytes": self.feedback_bytes_sent, "stamped": snd.stamped,
                "feedback_received": snd.feedbacks, "reported_received": snd.reported_received,
                "reported_lost": snd.reported_lost}


def twcc_state(transport: RTCDtlsTransport) -> TwccTransportState:
    state = transport.__dict__.get(_STATE_ATTR)
    if state is None:
        state = TwccTransportState(transport)
        setattr(transport, _STATE_ATTR, state)
    return state


def peek_twcc_state(transport: Any) -> TwccTransportState | None:
    return getattr(transport, _STATE_ATTR, None)


# ---- incoming transport-cc feedback ------------------------------------------------------------
class RtcpTwccPacket(RtcpRtpfbPacket):
    """RTPFB FMT=15 as received: ``payload`` is sender SSRC + media SSRC + FCI (no NACK list)."""

    payload: bytes = b""

    @classmethod
    def from_payload(cls, payload: bytes) -> "RtcpTwccPacket":
        if len(payload) < 8:
            raise ValueError("RTCP RTP feedback length is invalid")
        ssrc, media_ssrc = struct.unpack_from("!LL", payload, 0)
        packet = cls(fmt=FMT_TWCC, ssrc=ssrc, media_ssrc=media_ssrc)
        packet.payload = bytes(payload)
        return packet

    def __bytes__(self) -> bytes:
        body = self.payload + bytes(-len(self.payload) % 4)
        return pack_rtcp_packet(RTCP_RTPFB, FMT_TWCC, body)


def split_twcc(data: bytes) -> tuple[list[RtcpTwccPacket], bytes]:
    """The transport-cc feedback packets of a compound RTCP packet, and the rest of it (for aiortc's
    parser). What does not parse is left in the rest, where aiortc's parser reports it."""
    twcc: list[RtcpTwccPacket] = []
    rest: list[bytes] = []
    pos = 0
    while pos + 4 <= len(data):
        first, packet_type, length = struct.unpack_from("!BBH", data, pos)
        end = pos + 4 + length * 4
        if end > len(data) or first >> 6 != 2:
            break
        if packet_type == RTCP_RTPFB and first & 0x1F == FMT_TWCC:
            payload = data[pos + 4:end]
            if first & 0x20:  # padding
                if not payload or not payload[-1] or payload[-1] > len(payload):
                    raise ValueError("RTCP packet padding length is invalid")
                payload = payload[:-payload[-1]]
            twcc.append(RtcpTwccPacket.from_payload(payload))
        else:
            rest.append(data[pos:end])
        pos = end
    if not twcc:
        return twcc, data
    rest.append(data[pos:])
    return twcc, b"".join(rest)


def _remb_truncated(packet: Any) -> bool:
    if isinstance(packet, RtcpPsfbPacket) and packet.fmt == aiortc_rtp.RTCP_PSFB_APP:
        try:
            aiortc_rtp.unpack_remb_fci(packet.fci)
        except struct.error:
            return True
        except ValueError:  # not a REMB: aiortc ignores it
            return False
    return False


# ---- the transport ----------------------------------------------------------------------------------
class ServerDtlsTransport(RTCDtlsTransport):
    """aiortc's DTLS transport with the receive path described in the module docstring."""

    async def _handle_rtp_data(self, data: bytes, arrival_time_ms: int) -> None:
        try:
            packet = RtpPacket.parse(data, self._rtp_header_extensions_map)
        except (ValueError, struct.error) as exc:  # struct.error: an extension of the wrong size (aiortc's own
            log.debug("x RTP parsing failed: %s", exc)  # parser only expects ValueError; found by fuzzing)
            return

        seq = packet.extensions.transport_sequence_number
        if seq is not None:
            state = twcc_state(self)
            state.recorder.record(seq, time.monotonic_ns() // 1000, packet.ssrc)
            if not state.running:
                state.start()

        # route RTP packet (a new SSRC is learned from its payload type, up to MAX_SSRCS_PER_RECEIVER)
        router = self._rtp_router
        new_ssrc = packet.ssrc not in router.ssrc_table
        receiver = router.route_rtp(packet)
        if receiver is not None and new_ssrc and \
                sum(1 for r in router.ssrc_table.values() if r is receiver) > MAX_SSRCS_PER_RECEIVER:
            del router.ssrc_table[packet.ssrc]
            log.debug("x RTP from a new SSRC %d dropped: the receiver has %d already", packet.ssrc,
                      MAX_SSRCS_PER_RECEIVER)
            return
        if receiver is not None:
            try:
                await receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)
            except Exception as exc:  # noqa: BLE001 - see dropped
                self.dropped("RTP", exc)

    async def _handle_rtcp_data(self, data: bytes) -> None:
        try:
            twcc, rest = split_twcc(data)
            packets = RtcpPacket.parse(rest) if rest else []
        except ValueError as exc:
            log.debug("x RTCP parsing failed: %s", exc)
            return
        except Exception as exc:  # noqa: BLE001 - see dropped
            self.dropped("RTCP", exc)
            return
        try:
            for feedback in twcc:
                # to the sender(s) it is about, as aiortc routes RTPFB; the counters are the transport's
                for _sender in self._rtp_router.route_rtcp(feedback):
                    twcc_state(self).send.on_feedback(feedback.payload)
            for packet in packets:
                if _remb_truncated(packet):
                    log.debug("x RTCP REMB shorter than its SSRC count dropped")
                    continue
                for recipient in self._rtp_router.route_rtcp(packet):
                    await recipient._handle_rtcp_packet(packet)
        except Exception as exc:  # noqa: BLE001 - see dropped
            self.dropped("RTCP", exc)

    def dropped(self, what: str, exc: Exception) -> None:
        """A packet our receive path could not handle is dropped: an exception here would end the transport's
        receive loop (``RTCDtlsTransport.__run``), and with it the whole call. Logged with its traceback the
        first time per transport, then every 1000th."""
        count = self.__dict__.get("_or_dropped", 0) + 1
        self._or_dropped = count
        self._or_dropped_last = f"{what}: {type(exc).__name__}: {exc}"
        if count == 1 or count % 1000 == 0:
            log.warning("dropped a %s packet the receive path failed on (%d on this transport)", what, count,
                        exc_info=exc)
