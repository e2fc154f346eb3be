"""Every aiortc / aioice internal openrealtime touches, in one list, checked against what is installed.

openrealtime subclasses aiortc's transports, sender and receiver (copying three short method bodies),
swaps a few names aiortc looks up at call time, and reads private state for metrics. None of that is
aiortc's API, so each internal it relies on is a :class:`Pin` in :data:`PINS`: where it lives, what
kind of thing it is, its parameters, the lines of its source our code depends on, and for a body we
copy, a hash of the whole source. :func:`.install` refuses to patch when :func:`problems` finds one
that no longer holds (naming it), and ``tests/unit/test_aiortc_contract.py`` checks each pin.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
from dataclasses import dataclass
from typing import Any

import aioice
import aiortc

SUPPORTED = {"aiortc": (aiortc.__version__, "1.16."), "aioice": (aioice.__version__, "0.13.")}
# the attribute on a replacement installed in an aiortc module that holds what it replaced
REPLACED = "openrealtime_replaced"

COROUTINE = "coroutine"  # an async function or method
FUNCTION = "function"    # a plain function or method
CLASSMETHOD = "classmethod"
CLASS = "class"
STATE = "state"          # an attribute a method (``set_in``) assigns on each instance
VALUE = "value"          # a module or class attribute


@dataclass(frozen=True)
class Pin:
    owner: str                          # dotted path of the module or class that holds it
    name: str                           # as aiortc's source spells it ("__codecs" for a private one)
    kind: str
    why: str                            # which openrealtime module relies on it, for what
    params: tuple[str, ...] | None = None   # a callable's parameter names
    markers: tuple[str, ...] = ()       # lines of its source our code relies on
    sha256: str | None = None           # of its whole source: a body our code copies
    set_in: str = "__init__"            # STATE: the method that assigns it
    same_as: str | None = None          # VALUE: the object it must be (dotted path)

    @property
    def label(self) -> str:
        return f"{self.owner}.{self.name}"


def resolve(path: str) -> Any:
    """The object at a dotted path: the longest importable module, then attributes."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for part in parts[split:]:
            obj = getattr(obj, part)
        return original(obj)
    raise ImportError(path)


def original(obj: Any) -> Any:
    """What an openrealtime replacement stands in for (``obj`` itself when it is aiortc's own)."""
    return getattr(obj, REPLACED, obj) if not inspect.isclass(obj) else obj


def attribute_name(owner: Any, name: str) -> str:
    """``__x`` on a class is stored as ``_Class__x`` (name mangling)."""
    if inspect.isclass(owner) and name.startswith("__") and not name.endswith("__"):
        return f"_{owner.__name__.lstrip('_')}{name}"
    return name


def _source(obj: Any) -> str:
    return inspect.getsource(inspect.unwrap(obj))


def check(pin: Pin) -> list[str]:
    """What no longer holds about one pin ([] = all of it)."""
    try:
        owner = resolve(pin.owner)
    except (ImportError, AttributeError) as exc:
        return [f"{pin.owner}: not found ({exc})"]
    if pin.kind == STATE:
        setter = inspect.getattr_static(owner, attribute_name(owner, pin.set_in), None)
        if setter is None:
            return [f"{pin.label}: {pin.owner}.{pin.set_in} is gone"]
        if not re.search(rf"self\.{re.escape(pin.name)}\s*(:|=|\+=)", _source(setter)):
            return [f"{pin.label}: no longer set in {pin.owner}.{pin.set_in}"]
        return []
    name = attribute_name(owner, pin.name)
    try:
        raw = inspect.getattr_static(owner, name)
    except AttributeError:
        return [f"{pin.label}: gone"]
    value = original(getattr(owner, name))
    problems = []
    kind = _kind(raw, value)
    if kind != pin.kind:
        problems.append(f"{pin.label}: is a {kind}, not a {pin.kind}")
    if pin.same_as is not None and value is not resolve(pin.same_as):
        problems.append(f"{pin.label}: is not {pin.same_as}")
    if pin.params is not None:
        func = value.__init__ if inspect.isclass(value) else value
        params = tuple(inspect.signature(func).parameters)
        if params != pin.params:
            problems.append(f"{pin.label}: takes {params}, not {pin.params}")
    if pin.markers or pin.sha256:
        source = _source(value)
        problems += [f"{pin.label}: its source lacks {m!r}" for m in pin.markers if m not in source]
        if pin.sha256 and hashlib.sha256(source.encode()).hexdigest() != pin.sha256:
            problems.append(f"{pin.label}: its source changed (openrealtime copies its body)")
    return problems


def _kind(raw: Any, value: Any) -> str:
    if isinstance(raw, classmethod):
        return CLASSMETHOD
    if inspect.isclass(value):
        return CLASS
    if inspect.iscoroutinefunction(value):
        return COROUTINE
    if inspect.isfunction(value):
        return FUNCTION
    return VALUE


def problems() -> list[str]:
    """Everything that does not match the installed aiortc / aioice ([] = openrealtime fits them)."""
    found = [f"{name} {version} is not the {want}x openrealtime was written for"
             for name, (version, want) in SUPPORTED.items() if not version.startswith(want)]
    for pin in PINS:
        found += check(pin)
    return found


_PC = "aiortc.rtcpeerconnection"
_DTLS = "aiortc.rtcdtlstransport.RTCDtlsTransport"
_SENDER = "aiortc.rtcrtpsender.RTCRtpSender"
_RECEIVER = "aiortc.rtcrtpreceiver.RTCRtpReceiver"
_SCTP = "aiortc.rtcsctptransport.RTCSctpTransport"
_ICE = "aioice.ice.Connection"
_BUILD = "peer_connection.py: the server's objects are built from its subclasses"
_TABLES = "codec_tables.py: the server's codec table"
_RTP_IN = "dtls_transport.py: RTP/RTCP receive (transport-cc record, routing, bad packets dropped)"
_RTP_OUT = "rtp_sender.py: transport-cc stamping, the FEC Opus encoder, the audio level"
_RX = "rtp_receiver.py: Opus receive buffer, video jitter buffer, lazy decoder thread"
_SCTP_WHY = "sctp_transport.py: malformed SCTP dropped, reassembly bounded"
_ICE_WHY = "media/ice.py, media/ice_mux.py: the server's ICE agent on the shared ports"
_READ = "internals.py: read for the call monitor, video and metrics"

PINS: tuple[Pin, ...] = (
    # ---- aiortc builds these by the names below: peer_connection.py puts factories there ----------
    Pin(_PC, "RTCDtlsTransport", CLASS, _BUILD, same_as=_DTLS),
    Pin(_PC, "RTCRtpSender", CLASS, _BUILD, same_as=_SENDER),
    Pin(_PC, "RTCRtpReceiver", CLASS, _BUILD, same_as=_RECEIVER),
    Pin(_PC, "RTCSctpTransport", CLASS, _BUILD, same_as=_SCTP),
    Pin(f"{_PC}.RTCPeerConnection", "__createDtlsTransport", FUNCTION, _BUILD,
        markers=("dtlsTransport = RTCDtlsTransport(iceTransport, self.__certificates)",)),
    Pin(f"{_PC}.RTCPeerConnection", "__createTransceiver", FUNCTION, _BUILD,
        markers=("sender=RTCRtpSender(sender_track or kind, dtlsTransport)",
                 "receiver=RTCRtpReceiver(kind, dtlsTransport)")),
    Pin(f"{_PC}.RTCPeerConnection", "__createSctpTransport", FUNCTION, _BUILD,
        markers=("self.__sctp = RTCSctpTransport(dtlsTransport)",)),
    Pin(_DTLS, "__init__", FUNCTION, _BUILD, params=("self", "transport", "certificates")),
    Pin(_SENDER, "__init__", FUNCTION, _RTP_OUT, params=("self", "trackOrKind", "transport"),
        markers=("self.__rtp_header_extensions_map = rtp.HeaderExtensionsMap()",)),
    Pin(_RECEIVER, "__init__", FUNCTION, _RX, params=("self", "kind", "transport"),
        markers=("self.__jitter_buffer = JitterBuffer(capacity=16, prefetch=4)",
                 "self.__decoder_queue: queue.Queue = queue.Queue()",
                 "self.__jitter_buffer = JitterBuffer(capacity=512, is_video=True)",
                 "self.__nack_generator = NackGenerator()")),
    Pin(_SCTP, "__init__", FUNCTION, _BUILD, params=("self", "transport", "port")),
    # ---- the codec table: read where openrealtime's answer is negotiated -------------------------
    Pin(_PC, "CODECS", VALUE, _TABLES, same_as="aiortc.codecs.CODECS"),
    Pin(_PC, "HEADER_EXTENSIONS", VALUE, _TABLES, same_as="aiortc.codecs.HEADER_EXTENSIONS"),
    Pin(f"{_PC}.RTCPeerConnection", "setRemoteDescription", COROUTINE, _TABLES,
        markers=("find_common_codecs(CODECS[media.kind], media.rtp.codecs)",
                 "HEADER_EXTENSIONS[media.kind], media.rtp.headerExtensions")),
    Pin(f"{_PC}.RTCPeerConnection", "createOffer", COROUTINE, _TABLES,
        markers=("CODECS[transceiver.kind][:], transceiver._preferred_codecs",
                 "transceiver._headerExtensions = HEADER_EXTENSIONS[transceiver.kind][:]")),
    Pin("aiortc.codecs", "get_capabilities", FUNCTION, _TABLES + " (setCodecPreferences checks it)",
        markers=("for params in CODECS[kind]:", "for extension in HEADER_EXTENSIONS[kind]:")),
    Pin("aiortc.codecs", "CODECS", VALUE, _TABLES),
    Pin("aiortc.codecs", "HEADER_EXTENSIONS", VALUE, _TABLES),
    # ---- RTP / RTCP receive -----------------------------------------------------------------------
    Pin(_DTLS, "_handle_rtp_data", COROUTINE, _RTP_IN + " (our copy adds two steps)",
        params=("self", "data", "arrival_time_ms"),
        sha256="5def9061cc3da1f67db719e43b0b1ee242688f231eb963cf2cb5d9696abfc9e2"),
    Pin(_DTLS, "_handle_rtcp_data", COROUTINE, _RTP_IN + " (our copy handles transport-cc feedback)",
        params=("self", "data"),
        sha256="5469e786d77b37b25e0a6ca5b7808166d0ddd0175842d8354225ee46a2ca8004"),
    Pin(_DTLS, "_recv_next", COROUTINE, _RTP_IN + "; sctp_transport.py",
        markers=("await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)",
                 "await self._handle_rtcp_data(data)", "await self._data_receiver._handle_data(data)")),
    Pin(_DTLS, "_rtp_router", STATE, _RTP_IN),
    Pin(_DTLS, "_rtp_header_extensions_map", STATE, _RTP_IN),
    Pin(_DTLS, "_send_rtp", COROUTINE, _RTP_IN + " (transport-cc feedback); rtp_receiver.py",
        params=("self", "data")),
    Pin(_DTLS, "_register_rtp_receiver", FUNCTION, _RX, params=("self", "receiver", "parameters")),
    Pin("aiortc.rtcdtlstransport.RtpRouter", "route_rtp", FUNCTION, _RTP_IN + " (SSRCs per receiver)",
        params=("self", "packet"), markers=("self.ssrc_table[packet.ssrc] = pt_receiver",)),
    Pin("aiortc.rtcdtlstransport.RtpRouter", "route_rtcp", FUNCTION, _RTP_IN, params=("self", "packet")),
    Pin("aiortc.rtcdtlstransport.RtpRouter", "ssrc_table", STATE, _RTP_IN),
    Pin("aiortc.rtcdtlstransport.RtpRouter", "senders", STATE, _RTP_IN),
    Pin("aiortc.rtp.RtcpPacket", "parse", CLASSMETHOD, _RTP_IN + " (transport-cc is taken out first)",
        markers=("packets.append(RtcpRtpfbPacket.parse(payload, count))",)),
    Pin("aiortc.rtp", "unpack_remb_fci", FUNCTION, _RTP_IN + " (a truncated REMB is dropped)", params=("data",)),
    Pin(_RECEIVER, "_handle_rtp_packet", COROUTINE, _RX + "; client/rtc.py times arrivals",
        params=("self", "packet", "arrival_time_ms"),
        markers=("self.__jitter_buffer.add(packet)", "if encoded_frame is not None and self.__decoder_thread:")),
    # ---- RTP send ---------------------------------------------------------------------------------
    Pin(_SENDER, "_next_encoded_frame", COROUTINE, _RTP_OUT + " (our copy)", params=("self", "codec"),
        sha256="89dd9fa4fb33741cc60857f1cebae31c9a88b72da9a42f91abc6090f40cb8253"),
    Pin(_SENDER, "__rtp_header_extensions_map", STATE, _RTP_OUT),
    Pin(_SENDER, "__track", STATE, _RTP_OUT, set_in="replaceTrack"),
    Pin(_SENDER, "__encoder", STATE, _RTP_OUT),
    Pin(_SENDER, "__force_keyframe", STATE, _RTP_OUT),
    Pin(_SENDER, "__loop", STATE, _RTP_OUT),
    Pin(_SENDER, "_enabled", STATE, _RTP_OUT),
    Pin(_SENDER, "send", COROUTINE, _RTP_OUT, markers=("self.__rtp_header_extensions_map.configure(parameters)",)),
    Pin(_SENDER, "_run_rtp", COROUTINE, _RTP_OUT,
        markers=("enc_frame = await self._next_encoded_frame(codec)",
                 "packet.serialize(self.__rtp_header_extensions_map)",
                 "await self.transport._send_rtp(packet_bytes)")),
    Pin(_SENDER, "_retransmit", COROUTINE, _RTP_OUT, markers=("packet.serialize(self.__rtp_header_extensions_map)",)),
    Pin("aiortc.rtcrtpsender", "RTCEncodedFrame", CLASS, _RTP_OUT, params=("self", "payloads", "timestamp",
                                                                            "audio_level")),
    Pin("aiortc.rtp.HeaderExtensionsMap", "set", FUNCTION, _RTP_OUT,
        markers=("values.transport_sequence_number is not None", "self.__ids.transport_sequence_number")),
    Pin("aiortc.rtp.HeaderExtensionsMap", "__ids", STATE, _RTP_OUT),
    Pin("aiortc.codecs", "get_encoder", FUNCTION, _RTP_OUT, params=("codec",)),
    Pin("aiortc.rtp", "compute_audio_level_dbov", FUNCTION, _RTP_OUT + " (ours gives the same result)",
        params=("frame",)),
    Pin("aiortc.codecs.opus.OpusEncoder", "__init__", FUNCTION, "opus_fec.py: FecOpusEncoder sets its state",
        markers=("self.codec = CodecContext.create(\"libopus\", \"w\")", "self.resampler = AudioResampler(",
                 "self.first_packet_pts: Optional[int] = None")),
    Pin("aiortc.codecs.opus.OpusEncoder", "pack", FUNCTION, "opus_fec.py: EncodedOpus packed as a packet",
        markers=("timestamp = convert_timebase(packet.pts, packet.time_base, TIME_BASE)",
                 "return [bytes(packet)], timestamp")),
    # ---- RTP receive: the receiver ---------------------------------------------------------------
    Pin(_RECEIVER, "receive", COROUTINE, _RX + " (our copy starts the decoder thread lazily)",
        params=("self", "parameters"),
        sha256="d6d8d8d7a0bf4e95f3fb7cb78cf275d0a5f50c4912e0cb8498272008779916ef"),
    Pin(_RECEIVER, "__stop_decoder", FUNCTION, _RX,
        markers=("self.__decoder_queue.put(None)", "self.__decoder_thread.join()")),
    Pin(_RECEIVER, "_send_rtcp", COROUTINE, _RX + " (ours skips a report it cannot encode)",
        params=("self", "packet"), markers=("await self.transport._send_rtp(bytes(packet))",)),
    Pin(_RECEIVER, "_run_rtcp", COROUTINE, _RX),
    Pin(_RECEIVER, "_send_rtcp_pli", COROUTINE, _READ + " (PLIs counted and sent by video.py)",
        params=("self", "media_ssrc")),
    Pin(_RECEIVER, "_send_rtcp_nack", COROUTINE, _READ + " (NACKs counted by the monitor)",
        params=("self", "media_ssrc", "lost")),
    *(Pin(_RECEIVER, name, STATE, _RX) for name in (
        "__jitter_buffer", "__decoder_queue", "__decoder_thread", "__decoder_error", "__nack_generator",
        "__codecs", "__rtx_ssrc", "__started", "__kind", "__transport", "__rtcp_task", "_track")),
    Pin(_RECEIVER, "__timestamp_mapper", STATE, "client/rtc.py: arrival time of a decoded frame"),
    Pin("aiortc.rtcrtpreceiver.TimestampMapper", "_origin", STATE, "client/rtc.py"),
    Pin(_RECEIVER, "__remote_streams", STATE, "tests/fuzz: SSRCs a receiver learned"),
    Pin("aiortc.rtcrtpreceiver.RemoteStreamTrack", "_queue", STATE, "opus_fec.py: decoded frames"),
    Pin("aiortc.rtcrtpreceiver", "decoder_worker", FUNCTION, _RX,
        params=("loop", "input_q", "output_q", "decode_error"),
        markers=("task = input_q.get()", "if task is None:",
                 "asyncio.run_coroutine_threadsafe(output_q.put(None), loop)")),
    Pin("aiortc.rtcrtpreceiver.NackGenerator", "add", FUNCTION, "video_jitter.py: holes",
        markers=("self.missing.add(seq)", "self.missing.discard(packet.sequence_number)")),
    Pin("aiortc.rtcrtpreceiver.NackGenerator", "missing", STATE, "video_jitter.py: holes"),
    Pin("aiortc.jitterbuffer.JitterBuffer", "__init__", FUNCTION, "video_jitter.py, opus_fec.py",
        params=("self", "capacity", "prefetch", "is_video")),
    Pin("aiortc.jitterbuffer.JitterBuffer", "add", FUNCTION, "video_jitter.py",
        markers=("return pli_flag, self._remove_frame(packet.sequence_number)",)),
    Pin("aiortc.jitterbuffer.JitterBuffer", "_remove_frame", FUNCTION, "video_jitter.py",
        params=("self", "sequence_number")),
    Pin("aiortc.jitterbuffer.JitterBuffer", "remove", FUNCTION, "video_jitter.py", params=("self", "count")),
    *(Pin("aiortc.jitterbuffer.JitterBuffer", name, STATE, "video_jitter.py")
      for name in ("_capacity", "_origin", "_packets")),
    # ---- SCTP -------------------------------------------------------------------------------------
    Pin(_SCTP, "_data_channel_receive", COROUTINE, _SCTP_WHY, params=("self", "stream_id", "pp_id", "data"),
        markers=("assert stream_id not in self._data_channels", '.decode("utf8")')),
    Pin(_SCTP, "_handle_data", COROUTINE, _SCTP_WHY, params=("self", "data"),
        markers=("parse_packet(data)", "await self._receive_chunk(chunk)")),
    Pin(_SCTP, "_receive_data_chunk", COROUTINE, _SCTP_WHY, params=("self", "chunk")),
    Pin(_SCTP, "_receive_chunk", COROUTINE, _SCTP_WHY, markers=("await self._receive_data_chunk(chunk)",)),
    Pin(_SCTP, "_abort", COROUTINE, _SCTP_WHY, params=("self",)),
    Pin(_SCTP, "_set_state", FUNCTION, _SCTP_WHY, params=("self", "state")),
    *(Pin(_SCTP, name, STATE, _SCTP_WHY) for name in ("_advertised_rwnd", "_association_state",
                                                       "_inbound_streams")),
    Pin("aiortc.rtcsctptransport.InboundStream", "reassembly", STATE, _SCTP_WHY),
    Pin("aiortc.rtcsctptransport", "LOCAL_MAX_MESSAGE_SIZE", VALUE, _SCTP_WHY + "; media/call.py"),
    # ---- ICE --------------------------------------------------------------------------------------
    Pin("aiortc.rtcicetransport", "Connection", CLASS, "ice_agent.py: the server's ICE agent",
        same_as="aioice.Connection"),
    Pin("aiortc.rtcicetransport.RTCIceGatherer", "__init__", FUNCTION, "ice_agent.py",
        markers=("self._connection = Connection(",)),
    Pin("aiortc.rtcicetransport.RTCIceGatherer", "_connection", STATE, _READ),
    Pin("aiortc.rtcicetransport.RTCIceTransport", "_connection", STATE, _READ),
    *(Pin(_ICE, name, STATE, _ICE_WHY) for name in (
        "_local_candidates_start", "_local_candidates_end", "_local_candidates", "_components",
        "_protocols", "_nominated", "_query_consent_task")),
    Pin(_ICE, "_valid_username", FUNCTION, _ICE_WHY, params=("self", "username")),
    Pin(_ICE, "build_request", FUNCTION, _ICE_WHY, params=("self", "pair", "nominate")),
    Pin(_ICE, "connect", COROUTINE, _ICE_WHY + " (our query_consent replaces aioice's)",
        markers=("self._query_consent_task = asyncio.create_task(self.query_consent())",)),
    Pin(_ICE, "close", COROUTINE, _ICE_WHY,
        markers=("if self._query_consent_task and not self._query_consent_task.done():",)),
    Pin(_ICE, "gather_candidates", COROUTINE, _ICE_WHY, params=("self",)),
    Pin(_ICE, "get_event", COROUTINE, _ICE_WHY, params=("self",)),
    Pin("aioice.ice.StunProtocol", "__init__", FUNCTION, _ICE_WHY, params=("self", "receiver")),
    Pin(_ICE, "request_received", FUNCTION, _ICE_WHY + " (the mux hands it STUN requests)",
        params=("self", "message", "addr", "protocol")),
    Pin(_ICE, "data_received", FUNCTION, _ICE_WHY + " (the mux hands it DTLS/SRTP)",
        params=("self", "data", "component")),
    Pin("aioice.ice.StunProtocol", "request", COROUTINE, _ICE_WHY + " (consent checks)",
        params=("self", "request", "addr", "integrity_key", "retransmissions")),
    Pin("aioice.ice.StunProtocol", "connection_lost", FUNCTION, _ICE_WHY, params=("self", "exc")),
    Pin("aioice.ice.StunProtocol", "datagram_received", FUNCTION, _ICE_WHY, params=("self", "data", "addr")),
    Pin("aioice.stun.Transaction", "response_received", FUNCTION, _ICE_WHY, params=("self", "message", "addr")),
    Pin("aioice.ice.StunProtocol", "transactions", STATE, _ICE_WHY),
    Pin("aioice.ice.StunProtocol", "receiver", STATE, _ICE_WHY),
    Pin("aioice.ice", "ConnectionClosed", CLASS, _ICE_WHY),
    Pin("aioice.ice", "get_host_addresses", FUNCTION, _ICE_WHY, params=("use_ipv4", "use_ipv6")),
    # ---- read for metrics ------------------------------------------------------------------------
    Pin("aiortc.rtcrtptransceiver.RTCRtpTransceiver", "_codecs", STATE, _READ + " (negotiated codecs)"),
)
