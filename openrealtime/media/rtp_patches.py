"""The few hooks into aiortc 1.16 that make what the SDP answer advertises true.

Applied once, process-wide, by :func:`install` (``sdp_policy.install_codec_policy`` calls it, so
the table edits that *advertise* transport-cc and FEC never exist without the code behind them):

1. ``RTCDtlsTransport._handle_rtp_data`` is replaced by a copy of aiortc's body (parse → route →
   ``receiver._handle_rtp_packet``) that also records the transport-wide sequence number and
   arrival time of every RTP packet on the transport (routed or not) in a
   :class:`.twcc.TwccRecorder`. It and ``_handle_rtcp_data`` drop a packet the receive path fails on
   instead of letting the exception end the transport's receive loop (the call); ``rtp.unpack_remb_fci``
   reports a truncated REMB as the ValueError aiortc's router catches; a receiver learns at most
   ``MAX_SSRCS_PER_RECEIVER`` SSRCs; ``RTCRtpReceiver._send_rtcp`` skips a report it cannot encode
   instead of ending the receiver's RTCP task. A timer per transport (every 50 ms) sends transport-cc feedback
   with ``RTCDtlsTransport._send_rtp`` when ≥ 8 packets are pending or 100 ms have passed.
2. ``RTCRtpSender.__init__`` gives each sender a header-extension map that stamps a transport-wide
   sequence number (one counter per transport) on every packet it serialises, retransmissions
   included — only when the extension was negotiated.
3. ``RtcpRtpfbPacket.parse`` returns :class:`RtcpTwccPacket` for FMT=15 instead of misreading the
   FCI as NACKs, and ``RTCRtpSender._handle_rtcp_packet`` hands those to the transport's
   :class:`.twcc.TwccSendStats` (counters over the peer's feedback on our packets).
4. ``RTCRtpReceiver.__init__`` puts an :class:`.opus_fec.OpusReceiveBuffer` in place of the audio
   jitter buffer (FEC/PLC, no prefetch stall), and a :class:`.video_jitter.VideoJitterBuffer` in
   place of the video one (gives up on an unrecovered lost packet after 0.35 s and asks for a
   keyframe, instead of freezing for 512 packets).
5. ``aiortc.codecs.OpusEncoder`` becomes :class:`.opus_fec.FecOpusEncoder` (LBRR on, mono 32 kbps).
   For Opus, :class:`.audio_out.OutboundAudioTrack` encodes itself and returns
   :class:`.opus_fec.EncodedOpus` packets (not ``av.Frame``s), which
   ``RTCRtpSender._next_encoded_frame`` only hands to ``encoder.pack()`` (checked below, not patched).
6. An audio ``RTCRtpReceiver`` starts aiortc's decoder thread only when the first frame for it
   arrives (PCMU/PCMA): Opus is decoded by the receive buffer on the loop, so most calls never
   start it. ``rtcrtpreceiver.threading`` is a shim whose ``Thread`` returns a :class:`LazyThread`
   for such a receiver's decoder queue (:class:`LazyDecoderQueue`) and real threads otherwise.

Everything is keyed on aiortc internals (name-mangled attributes, method bodies), so
:func:`verify_aiortc` checks them before patching and raises if aiortc changed;
``tests/media/test_twcc.py`` pins the same contract (plus a hash of the replaced method).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import math
import queue
import struct
import threading
import time
from typing import Any

import numpy as np

import aiortc
import aiortc.codecs as aiortc_codecs
from aiortc import jitterbuffer as _aiortc_jitter
from aiortc import rtcrtpreceiver as _aiortc_receiver
from aiortc import rtp as aiortc_rtp
from aiortc import rtcdtlstransport as _aiortc_dtls
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import HeaderExtensionsMap, RtcpRtpfbPacket, RtpPacket, pack_rtcp_packet

from .opus_fec import FecOpusEncoder, OpusReceiveBuffer
from .twcc import FMT_TWCC, RTCP_RTPFB, TwccRecorder, TwccSendStats
from .video_jitter import VideoJitterBuffer

log = logging.getLogger("openrealtime.rtp")

SUPPORTED_AIORTC = "1.16."
# sha256 of inspect.getsource(RTCDtlsTransport._handle_rtp_data) in aiortc 1.16.0
HANDLE_RTP_DATA_SHA256 = "5def9061cc3da1f67db719e43b0b1ee242688f231eb963cf2cb5d9696abfc9e2"
FEEDBACK_TICK_S = 0.05
FEEDBACK_MAX_INTERVAL_S = 0.1
FEEDBACK_MIN_PENDING = 8
# SSRCs one receiver learns (aiortc maps any new SSRC with its payload type to it, and keeps statistics and
# a receiver-report block per SSRC): a peer cycling SSRCs would otherwise grow both without bound.
MAX_SSRCS_PER_RECEIVER = 16
# A/B switch for experiments and tests: False records arrivals but never sends feedback.
SEND_FEEDBACK = True

_STATE_ATTR = "_or_twcc"
_installed = False
_originals: dict[str, Any] = {}


# ---- contract ------------------------------------------------------------------------------------
_MARKERS = {
    "RTCRtpReceiver.__init__": (RTCRtpReceiver.__init__,
                                ("self.__jitter_buffer = JitterBuffer(capacity=16, prefetch=4)",
                                 "self.__decoder_queue: queue.Queue = queue.Queue()",
                                 "self.__jitter_buffer = JitterBuffer(capacity=512, is_video=True)",
                                 "self.__nack_generator = NackGenerator()",
                                 "self.__codecs: dict[int, RTCRtpCodecParameters] = {}")),
    "NackGenerator.add": (_aiortc_receiver.NackGenerator.add, ("self.missing.add(seq)",
                                                             "self.missing.discard(packet.sequence_number)")),
    "JitterBuffer.add": (_aiortc_jitter.JitterBuffer.add, ("return pli_flag, self._remove_frame(packet.sequence_number)",)),
    "RTCRtpReceiver._handle_rtp_packet": (RTCRtpReceiver._handle_rtp_packet,
                                          ("self.__jitter_buffer.add(packet)",
                                           "if encoded_frame is not None and self.__decoder_thread:")),
    "RTCRtpReceiver.receive": (RTCRtpReceiver.receive, ("self.__codecs[codec.payloadType] = codec",
                                                        "self.__decoder_thread = threading.Thread(",
                                                        "target=decoder_worker,",
                                                        "self.__decoder_queue,",
                                                        "self.__decoder_thread.start()")),
    "RTCRtpReceiver.__stop_decoder": (RTCRtpReceiver._RTCRtpReceiver__stop_decoder,
                                      ("self.__decoder_queue.put(None)", "self.__decoder_thread.join()")),
    "rtcrtpreceiver.decoder_worker": (_aiortc_receiver.decoder_worker,
                                      ("task = input_q.get()", "if task is None:",
                                       "asyncio.run_coroutine_threadsafe(output_q.put(None), loop)")),
    "RTCRtpSender.__init__": (RTCRtpSender.__init__,
                              ("self.__rtp_header_extensions_map = rtp.HeaderExtensionsMap()",)),
    "RTCRtpSender.send": (RTCRtpSender.send, ("self.__rtp_header_extensions_map.configure(parameters)",)),
    "RTCRtpSender._run_rtp": (RTCRtpSender._run_rtp,
                              ("packet.serialize(self.__rtp_header_extensions_map)",
                               "await self.transport._send_rtp(packet_bytes)")),
    "RTCRtpSender._retransmit": (RTCRtpSender._retransmit,
                                 ("packet.serialize(self.__rtp_header_extensions_map)",)),
    "RTCDtlsTransport._recv_next": (RTCDtlsTransport._recv_next,
                                    ("await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)",)),
    "RTCDtlsTransport._handle_rtcp_data": (RTCDtlsTransport._handle_rtcp_data,
                                           ("packets = RtcpPacket.parse(data)",)),
    "RTCRtpReceiver._send_rtcp": (RTCRtpReceiver._send_rtcp, ("await self.transport._send_rtp(bytes(packet))",)),
    "RtpRouter.route_rtp": (_aiortc_dtls.RtpRouter.route_rtp, ("self.ssrc_table[packet.ssrc] = pt_receiver",)),
    "HeaderExtensionsMap.set": (HeaderExtensionsMap.set,
                                ("values.transport_sequence_number is not None",
                                 "self.__ids.transport_sequence_number")),
    "RtcpPacket.parse": (aiortc_rtp.RtcpPacket.parse,
                         ("packets.append(RtcpRtpfbPacket.parse(payload, count))",)),
    "codecs.get_encoder": (aiortc_codecs.get_encoder, ("return OpusEncoder()",)),
    # audio_out.OutboundAudioTrack returns pre-encoded packets for Opus: the sender must only pack them
    "RTCRtpSender._next_encoded_frame": (RTCRtpSender._next_encoded_frame,
                                         ("if isinstance(data, Frame):",
                                          "payloads, timestamp = self.__encoder.pack(data)")),
    "OpusEncoder.pack": (aiortc_codecs.opus.OpusEncoder.pack,
                         ("timestamp = convert_timebase(packet.pts, packet.time_base, TIME_BASE)",
                          "return [bytes(packet)], timestamp")),
}


def handle_rtp_data_digest(func: Any = None) -> str:
    func = func or _originals.get("_handle_rtp_data", RTCDtlsTransport._handle_rtp_data)
    return hashlib.sha256(inspect.getsource(func).encode()).hexdigest()


def verify_aiortc() -> list[str]:
    """What does not match the aiortc internals these hooks rely on ([] = all good)."""
    problems = []
    if not aiortc.__version__.startswith(SUPPORTED_AIORTC):
        problems.append(f"aiortc {aiortc.__version__} is not {SUPPORTED_AIORTC}x")
    for name, (func, markers) in _MARKERS.items():
        try:
            source = inspect.getsource(func)
        except (OSError, TypeError) as exc:
            problems.append(f"{name}: no source ({exc})")
            continue
        for marker in markers:
            if marker not in source:
                problems.append(f"{name}: missing {marker!r}")
    if getattr(_aiortc_receiver, "threading", None) not in (threading, _threading_shim):
        problems.append("aiortc.rtcrtpreceiver.threading is not the threading module")
    if not hasattr(HeaderExtensionsMap(), "_HeaderExtensionsMap__ids"):
        problems.append("HeaderExtensionsMap has no __ids")
    if handle_rtp_data_digest() != HANDLE_RTP_DATA_SHA256:
        problems.append("RTCDtlsTransport._handle_rtp_data changed (our replacement copies its body)")
    return problems


# ---- per-transport state -----------------------------------------------------------------------
class TwccTransportState:
    """TWCC bookkeeping for one BUNDLE transport (``RTCDtlsTransport._or_twcc``)."""

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


# ---- 1. receive: record + route (aiortc's body plus two lines) ----------------------------------
async def _handle_rtp_data(self: RTCDtlsTransport, data: bytes, arrival_time_ms: int) -> None:
    try:
        packet = RtpPacket.parse(data, self._rtp_header_extensions_map)
    except (ValueError, struct.error) as exc:  # struct.error: an extension of the wrong size (aiortc's own
        log.debug("x RTP parsing failed: %s", exc)  # parser only expects ValueError; found by fuzzing)
        return

    seq = packet.extensions.transport_sequence_number
    if seq is not None:
        state = self.__dict__.get(_STATE_ATTR) or twcc_state(self)
        state.recorder.record(seq, time.monotonic_ns() // 1000, packet.ssrc)
        if state._timer is None:
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
        except Exception as exc:  # noqa: BLE001 - see _dropped
            _dropped(self, "RTP", exc)


def _dropped(transport: RTCDtlsTransport, what: str, exc: Exception) -> None:
    """A packet our receive path could not handle is dropped: an exception here would end the transport's
    receive loop (``RTCDtlsTransport.__run``), and with it the whole call. Logged with its traceback the
    first time per transport, then every 1000th."""
    count = transport.__dict__.get("_or_dropped", 0) + 1
    transport._or_dropped = count
    transport._or_dropped_last = f"{what}: {type(exc).__name__}: {exc}"
    if count == 1 or count % 1000 == 0:
        log.warning("dropped a %s packet the receive path failed on (%d on this transport)", what, count,
                    exc_info=exc)


async def _handle_rtcp_data(self: RTCDtlsTransport, data: bytes) -> None:
    try:
        await _originals["_handle_rtcp_data"](self, data)
    except Exception as exc:  # noqa: BLE001 - see _dropped
        _dropped(self, "RTCP", exc)


async def _receiver_send_rtcp(self: RTCRtpReceiver, packet: Any) -> None:
    """aiortc's RTCRtpReceiver._send_rtcp, except that a report the peer's streams made unencodable (more
    than 31 report blocks, a jitter beyond 32 bits) is skipped: the exception ended the receiver's RTCP task
    for the rest of the call, and its stop() then waited for that task forever (found by fuzzing)."""
    try:
        data = bytes(packet)
    except (ValueError, struct.error, OverflowError) as exc:
        log.debug("x RTCP report not sent: %s", exc)
        return
    try:
        await self.transport._send_rtp(data)
    except ConnectionError:
        pass


def _unpack_remb_fci(data: bytes) -> tuple[int, list[int]]:
    """aiortc's REMB parser, with a count that overruns the SSRC list as the ValueError its callers catch
    (it raised struct.error, which ended the receive loop: found by fuzzing, tests/fuzz)."""
    try:
        return _originals["unpack_remb_fci"](data)
    except struct.error:
        raise ValueError("REMB SSRC list shorter than its count") from None


# ---- 2. send: stamp transport-wide sequence numbers --------------------------------------------
class StampingExtensionsMap(HeaderExtensionsMap):
    """A sender's header-extension map that stamps the transport-wide sequence number."""

    def __init__(self, sender: RTCRtpSender) -> None:
        super().__init__()
        self._sender = sender

    def set(self, values: aiortc_rtp.HeaderExtensions) -> tuple[int, bytes]:
        if self._HeaderExtensionsMap__ids.transport_sequence_number:
            transport = self._sender.transport
            state = transport.__dict__.get(_STATE_ATTR) or twcc_state(transport)
            values.transport_sequence_number = state.send.take()
        return HeaderExtensionsMap.set(self, values)


def _sender_init(self: RTCRtpSender, *args: Any, **kwargs: Any) -> None:
    _originals["RTCRtpSender.__init__"](self, *args, **kwargs)
    self._RTCRtpSender__rtp_header_extensions_map = StampingExtensionsMap(self)


# ---- 3. incoming transport-cc feedback ------------------------------------------------------------
class RtcpTwccPacket(RtcpRtpfbPacket):
    """RTPFB FMT=15 as received: ``payload`` is sender SSRC + media SSRC + FCI (no NACK list)."""

    payload: bytes = b""

    def __bytes__(self) -> bytes:
        body = self.payload + bytes(-len(self.payload) % 4)
        return pack_rtcp_packet(RTCP_RTPFB, FMT_TWCC, body)


def _rtpfb_parse(cls: type, data: bytes, fmt: int) -> RtcpRtpfbPacket:
    if fmt == FMT_TWCC:
        if len(data) < 8:
            raise ValueError("RTCP RTP feedback length is invalid")
        ssrc, media_ssrc = struct.unpack_from("!LL", data, 0)
        packet = RtcpTwccPacket(fmt=fmt, ssrc=ssrc, media_ssrc=media_ssrc)
        packet.payload = bytes(data)
        return packet
    return _originals["RtcpRtpfbPacket.parse"](cls, data, fmt)


async def _sender_handle_rtcp(self: RTCRtpSender, packet: Any) -> None:
    if isinstance(packet, RtcpTwccPacket):
        twcc_state(self.transport).send.on_feedback(packet.payload)
        return
    await _originals["RTCRtpSender._handle_rtcp_packet"](self, packet)


# ---- 4. audio receive path ------------------------------------------------------------------------
def _receiver_init(self: RTCRtpReceiver, kind: str, transport: RTCDtlsTransport) -> None:
    _originals["RTCRtpReceiver.__init__"](self, kind, transport)
    if kind == "audio":
        self._RTCRtpReceiver__jitter_buffer = OpusReceiveBuffer(self)
        self._RTCRtpReceiver__decoder_queue = LazyDecoderQueue()
    else:
        self._RTCRtpReceiver__jitter_buffer = VideoJitterBuffer(self._RTCRtpReceiver__nack_generator)


class LazyDecoderQueue(queue.Queue):
    """An audio receiver's decoder queue: the first frame put starts its decoder thread."""

    def __init__(self) -> None:
        super().__init__()
        self.thread: LazyThread | None = None

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is not None and self.thread is not None:
            self.thread.ensure_started()
        super().put(item, block, timeout)


class LazyThread:
    """Stands in for the decoder ``threading.Thread`` that ``RTCRtpReceiver.receive`` starts."""

    def __init__(self, target: Any, name: str, args: tuple) -> None:
        self._args = args
        self.thread = threading.Thread(target=target, name=name, args=args)
        self._wanted = False
        self._lock = threading.Lock()

    def start(self) -> None:
        self._wanted = True  # the real thread starts with the first frame

    @property
    def started(self) -> bool:
        return self.thread.ident is not None

    def ensure_started(self) -> None:
        if self._wanted and not self.started:
            with self._lock:
                if not self.started:
                    self.thread.start()

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        with self._lock:
            self._wanted = False
            started = self.started
        if started:
            self.thread.join(timeout)
            return
        # never started: what decoder_worker does on its None, end the remote track
        loop, _queue, output_q, _error = self._args
        try:
            loop.call_soon_threadsafe(output_q.put_nowait, None)
        except RuntimeError:  # loop already closed
            pass


class _ThreadingShim:
    """``aiortc.rtcrtpreceiver.threading``: lazy decoder threads for :class:`LazyDecoderQueue`."""

    def __getattr__(self, name: str) -> Any:
        return getattr(threading, name)

    @staticmethod
    def Thread(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 - mirrors threading.Thread
        worker_args = kwargs.get("args", ())
        if (kwargs.get("target") is _aiortc_receiver.decoder_worker and len(worker_args) == 4
                and isinstance(worker_args[1], LazyDecoderQueue)):
            lazy = LazyThread(kwargs["target"], kwargs.get("name", "audio-decoder"), worker_args)
            worker_args[1].thread = lazy
            return lazy
        return threading.Thread(*args, **kwargs)


_threading_shim = _ThreadingShim()


def decoder_thread_started(receiver: RTCRtpReceiver) -> bool | None:
    """Whether an audio receiver's decoder thread runs (None: no lazy thread here)."""
    thread = getattr(receiver, "_RTCRtpReceiver__decoder_thread", None)
    if isinstance(thread, LazyThread):
        return thread.started
    return None


def opus_buffer(receiver: RTCRtpReceiver) -> OpusReceiveBuffer | None:
    buf = getattr(receiver, "_RTCRtpReceiver__jitter_buffer", None)
    return buf if isinstance(buf, OpusReceiveBuffer) else None


def video_buffer(receiver: RTCRtpReceiver) -> VideoJitterBuffer | None:
    buf = getattr(receiver, "_RTCRtpReceiver__jitter_buffer", None)
    return buf if isinstance(buf, VideoJitterBuffer) else None


# ---- audio level -----------------------------------------------------------------------------------
def fast_audio_level_dbov(frame: Any) -> int:
    """RFC 6465 Appendix A level of an s16 frame, as aiortc's `rtp.compute_audio_level_dbov`, in numpy
    (~100x faster than its per-sample Python loop, which runs on the event loop for every sent frame)."""
    samples = np.frombuffer(bytes(frame.planes[0]), dtype="<i2")[: frame.samples * len(frame.layout.channels)]
    if samples.size == 0:
        return -127
    energy = float(np.dot(samples.astype(np.int64), samples.astype(np.int64)))
    rms = math.sqrt(energy / (frame.samples * 32767.0 * 32767.0))
    if rms <= 0:
        return -127
    return round(min(0.0, max(-127.0, 20 * math.log10(rms))))


# ---- install ---------------------------------------------------------------------------------------
def install() -> None:
    """Apply the hooks (idempotent). Raises RuntimeError if aiortc is not what they expect."""
    global _installed
    if _installed:
        return
    problems = verify_aiortc()
    if problems:
        raise RuntimeError("openrealtime's aiortc hooks do not fit this aiortc: " + "; ".join(problems))
    _originals["_handle_rtp_data"] = RTCDtlsTransport._handle_rtp_data
    _originals["_handle_rtcp_data"] = RTCDtlsTransport._handle_rtcp_data
    _originals["unpack_remb_fci"] = aiortc_rtp.unpack_remb_fci
    _originals["RTCRtpReceiver._send_rtcp"] = RTCRtpReceiver._send_rtcp
    _originals["RTCRtpSender.__init__"] = RTCRtpSender.__init__
    _originals["RTCRtpSender._handle_rtcp_packet"] = RTCRtpSender._handle_rtcp_packet
    _originals["RtcpRtpfbPacket.parse"] = RtcpRtpfbPacket.parse.__func__
    _originals["RTCRtpReceiver.__init__"] = RTCRtpReceiver.__init__
    _originals["OpusEncoder"] = aiortc_codecs.OpusEncoder
    _originals["compute_audio_level_dbov"] = aiortc_rtp.compute_audio_level_dbov

    RTCDtlsTransport._handle_rtp_data = _handle_rtp_data
    RTCDtlsTransport._handle_rtcp_data = _handle_rtcp_data
    aiortc_rtp.unpack_remb_fci = _unpack_remb_fci
    RTCRtpReceiver._send_rtcp = _receiver_send_rtcp
    RTCRtpSender.__init__ = _sender_init
    RTCRtpSender._handle_rtcp_packet = _sender_handle_rtcp
    RtcpRtpfbPacket.parse = classmethod(_rtpfb_parse)
    RTCRtpReceiver.__init__ = _receiver_init
    aiortc_codecs.OpusEncoder = FecOpusEncoder
    aiortc_rtp.compute_audio_level_dbov = fast_audio_level_dbov
    _aiortc_receiver.threading = _threading_shim
    _installed = True


def installed() -> bool:
    return _installed


def original(name: str) -> Any:
    return _originals.get(name)
