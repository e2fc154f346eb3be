"""One WebRTC call: a single BUNDLEd RTCPeerConnection bound to one session engine."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc import exceptions as aiortc_exceptions
from aiortc import sdp as aiortc_sdp
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtcsctptransport import LOCAL_MAX_MESSAGE_SIZE

from ..observability.logs import set_call_id
from ..protocol.errors import ProtocolError
from ..session.engine import SessionEngine
from . import aiortc_patches
from .aiortc_patches.internals import ice_close_reason
from .audio_in import InboundAudio
from .audio_out import OutboundAudioTrack
from .datachannel import EVENTS_LABEL, DataChannelTransport
from .ice import IceSettings, server_ice
from .opus_fec import SEND_COMPLEXITY
from .sdp_policy import codec_preferences, finalize_answer, validate_offer
from .video import VideoSampler

log = logging.getLogger("openrealtime.call")

SNAPSHOT_INTERVAL_S = 0.5
SNAPSHOT_MAX_AGE_S = 3.0

EngineFactory = Callable[[DataChannelTransport], SessionEngine]
# What aiortc raises while applying an offer it cannot negotiate: its own errors, and (for contradictions
# validate_offer does not catch) attribute/type errors from half-built transceivers. OSError and other
# server-side failures are not in the list: they stay 500s.
_OFFER_REJECTED = (ValueError, KeyError, IndexError, AssertionError, AttributeError, TypeError,
                   aiortc_exceptions.InternalError, aiortc_exceptions.InvalidAccessError,
                   aiortc_exceptions.InvalidStateError, aiortc_exceptions.OperationError)


@dataclass
class CallOptions:
    ice: IceSettings
    connect_timeout_s: float = 15.0
    max_duration_s: float = 3600.0
    opus_complexity: int = SEND_COMPLEXITY
    events_label: str | None = EVENTS_LABEL  # the session's data channel; None: the first one, any label (Live)


@dataclass
class CallStats:
    created: float = field(default_factory=time.monotonic)
    connected_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None


class RealtimeCall:
    def __init__(self, call_id: str, options: CallOptions, engine_factory: EngineFactory,
                 on_ended: Callable[["RealtimeCall"], None] | None = None, client: str = "-") -> None:
        aiortc_patches.require_installed("a WebRTC call")  # at server startup (api/state.py): never lazily
        set_call_id(call_id)  # log lines of this request and of every task the call starts carry its id
        self.id = call_id
        self.options = options
        self.client = client
        self.stats = CallStats()
        self.state = "new"
        self._on_ended = on_ended
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.audio_out = OutboundAudioTrack()
        self.transport = DataChannelTransport(self.audio_out, self._transport_closed, LOCAL_MAX_MESSAGE_SIZE)
        self.engine = engine_factory(self.transport)
        self.inbound: InboundAudio | None = None
        self.video: VideoSampler | None = None
        self._snapshot = None
        self._sinks: list[asyncio.Task] = []
        self._timers: list[asyncio.TimerHandle] = []
        self._closing: asyncio.Task | None = None
        self._pc_closed = False  # closed already (a rejected offer)
        self._events_channel = None
        self.closed = asyncio.Event()

    # ---- signaling -------------------------------------------------------------------------
    async def answer(self, offer_sdp: str) -> str:
        summary = validate_offer(offer_sdp)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)
        try:
            # aiortc creates ICE agents, transports, senders and receivers both in addTransceiver and in
            # setRemoteDescription: the server's variants (aiortc_patches), with the server's codec table
            with server_ice(self.options.ice), aiortc_patches.server_objects():
                self._precreate_transceivers(summary.media)
                await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            self.audio_out.set_send_codec(_audio_send_codec(self.pc.localDescription.sdp),
                                          complexity=self.options.opus_complexity)
        except ProtocolError:
            raise
        except _OFFER_REJECTED as exc:  # aiortc's negotiation failed on what this offer says
            log.info("call=%s offer rejected by aiortc: %s: %s", self.id, type(exc).__name__, exc)
            await self._close_rejected_pc()
            raise ProtocolError(f"The SDP offer was rejected while negotiating its m= sections: {exc}",
                                code="invalid_offer", param="sdp") from None
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(self.options.connect_timeout_s, self._connect_deadline))
        self._timers.append(loop.call_later(self.options.max_duration_s, self._duration_deadline))
        self._set_state("connecting")
        return finalize_answer(self.pc.localDescription.sdp)

    async def _close_rejected_pc(self) -> None:
        """Close a peer connection whose offer failed half-way: aiortc's close() raises on a transceiver it
        never gave a transport (and then never finishes), so whatever transports exist are stopped here too
        (their ICE agents leave the shared ports)."""
        self._pc_closed = True
        try:
            await asyncio.wait_for(self.pc.close(), timeout=5)
            return
        except Exception as exc:
            log.debug("call=%s closing a rejected offer's connection: %s", self.id, exc)
        dtls = [t.receiver.transport for t in self.pc.getTransceivers()]
        if self.pc.sctp is not None:
            dtls.append(self.pc.sctp.transport)
        for transport in dtls:
            for part in (transport, getattr(transport, "transport", None)):
                if part is not None:
                    try:
                        await part.stop()
                    except Exception as exc:
                        log.debug("call=%s stopping %s: %s", self.id, type(part).__name__, exc)

    def _precreate_transceivers(self, media: list[tuple[str, str]]) -> None:
        """Create our transceivers before SRD so codec preferences (no RTX) apply."""
        seen: set[str] = set()
        for kind, _direction in media:
            if kind not in ("audio", "video") or kind in seen:
                continue
            seen.add(kind)
            if kind == "audio":
                transceiver = self.pc.addTransceiver(self.audio_out, direction="sendrecv")
            else:
                transceiver = self.pc.addTransceiver("video", direction="recvonly")
            transceiver.setCodecPreferences(codec_preferences(kind))

    # ---- media & channel -------------------------------------------------------------------
    def _on_datachannel(self, channel) -> None:
        label = self.options.events_label
        if label is not None and channel.label != label:
            log.info("call=%s ignoring data channel %r", self.id, channel.label[:64])
            return
        if self._events_channel is not None:  # the session lives on the first one (a second start() would
            log.info("call=%s ignoring a second %r data channel", self.id, channel.label[:64])  # re-announce it)
            return
        self._events_channel = channel
        self.transport.attach(channel, self.engine.handle_message, self.engine.send_error)
        self.engine.start()

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self.inbound is None:
            self.inbound = InboundAudio(track, self.engine.feed_audio)
            self.inbound.start()
        elif track.kind == "video" and self.video is None:
            self.video = VideoSampler.for_track(self.pc, track)
            self._sinks.append(self.video.start())
            self._sinks.append(asyncio.create_task(self._refresh_snapshot()))
            self.engine.image_source = self._fresh_image
        else:
            self._sinks.append(asyncio.create_task(_drain(track)))

    async def _refresh_snapshot(self) -> None:
        """Keep a JPEG of the latest frame ready (encoded off the loop), so a committed turn can
        attach it without waiting: the model 'looks' at most SNAPSHOT_INTERVAL_S behind live."""
        while True:
            await asyncio.sleep(SNAPSHOT_INTERVAL_S)
            if self.video is not None and self.video.is_live:
                try:
                    self._snapshot = await self.video.latest_jpeg_async("auto")
                except Exception:
                    log.exception("call=%s could not encode a video snapshot", self.id)

    def _fresh_image(self) -> dict | None:
        snap = self._snapshot
        if snap is None or self.video is None or not self.video.is_live:
            return None
        if time.time() - snap.captured_at > SNAPSHOT_MAX_AGE_S:
            return None
        return {"image_url": snap.data_url, "detail": "auto", "width": snap.width, "height": snap.height}

    async def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and self.stats.connected_at is None:
            self.stats.connected_at = time.monotonic()
            self._set_state("connected")
            self._cancel_timer(0)
        elif state in ("failed", "closed"):
            # a caller that vanished: our ICE agent gave up on consent (ice.py), whichever state aiortc shows
            self.hangup(ice_close_reason(self.pc) or ("ice_failed" if state == "failed" else "peer_closed"))

    # ---- lifecycle -------------------------------------------------------------------------
    def _connect_deadline(self) -> None:
        if self.stats.connected_at is None:
            self.hangup("connect_timeout")

    def _duration_deadline(self) -> None:
        self.engine.expire()

    def _transport_closed(self, reason: str) -> None:
        # give the last event a moment on the wire before tearing down
        asyncio.get_running_loop().call_later(0.2, self.hangup, reason)

    def hangup(self, reason: str = "hangup") -> asyncio.Task:
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close(reason))
        return self._closing

    async def _close(self, reason: str) -> None:
        set_call_id(self.id)  # hangup may come from another request's context
        self.stats.end_reason = reason
        for t in self._timers:
            t.cancel()
        self.engine.close(reason)
        if self.inbound is not None:
            await self.inbound.stop()
        for task in self._sinks:
            task.cancel()
        try:
            if not self._pc_closed:
                await asyncio.wait_for(self.pc.close(), timeout=5)
        except Exception:
            log.exception("call=%s error while closing the peer connection", self.id)
        self.stats.ended_at = time.monotonic()
        self._set_state("closed")
        self.closed.set()
        if self._on_ended is not None:
            self._on_ended(self)

    def _cancel_timer(self, index: int) -> None:
        if index < len(self._timers):
            self._timers[index].cancel()

    def _set_state(self, state: str) -> None:
        self.state = state
        extra = ""
        if state == "connected":
            extra = f" setup_ms={(self.stats.connected_at - self.stats.created) * 1000:.0f}"
        elif state == "closed":
            extra = f" reason={self.stats.end_reason} duration_s={self.duration_s:.1f}"
        log.info("call=%s client=%s state=%s%s", self.id, self.client, state, extra)

    @property
    def duration_s(self) -> float:
        return (self.stats.ended_at or time.monotonic()) - self.stats.created


def _audio_send_codec(answer_sdp: str) -> str | None:
    """The codec our audio sender uses: the first one of the answer's first sending audio section."""
    for media in aiortc_sdp.SessionDescription.parse(answer_sdp).media:
        if media.kind == "audio" and media.port != 0 and media.direction in ("sendrecv", "sendonly", None):
            return media.rtp.codecs[0].mimeType if media.rtp.codecs else None
    return None


async def _drain(track: MediaStreamTrack) -> None:
    """Consume a track we do not use yet so aiortc's receive queue never grows."""
    try:
        while True:
            await track.recv()
    except (MediaStreamError, asyncio.CancelledError):
        return
