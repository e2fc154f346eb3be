"""One answered SIP call: its RTP leg bridged into a SessionEngine, registered beside WebRTC calls.

The call registry, the operator call list, `POST /v1/realtime/calls/{id}/hangup` and the sideband
(`GET /v1/realtime?call_id=`) use what a WebRTC call offers (`id`, `engine`, `closed`, `stats`, `state`,
`client`, `duration_s`, `hangup()`, `audio_out`, `inbound`, `transport`), so a SIP call is one of them to
every route. Server events have no channel on a phone line: they reach the sideband sockets and the
call monitor through the session's event bus. Spoken audio goes to the RTP leg's paced player, whose
playout drives `output_audio_buffer.*`, barge-in and truncation exactly as on WebRTC.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from ..media.audio_out import OutboundAudioTrack
from ..media.call import CallStats
from ..observability.logs import set_call_id
from ..protocol import server_events as ev
from ..session.engine import SessionEngine
from .rtp import RtpLeg
from .sdp import MediaPlan

log = logging.getLogger("openrealtime.call")


class SipSessionTransport:
    """The session's Transport on a SIP call."""

    kind = "sip"

    def __init__(self, audio_out: OutboundAudioTrack, on_close: Callable[[str], None]) -> None:
        self.audio_out = audio_out
        self._on_close = on_close
        self.events_out = 0
        self.events_in = 0  # client events come only through sidebands, counted there
        self.inbound_observers: list[Callable[[str | bytes], None]] = []

    def send_text(self, text: str) -> None:
        self.events_out += 1  # no event channel on a phone line: sidebands subscribe to the bus

    def close(self, reason: str) -> None:
        self._on_close(reason)


EngineFactory = Callable[[SipSessionTransport], SessionEngine]


class SipCall:
    transport_kind = "sip"

    def __init__(self, call_id: str, plan: MediaPlan, engine_factory: EngineFactory, *,
                 send_bye: Callable[[], None], on_ended: Callable[["SipCall"], None] | None = None,
                 client: str = "-", created: float | None = None, max_duration_s: float = 3600.0,
                 sip_call_id: str = "") -> None:
        set_call_id(call_id)
        self.id = call_id
        self.sip_call_id = sip_call_id
        self.client = client
        self.stats = CallStats()
        if created is not None:
            self.stats.created = created  # when the INVITE arrived
        self.state = "connecting"
        self.video = None
        self.closed = asyncio.Event()
        self._send_bye = send_bye
        self._on_ended = on_ended
        self._closing: asyncio.Task | None = None
        self._max_duration_s = max_duration_s
        self._timers: list[asyncio.TimerHandle] = []
        self.audio_out = OutboundAudioTrack()
        self.transport = SipSessionTransport(self.audio_out, self._transport_closed)
        self.engine = engine_factory(self.transport)
        self.leg = RtpLeg(plan, self.audio_out, self.engine.feed_audio, self._on_key)
        self.inbound = self.leg  # frames / voiced_frames for the call monitor

    @property
    def plan(self) -> MediaPlan:
        return self.leg.plan

    async def open_media(self, host: str) -> int:
        return await self.leg.open(host)

    def start(self) -> None:
        """The 200 OK went out: media flows, the session starts."""
        self.stats.connected_at = time.monotonic()
        self.leg.start()
        self.engine.start()
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(self._max_duration_s, self.engine.expire))
        self._set_state("connected")

    def update_media(self, plan: MediaPlan) -> None:
        """A re-INVITE or UPDATE was answered: hold, resume, a new address or key."""
        held = not plan.sends  # on hold the player is not read: the answer waits for the caller's return
        self.leg.set_plan(plan)
        self._set_state("held" if held else "connected")

    def _on_key(self, key: str) -> None:
        log.info("call=%s dtmf key=%s", self.id, key)
        self.engine.emit(ev.InputAudioBufferDtmfEventReceivedEvent(event=key, received_at=int(time.time())))

    def key_pressed(self, key: str) -> None:
        """A key from SIP INFO (RFC 4733 ones come from the RTP leg)."""
        self._on_key(key)

    def _transport_closed(self, reason: str) -> None:
        # the session ended itself (expiry, shutdown): let its last event reach the sidebands, then hang up
        asyncio.get_running_loop().call_later(0.2, self.hangup, reason)

    def hangup(self, reason: str = "hangup") -> asyncio.Task:
        """End the call. Unless the caller hung up (`caller_bye`), a BYE is sent."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close(reason))
        return self._closing

    async def _close(self, reason: str) -> None:
        set_call_id(self.id)
        self.stats.end_reason = reason
        for timer in self._timers:
            timer.cancel()
        if reason != "caller_bye":
            try:
                self._send_bye()
            except Exception:  # noqa: BLE001 - the call ends here either way
                log.exception("call=%s could not send BYE", self.id)
        self.engine.close(reason)
        await self.leg.stop()
        self.stats.ended_at = time.monotonic()
        self._set_state("closed")
        self.closed.set()
        if self._on_ended is not None:
            self._on_ended(self)

    def _set_state(self, state: str) -> None:
        self.state = state
        extra = ""
        if state == "connected" and self.stats.connected_at is not None:
            extra = f" setup_ms={(self.stats.connected_at - self.stats.created) * 1000:.0f}"
        elif state == "closed":
            extra = f" reason={self.stats.end_reason} duration_s={self.duration_s:.1f}"
        log.info("call=%s transport=sip client=%s codec=%s state=%s%s", self.id, self.client, self.plan.codec,
                 state, extra)

    @property
    def duration_s(self) -> float:
        return (self.stats.ended_at or time.monotonic()) - self.stats.created

    def media_stats(self) -> dict:
        return self.leg.stats()

    def describe_codecs(self) -> dict:
        """The negotiated audio codec, in the call monitor's shape (as a WebRTC call's)."""
        plan = self.plan
        mime = "audio/opus" if plan.codec == "OPUS" else f"audio/{plan.codec}"
        return {"audio": {"mime_type": mime, "clock_rate": plan.clock_rate, "channels": plan.channels,
                          "payload_type": plan.payload_type,
                          "fmtp": plan.fmtp, "direction": plan.direction, "telephone_event": plan.dtmf_payload_type,
                          "security": plan.security, "remote": self.leg.stats()["remote"]}}
