"""An aiortc client in the server's own process runs stock aiortc: the server's calls are built from
openrealtime's aiortc objects (media/aiortc_patches), the client's from aiortc's own classes, which the
install leaves untouched, and it negotiates from aiortc's own codec table. So the in-process callers of
the tests and benches check interop with stock aiortc, not with a copy of the server."""

from __future__ import annotations

import inspect
import threading

import aioice
from aiortc import rtcrtpreceiver, rtp
from aiortc.codecs import get_encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtcsctptransport import RTCSctpTransport
from aiortc.rtp import HeaderExtensionsMap, RtcpPacket, RtcpRtpfbPacket

from openrealtime.client.rtc import RealtimeRtcClient
from openrealtime.media import aiortc_patches
from openrealtime.media.aiortc_patches.dtls_transport import ServerDtlsTransport, peek_twcc_state
from openrealtime.media.aiortc_patches.rtp_receiver import ServerRtpReceiver
from openrealtime.media.aiortc_patches.rtp_sender import ServerRtpSender
from openrealtime.media.aiortc_patches.sctp_transport import ServerSctpTransport
from openrealtime.media.opus_fec import FecOpusEncoder, OpusReceiveBuffer
from tests.support import speechlike, wait_for

AIORTC_CLASSES = (RTCDtlsTransport, RTCRtpSender, RTCRtpReceiver, RTCSctpTransport, HeaderExtensionsMap,
                  RtcpPacket, RtcpRtpfbPacket, JitterBuffer, OpusEncoder, aioice.Connection)


def _objects(pc):
    transceivers = pc.getTransceivers()
    return {"sender": [t.sender for t in transceivers], "receiver": [t.receiver for t in transceivers],
            "dtls": [transceivers[0].receiver.transport], "sctp": [pc.sctp]}


async def test_a_client_in_the_servers_process_runs_stock_aiortc(echo_server):
    assert aiortc_patches.installed(), "the server installed the patches at startup"
    client = RealtimeRtcClient(echo_server.url, session={"type": "realtime"}, video=True)
    resp = await client.connect()
    assert resp.status_code == 201
    offer = client.pc.localDescription.sdp
    # the client offers from aiortc's table, the server answers from its own
    assert "G722/8000" in offer and "VP8/90000" in offer and "ssrc-audio-level" in offer
    assert "transport-wide-cc" not in offer and "useinbandfec" not in offer
    assert "G722" not in resp.text and "VP8" not in resp.text and "useinbandfec=1" in resp.text
    await client.next_event("session.created")
    call = echo_server.state.calls.get(client.call_id)
    client.mic.play(speechlike(1.0).tobytes())
    await wait_for(lambda: call.inbound.voiced_frames > 10, 10, interval=0.05, what="the server decoded our audio")
    await wait_for(lambda: client.audio.voiced_frames > 10, 10, interval=0.05, what="the echo came back")

    ours, theirs = _objects(call.pc), _objects(client.pc)
    expected = {"sender": (ServerRtpSender, RTCRtpSender), "receiver": (ServerRtpReceiver, RTCRtpReceiver),
                "dtls": (ServerDtlsTransport, RTCDtlsTransport), "sctp": (ServerSctpTransport, RTCSctpTransport)}
    for role, (server_class, stock_class) in expected.items():
        assert all(type(o) is server_class for o in ours[role]), role
        assert all(type(o) is stock_class for o in theirs[role]), role
    audio_sender = client.pc.getTransceivers()[0].sender
    audio_receiver = client.pc.getTransceivers()[0].receiver
    assert type(audio_sender._RTCRtpSender__encoder) is OpusEncoder
    assert type(audio_sender._RTCRtpSender__rtp_header_extensions_map) is HeaderExtensionsMap
    assert type(audio_receiver._RTCRtpReceiver__jitter_buffer) is JitterBuffer
    assert type(audio_receiver._RTCRtpReceiver__decoder_thread) is threading.Thread
    assert peek_twcc_state(audio_sender.transport) is None
    assert type(call.pc.getTransceivers()[0].sender._RTCRtpSender__encoder) is FecOpusEncoder
    assert type(call.pc.getTransceivers()[0].receiver._RTCRtpReceiver__jitter_buffer) is OpusReceiveBuffer
    await client.close()

    # aiortc's classes and functions are its own: nothing was replaced in them
    for cls in AIORTC_CLASSES:
        for name, member in vars(cls).items():
            func = getattr(member, "__func__", member)
            if inspect.isfunction(func):
                assert func.__module__.startswith(("aiortc", "aioice")), f"{cls.__name__}.{name}"
    for func in (rtp.compute_audio_level_dbov, rtp.unpack_remb_fci, get_encoder, rtcrtpreceiver.decoder_worker):
        assert func.__module__.startswith("aiortc"), func
    assert rtcrtpreceiver.threading is threading
