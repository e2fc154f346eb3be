"""The SIP parser and server fuzzed (hypothesis): whatever bytes arrive, the parser raises nothing but
SipParseError, and a live server keeps its other call up, answers OPTIONS, and hangs that call up cleanly."""

from __future__ import annotations

import asyncio
import random
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openrealtime.sip.message import SipParseError, parse_message
from openrealtime.sip.sdp import SdpError, negotiate
from tests.support import wait_for
from tests.support.sip import SIPP, Sipp, phone_server, speech_pcap

SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
       "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd\r\na=sendonly\r\n")


def template(method: str, body: str = "") -> bytes:
    return (f"{method} sip:proj@127.0.0.1 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKfuzz;rport\r\n"
            "From: \"Fuzz\" <sip:fuzz@127.0.0.1>;tag=f1\r\nTo: <sip:proj@127.0.0.1>\r\n"
            f"Call-ID: fuzz@127.0.0.1\r\nCSeq: 1 {method}\r\nContact: <sip:fuzz@127.0.0.1:5999>\r\n"
            f"Max-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode()


SEEDS = [template("INVITE", SDP), template("OPTIONS"), template("BYE"), template("CANCEL"), template("ACK"),
         template("REFER"), template("NOTIFY"), b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK1\r\n"
         b"CSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"]


LINES = [b"Content-Length: 99999", b"l: -1", b"CSeq: 99999999999 INVITE", b"Via: SIP/2.0/UDP [::1", b"To: <sip:x;tag=",
         b"Require: 100rel", b" folded", b"Session-Expires: 1", b"Content-Type: application/sdp"]


def mutate(rng: random.Random) -> bytes:
    """A seed message with a few random flips, insertions, deletions, cuts, repeats or odd header lines."""
    data = bytearray(rng.choice(SEEDS))
    for _ in range(rng.randint(1, 6)):
        op = rng.choice(["flip", "insert", "delete", "truncate", "repeat", "header"])
        pos = rng.randint(0, max(0, len(data) - 1))
        if op == "flip" and data:
            data[pos] = rng.randrange(256)
        elif op == "insert":
            data[pos:pos] = rng.randbytes(rng.randint(0, 40))
        elif op == "delete":
            del data[pos:pos + rng.randint(1, 30)]
        elif op == "truncate":
            del data[pos:]
        elif op == "repeat":
            data[pos:pos] = data[pos:pos + rng.randint(1, 200)] * rng.randint(1, 50)
        else:
            data[pos:pos] = rng.choice(LINES) + b"\r\n"
    return bytes(data)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.randoms(use_true_random=False).map(mutate), st.binary(max_size=2000)))
def test_the_parser_raises_only_its_own_error(data):
    for stream in (False, True):
        try:
            message = parse_message(data, stream=stream)
        except SipParseError:
            continue
        message.encode()  # what parsed can be written back


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=600).map(lambda t: SDP[: len(SDP) // 2] + t))
def test_sdp_negotiation_raises_only_its_own_error(text):
    try:
        negotiate(text)
    except SdpError:
        pass


@pytest.mark.skipif(SIPP is None, reason="needs SIPp (Debian package sip-tester)")
async def test_a_fuzzed_server_keeps_its_other_call(tmp_path):
    async with phone_server() as phone:
        pcap = speech_pcap(tmp_path, seconds=20.0)
        async with Sipp("answered_until_bye.xml", phone.sip_port, tmp_path, pcap=pcap) as sipp:
            incoming = await phone.app.next_call()
            call_id = incoming.data.call_id
            await phone.client.realtime.calls.accept(call_id, type="realtime")
            call = phone.server.state.calls.get(call_id)
            await wait_for(lambda: call.leg.packets_in > 10, timeout=10, what="the caller's audio")
            cases = [mutate(random.Random(seed)) for seed in range(400)]
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            reader, writer = await asyncio.open_connection("127.0.0.1", phone.sip_port)
            try:
                for n, data in enumerate(cases):
                    udp.sendto(data[:65000], ("127.0.0.1", phone.sip_port))
                    if n % 40 == 0:
                        writer.write(data)  # a stream gets them too (it may be closed on the first bad frame)
                    if n % 50 == 0:
                        await asyncio.sleep(0.01)
                udp.settimeout(5)
                options = template("OPTIONS").replace(b"branch=z9hG4bKfuzz", b"branch=z9hG4bKprobe")
                udp.sendto(options, ("127.0.0.1", phone.sip_port))
                answer = await asyncio.get_running_loop().run_in_executor(None, _read_until_200, udp)
                assert answer.startswith(b"SIP/2.0 200"), answer[:80]
            finally:
                udp.close()
                writer.close()
            assert call.state == "connected" and phone.server.state.calls.get(call_id) is call
            sent, heard = call.leg.packets_out, call.leg.packets_in
            await wait_for(lambda: call.leg.packets_out > sent and call.leg.packets_in > heard, timeout=5,
                           what="media still flowing both ways")
            await phone.client.realtime.calls.hangup(call_id)
            await sipp.succeeds()


def _read_until_200(sock: socket.socket) -> bytes:
    """The OPTIONS probe's answer (fuzzed requests may have been answered 400 meanwhile)."""
    while True:
        data, _ = sock.recvfrom(65535)
        if b"z9hG4bKprobe" in data:
            return data
