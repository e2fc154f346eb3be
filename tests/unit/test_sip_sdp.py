"""SDP offer/answer for SIP calls (openrealtime/sip/sdp.py): codec choice, telephone-event, hold directions,
SDES keys, refused sections."""

import base64

import pytest

from openrealtime.sip.sdp import Origin, SdpError, negotiate, parse_sdp

KEY = base64.b64encode(bytes(range(30))).decode()


def offer(m: str, *attrs: str, c: str = "192.0.2.10", extra: str = "") -> str:
    lines = ["v=0", "o=- 1 1 IN IP4 192.0.2.10", "s=-", f"c=IN IP4 {c}", "t=0 0", f"m={m}", *attrs]
    return "\r\n".join(lines) + "\r\n" + extra


def test_first_offered_codec_with_telephone_event():
    result = negotiate(offer("audio 4000 RTP/AVP 8 0 101", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16"))
    plan = result.plan
    assert (plan.codec, plan.payload_type, plan.dtmf_payload_type) == ("PCMA", 8, 101)
    assert (plan.remote_host, plan.remote_port, plan.direction, plan.security) == ("192.0.2.10", 4000, "sendrecv",
                                                                                    "rtp")
    answer = parse_sdp(result.answer(address="198.51.100.1", port=30000, origin=Origin()))
    audio = answer.media[0]
    assert (audio.port, audio.formats, answer.connection) == (30000, ["8", "101"], "198.51.100.1")
    assert audio.rtpmap[101] == ("telephone-event", 8000, 1) and audio.fmtp[101] == "0-16"
    assert audio.direction == "sendrecv"


def test_opus_preferred_when_offered():
    text = offer("audio 4000 RTP/AVP 0 8 111 101 102", "a=rtpmap:111 opus/48000/2", "a=fmtp:111 useinbandfec=1",
                 "a=rtpmap:101 telephone-event/8000", "a=rtpmap:102 telephone-event/48000")
    result = negotiate(text)
    plan = result.plan
    assert (plan.codec, plan.payload_type, plan.clock_rate, plan.dtmf_payload_type) == ("OPUS", 111, 48000, 102)
    audio = parse_sdp(result.answer(address="198.51.100.1", port=30000, origin=Origin())).media[0]
    assert audio.formats == ["111", "102"]
    assert audio.rtpmap[111] == ("opus", 48000, 2) and audio.rtpmap[102] == ("telephone-event", 48000, 1)
    assert "useinbandfec=1" in audio.fmtp[111] and "stereo=0" in audio.fmtp[111]
    # a re-INVITE keeps the codec in use while it is still offered; telephone-event/8000 is taken with Opus too
    again = negotiate(text, keep_codec="PCMU").plan
    assert (again.codec, again.dtmf_payload_type) == ("PCMU", 101)
    only_8k = negotiate(offer("audio 4000 RTP/AVP 111 101", "a=rtpmap:111 opus/48000/2",
                              "a=rtpmap:101 telephone-event/8000")).plan
    assert (only_8k.codec, only_8k.dtmf_payload_type, only_8k.dtmf_clock_rate) == ("OPUS", 101, 8000)


def test_unsupported_codecs_and_other_sections():
    with pytest.raises(SdpError) as info:
        negotiate(offer("audio 4000 RTP/AVP 9 18", "a=rtpmap:9 G722/8000"))
    assert info.value.status == 488
    text = offer("audio 4000 RTP/AVP 96 0", "a=rtpmap:96 iLBC/8000",
                 extra="m=video 4002 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n")
    result = negotiate(text)
    assert result.plan.codec == "PCMU"
    answer = parse_sdp(result.answer(address="198.51.100.1", port=30000, origin=Origin()))
    assert [(m.kind, m.port) for m in answer.media] == [("audio", 30000), ("video", 0)]
    with pytest.raises(SdpError):
        negotiate(offer("audio 4000 UDP/TLS/RTP/SAVP 0"))  # DTLS-SRTP is WebRTC's, not offered on the SIP leg


@pytest.mark.parametrize("attr, c, ours", [
    ("a=sendonly", "192.0.2.10", "recvonly"),
    ("a=inactive", "192.0.2.10", "inactive"),
    ("a=recvonly", "192.0.2.10", "sendonly"),
    ("a=sendrecv", "0.0.0.0", "recvonly"),  # RFC 2543 hold
])
def test_hold_directions(attr, c, ours):
    plan = negotiate(offer("audio 4000 RTP/AVP 0", attr, c=c)).plan
    assert plan.direction == ours
    assert not plan.sends or ours == "sendonly"


def test_sdes_srtp():
    text = offer("audio 4000 RTP/SAVP 0", "a=crypto:1 AES_CM_256_HMAC_SHA1_80 inline:" + KEY,
                 f"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{KEY}|2^20",
                 f"a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:{KEY}")
    result = negotiate(text)
    plan = result.plan
    assert plan.security == "srtp" and plan.remote_crypto.tag == "2" and plan.remote_crypto.key == bytes(range(30))
    assert plan.local_crypto.suite == "AES_CM_128_HMAC_SHA1_32" and plan.local_crypto.key != plan.remote_crypto.key
    answer = result.answer(address="198.51.100.1", port=30000, origin=Origin())
    assert "m=audio 30000 RTP/SAVP 0" in answer and "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:" in answer
    best_effort = negotiate(offer("audio 4000 RTP/AVP 0", f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}"))
    assert best_effort.plan.security == "srtp" and best_effort.plan.proto == "RTP/AVP"
    unknown_suite = offer("audio 4000 RTP/AVP 0", "a=crypto:1 F8_128_HMAC_SHA1_80 inline:" + KEY)
    assert negotiate(unknown_suite).plan.security == "rtp"
    for bad in ("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY + "|2^20|1:4",  # an MKI
                "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ="):  # a short key
        with pytest.raises(SdpError):
            negotiate(offer("audio 4000 RTP/SAVP 0", bad))


def test_reinvite_keeps_the_codec_and_bumps_the_version():
    text = offer("audio 4000 RTP/AVP 0 8")
    assert negotiate(text, keep_codec="PCMA").plan.codec == "PCMA"
    origin = Origin()
    first = negotiate(text).answer(address="198.51.100.1", port=1, origin=origin)
    second = negotiate(text).answer(address="198.51.100.1", port=1, origin=origin)
    version = [int(line.split()[2]) for line in (first + second).splitlines() if line.startswith("o=")]
    assert version[1] == version[0] + 1


@pytest.mark.parametrize("text", ["", "hello", "v=0\r\nm=audio x RTP/AVP 0\r\n", "v=0\r\nc=IN IP4 not-an-ip\r\n",
                                  "v=0\r\nm=audio 4000 RTP/AVP 0\r\n"])
def test_bad_offers(text):
    with pytest.raises(SdpError):
        negotiate(text)


def test_our_offer_for_an_invite_without_one():
    from openrealtime.sip.sdp import build_offer

    ours = parse_sdp(build_offer(address="198.51.100.1", port=30000, origin=Origin()))
    audio = ours.media[0]
    assert (audio.port, audio.proto, audio.formats) == (30000, "RTP/AVP", ["111", "0", "8", "101"])
    assert audio.rtpmap[111] == ("opus", 48000, 2) and audio.direction == "sendrecv"
    plan = negotiate(offer("audio 4000 RTP/AVP 8 101", "a=rtpmap:101 telephone-event/8000")).plan  # their answer
    assert (plan.codec, plan.dtmf_payload_type, plan.remote_port) == ("PCMA", 101, 4000)
