"""The RTP leg's parts (openrealtime/sip/): the jitter buffer and concealment, RFC 4733 key presses, and two
RtpLegs talking over loopback, in clear and with SDES-SRTP."""

import asyncio
import struct

import numpy as np

from openrealtime.media.audio_out import OutboundAudioTrack
from openrealtime.sip.dtmf import DtmfReceiver, info_key
from openrealtime.sip.jitter import Concealer, JitterBuffer
from openrealtime.sip.rtp import RtpLeg, parse_rtp
from openrealtime.sip.sdp import Crypto, MediaPlan
from tests.support import speech, wait_for


def payload(n: int) -> bytes:
    return bytes([n % 256]) * 160


def kinds(released) -> list[tuple[str, int]]:
    return [(r.kind, r.samples) for r in released]


def test_jitter_buffer_in_order_reordered_lost_late():
    jb = JitterBuffer(wait_s=0.06, max_ahead=5)
    assert kinds(jb.push(1, 100, 1000, payload(0), 0.0)) == [("audio", 160)]
    assert jb.push(1, 102, 1320, payload(2), 0.01) == []  # 101 missing: held
    out = jb.push(1, 101, 1160, payload(1), 0.02)  # arrives late but in time: both in order
    assert [r.payload[0] for r in out] == [1, 2]
    assert jb.push(1, 104, 1640, payload(4), 0.03) == []  # 103 lost
    assert jb.tick(0.05) == []
    assert kinds(jb.tick(0.1)) == [("lost", 160), ("audio", 160)]  # waited 60 ms: concealed
    assert jb.lost == 1
    assert jb.push(1, 103, 1480, payload(3), 0.11) == [] and jb.late == 1  # too late now
    assert jb.push(1, 104, 1640, payload(4), 0.12) == []  # duplicate of a played one: late too


def test_jitter_buffer_silence_gap_and_resets():
    jb = JitterBuffer()
    jb.push(7, 1, 0, payload(0), 0.0)
    assert kinds(jb.push(7, 2, 160 + 800, payload(1), 0.2)) == [("silence", 800), ("audio", 160)]  # DTX
    assert kinds(jb.push(8, 5000, 99, payload(2), 0.3)) == [("audio", 160)]  # a new SSRC restarts
    assert kinds(jb.push(8, 40000, 99, payload(3), 0.4)) == [("audio", 160)]  # a jump no reordering explains
    assert jb.resets == 2
    assert kinds(jb.push(8, 40001, 259 + 10**6, payload(4), 0.5))[0] == ("silence", 8000)  # capped at 1 s
    wrap = JitterBuffer()
    wrap.push(1, 65535, 0, payload(0), 0.0)
    assert kinds(wrap.push(1, 0, 160, payload(1), 0.01)) == [("audio", 160)]  # the sequence wraps


def test_concealment_fades_out():
    c = Concealer()
    c.heard(np.full(160, 10000, dtype=np.int16))
    filled = c.conceal(800)
    assert filled[0] == 10000 and filled[-1] == 0 and filled[400] < filled[100]


def test_dtmf_once_per_key_press():
    keys = []
    rx = DtmfReceiver(keys.append)

    def event(key: int, ts: int, end: bool, duration: int, now: float = 0.0):
        rx.packet(bytes([key, 0x80 if end else 0]) + struct.pack("!H", duration), ts, now)

    for d in (160, 320, 480):
        event(5, 1000, False, d)
    for _ in range(3):
        event(5, 1000, True, 640)  # the three redundant end packets
    event(11, 5000, False, 160)  # '#' whose end packets are all lost…
    event(1, 9000, False, 160)  # …reported when the next key starts
    rx.tick(5.0)  # and that one after END_TIMEOUT_S of silence
    event(16, 13000, True, 160)  # flash: not a key
    assert keys == ["5", "#", "1"]
    assert info_key("application/dtmf-relay", b"Signal=*\r\nDuration=160\r\n") == "*"
    assert info_key("application/dtmf", b"7") == "7"
    assert info_key("text/plain", b"7") is None


def plan(port: int, crypto_in: Crypto | None = None, crypto_out: Crypto | None = None, **kw) -> MediaPlan:
    values = dict(codec="PCMU", payload_type=0, clock_rate=8000, dtmf_payload_type=101, remote_host="127.0.0.1",
                  remote_port=port, direction="sendrecv", remote_crypto=crypto_in, local_crypto=crypto_out)
    values.update(kw)
    return MediaPlan(**values)


async def two_legs(crypto_a: Crypto | None = None, crypto_b: Crypto | None = None):
    heard = {"a": bytearray(), "b": bytearray()}
    keys: list[str] = []
    a = RtpLeg(plan(0), OutboundAudioTrack(), heard["a"].extend, keys.append)
    b = RtpLeg(plan(0), OutboundAudioTrack(), heard["b"].extend, keys.append)
    port_a, port_b = await a.open("127.0.0.1"), await b.open("127.0.0.1")
    a.set_plan(plan(port_b, crypto_b, crypto_a))
    b.set_plan(plan(port_a, crypto_a, crypto_b))
    return a, b, heard


async def test_two_legs_carry_audio_both_ways():
    a, b, heard = await two_legs()
    try:
        a.audio_out.write(speech(400), response_id="r1", item_id="i1")
        a.audio_out.end_response("r1")
        a.start()
        b.start()
        await wait_for(lambda: len(heard["b"]) >= 300 * 48, timeout=10, what="audio at b")
        pcm = np.frombuffer(bytes(heard["b"]), dtype="<i2")
        assert np.abs(pcm).max() > 3000  # the speech came through, resampled to 24 kHz and back
        assert a.packets_out > 10 and b.packets_in > 10 and b.dropped == 0
        assert a.audio_out.played_ms("i1") >= 400  # playout accounting drives truncation as on WebRTC
    finally:
        await a.stop()
        await b.stop()


async def test_opus_legs_carry_audio_both_ways_and_conceal_a_loss():
    """Opus on the line: the player encodes (as for WebRTC), the far leg decodes to 24 kHz; a lost packet is rebuilt
    from the next one's in-band FEC."""
    opus = dict(codec="OPUS", payload_type=111, clock_rate=48000)
    heard = bytearray()
    a = RtpLeg(plan(0, **opus), OutboundAudioTrack(), lambda pcm: None, lambda key: None)
    b = RtpLeg(plan(0, **opus), OutboundAudioTrack(), heard.extend, lambda key: None)
    port_a, port_b = await a.open("127.0.0.1"), await b.open("127.0.0.1")
    a.set_plan(plan(port_b, **opus))
    b.set_plan(plan(port_a, **opus))
    sent: list[bytes] = []
    send = a._transport.sendto

    def lossy(packet, addr):  # the 20th packet never arrives
        sent.append(packet)
        if len(sent) != 20:
            send(packet, addr)

    a._transport.sendto = lossy
    try:
        assert a.audio_out.encoder is not None  # Opus encoded by the player itself
        a.audio_out.write(speech(800), response_id="r1", item_id="i1")
        a.audio_out.end_response("r1")
        a.start()
        b.start()
        await wait_for(lambda: len(heard) >= 700 * 48 and b.packets_in >= 30, timeout=10, what="opus audio at b")
        pcm = np.frombuffer(bytes(heard), dtype="<i2")
        assert np.abs(pcm).max() > 3000 and b.dropped == 0
        assert parse_rtp(sent[1])[3] - parse_rtp(sent[0])[3] == 960  # 20 ms on the 48 kHz clock
        await wait_for(lambda: b.jitter.lost == 1, timeout=5, what="the lost packet concealed")
        assert b.stream.fec_frames + b.stream.plc_frames >= 1 and b.stats()["concealed_ms"] == 20
    finally:
        await a.stop()
        await b.stop()


async def test_srtp_legs_and_a_wrong_key():
    key_a, key_b = Crypto("1", "AES_CM_128_HMAC_SHA1_80", bytes(range(30))), \
        Crypto("1", "AES_CM_128_HMAC_SHA1_80", bytes(range(30, 60)))
    a, b, heard = await two_legs(key_a, key_b)
    try:
        a.start()
        await wait_for(lambda: b.packets_in > 5, timeout=10, what="SRTP packets accepted")
        assert b.dropped == 0 and len(heard["b"]) > 0
        b.set_plan(plan(a.local_port, Crypto("1", "AES_CM_128_HMAC_SHA1_80", bytes(30)), key_b))  # wrong key
        before = b.packets_in
        await wait_for(lambda: b.dropped > 5, timeout=10, what="packets with a wrong key dropped")
        assert b.packets_in == before
    finally:
        await a.stop()
        await b.stop()


async def test_latching_follows_the_caller_behind_nat():
    leg = RtpLeg(plan(9), OutboundAudioTrack(), lambda pcm: None, lambda key: None)  # SDP says port 9
    port = await leg.open("127.0.0.1")
    caller = await asyncio.get_running_loop().create_datagram_endpoint(asyncio.DatagramProtocol,
                                                                       local_addr=("127.0.0.1", 0))
    transport = caller[0]
    try:
        packet = struct.pack("!BBHII", 0x80, 0, 1, 160, 1234) + bytes(160)
        transport.sendto(packet, ("127.0.0.1", port))
        await wait_for(lambda: leg.packets_in == 1, timeout=5, what="packet")
        assert leg.remote == transport.get_extra_info("sockname")[:2]
        assert parse_rtp(packet)[2:5] == (1, 160, 1234)
        transport.sendto(b"\x00" * 20, ("127.0.0.1", port))  # not RTP
        transport.sendto(struct.pack("!BBHII", 0x80, 18, 2, 320, 1234) + bytes(20), ("127.0.0.1", port))  # PT 18
        await wait_for(lambda: leg.dropped == 2, timeout=5, what="bad packets dropped")
    finally:
        transport.close()
        await leg.stop()


async def test_a_caller_that_stops_sending_is_heard_as_silence_once():
    """Silence suppression: the session hears silence in real time while no packet comes, and the timestamp gap
    is not replayed on top of it when the caller's packets resume."""
    heard = bytearray()
    leg = RtpLeg(plan(9), OutboundAudioTrack(), heard.extend, lambda key: None)
    port = await leg.open("127.0.0.1")
    caller, _ = await asyncio.get_running_loop().create_datagram_endpoint(asyncio.DatagramProtocol,
                                                                          local_addr=("127.0.0.1", 0))
    try:
        leg.start()
        for n in range(5):
            caller.sendto(struct.pack("!BBHII", 0x80, 0, n, 160 * n, 77) + b"\xff" * 160, ("127.0.0.1", port))
        await wait_for(lambda: leg.filled_samples >= 8 * 160, timeout=10, what="silence while nothing comes")
        gap = 8000  # the next packet's timestamp: a 1 s silence by the caller's clock (DTX)
        caller.sendto(struct.pack("!BBHII", 0x80, 0, 5, 800 + gap, 77) + b"\xff" * 160, ("127.0.0.1", port))
        await wait_for(lambda: leg.packets_in == 6, timeout=5, what="the packet after the gap")
        given = (len(heard) // 2) * 8000 // 24000  # samples at 8 kHz handed to the session
        assert given <= 6 * 160 + max(leg.filled_samples, gap) + 480  # the gap once, not filler + gap
        assert leg.stats()["silence_filled_ms"] > 0
    finally:
        caller.close()
        await leg.stop()
