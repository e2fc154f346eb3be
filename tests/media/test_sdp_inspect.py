"""`inspect-sdp`: the seed review's tables for offers and answers."""

import io
import json
from pathlib import Path

import httpx
import pytest

from openrealtime.media.sdp_inspect import h264_profile, inspect_sdp, main_inspect, render_text

OFFER_PATH = Path(__file__).parent.parent / "fixtures" / "chromium-156-offer.sdp"
OFFER = OFFER_PATH.read_text()

# capture (c) of realtime-protocol.md §2.2 (OpenAI's answer), fingerprint abridged
OPENAI_ANSWER = """v=0
o=- 8184931122902577674 1786967632 IN IP4 0.0.0.0
s=-
t=0 0
a=msid-semantic:WMS *
a=fingerprint:sha-256 A8:BB:42:2E:44:6E
a=ice-lite
a=extmap-allow-mixed
a=group:BUNDLE 0 1
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=setup:active
a=mid:0
a=ice-ufrag:NGikpJ/u0/3oN5GD
a=ice-pwd:ZrAgINTcLMJzFyMkNRgHkP3eSB1FLxwd
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:111 opus/48000/2
a=fmtp:111 minptime=10;useinbandfec=1
a=ssrc:1190514604 cname:realtimeapi
a=msid:realtimeapi audio
a=sendrecv
a=candidate:3506478603 1 udp 2130706431 51.4.112.173 3478 typ host ufrag NGikpJ/u0/3oN5GD
a=candidate:3717646455 1 tcp 1671430143 51.4.112.173 443 typ host tcptype passive ufrag NGikpJ/u0/3oN5GD
a=candidate:1918949051 1 udp 2130706431 20.74.221.21 3478 typ host ufrag NGikpJ/u0/3oN5GD
a=candidate:3641609583 1 tcp 1671430143 20.74.221.21 443 typ host tcptype passive ufrag NGikpJ/u0/3oN5GD
m=application 9 UDP/DTLS/SCTP webrtc-datachannel
c=IN IP4 0.0.0.0
a=setup:active
a=mid:1
a=sendrecv
a=sctp-port:5000
a=max-message-size:1073741823
a=ice-ufrag:NGikpJ/u0/3oN5GD
a=ice-pwd:ZrAgINTcLMJzFyMkNRgHkP3eSB1FLxwd
""".replace("\n", "\r\n")


def summary(report):
    return {row["aspect"]: row["value"] for row in report["summary"]}


def media(report, kind):
    return next(m for m in report["media"] if m["kind"] == kind)


@pytest.mark.parametrize("pli, profile, level", [
    ("42001f", "baseline", "3.1"), ("42e01f", "constrained baseline", "3.1"), ("4d001f", "main", "3.1"),
    ("64001f", "high", "3.1"), ("640c1f", "constrained high", "3.1"), ("42e034", "constrained baseline", "5.2"),
    ("42f00b", "constrained baseline", "1b"), ("4d0032", "main", "5.0"), ("zz", "invalid", None),
])
def test_h264_profile_names(pli, profile, level):
    got = h264_profile(pli)
    assert (got["profile"], got["level"]) == (profile, level)


def test_chromium_offer():
    r = inspect_sdp(OFFER)
    assert r["type"] == "offer"
    assert r["session"]["groups"] == [{"semantics": "BUNDLE", "mids": ["0", "1", "2"]}]
    assert [(m["kind"], m["mid"], m["direction"]) for m in r["media"]] == [
        ("audio", "0", "sendrecv"), ("video", "1", "sendrecv"), ("application", "2", None)]
    ice = r["ice"]
    assert ice["ufrags"] == ["Xo1B"] and ice["options"] == ["trickle"] and not ice["ice_lite"]
    assert not ice["end_of_candidates"] and ice["candidate_lines"] == 24
    first = ice["candidates"][0]
    assert {k: first[k] for k in ("foundation", "component", "transport", "ip", "port", "priority", "type")} == {
        "foundation": "869763210", "component": 1, "transport": "udp", "ip": "127.0.0.1", "port": 42443,
        "priority": 2122194687, "type": "host"}
    tcp = [c for c in ice["candidates"] if c["transport"] == "tcp"]
    assert len(tcp) == 4 and {c["tcptype"] for c in tcp} == {"active"} and tcp[0]["mids"] == ["0", "1", "2"]
    assert {c["family"] for c in ice["candidates"]} == {"ipv4", "ipv6"}
    assert r["dtls"]["setup"] == ["actpass"] and r["dtls"]["fingerprints"][0]["algorithm"] == "sha-256"

    audio = media(r, "audio")
    opus = audio["codecs"][0]
    assert (opus["pt"], opus["name"], opus["clock_rate"], opus["channels"]) == ("111", "opus", 48000, 2)
    assert opus["fmtp"] == {"minptime": "10", "useinbandfec": "1"} and opus["rtcp_fb"] == ["transport-cc"]
    assert [e["name"] for e in audio["header_extensions"]] == [
        "audio-level", "abs-send-time", "transport-wide-cc", "mid"]
    assert audio["rtcp_mux"] and audio["rtcp_rsize"]

    video = media(r, "video")
    h264 = [c for c in video["codecs"] if c["name"] == "H264"]
    assert [(c["pt"], c["h264"]["profile"], c["h264"]["packetization_mode"]) for c in h264] == [
        ("102", "baseline", 1), ("104", "baseline", 0), ("108", "constrained baseline", 1),
        ("114", "constrained baseline", 0), ("116", "main", 1), ("39", "main", 0)]
    assert h264[0]["rtx_pt"] == "103" and set(h264[0]["rtcp_fb"]) >= {"nack", "nack pli", "ccm fir", "goog-remb"}
    assert video["ssrc_groups"] == [{"semantics": "FID", "ssrcs": ["1107552907", "3276913574"]}]
    assert {"rid", "repaired-rid", "transport-wide-cc"} <= {e["name"] for e in video["header_extensions"]}
    assert "a=rtcp-xr:rcvr-rtt=all" in video["other"], "unknown attributes are kept, not fatal"

    dc = media(r, "application")
    assert (dc["sctp_port"], dc["max_message_size"]) == (5000, 262144)

    s = summary(r)
    assert list(s) == ["PeerConnection", "ICE/TURN", "SRTP Encryption", "Audio Transmission", "Video transmission",
                       "DataChannels", "RTP header", "RTCP"]
    assert s["PeerConnection"].startswith("Single PeerConnection using BUNDLE")
    assert s["ICE/TURN"].startswith("Host-candidates only") and "end-of-candidates absent" in s["ICE/TURN"]
    assert s["SRTP Encryption"].startswith("Standard DTLS-SRTP")
    assert s["Audio Transmission"].startswith("Opus with in-band FEC, G722/PCMU/PCMA fallback")
    assert "with RTX" in s["Video transmission"]
    assert "baseline, constrained baseline, main" in s["Video transmission"]
    assert s["DataChannels"] == "Standard SCTP over DTLS (sctp-port 5000, max-message-size 262144)"
    assert "transport-wide-cc" in s["RTP header"] and "RID, R-RID for video" in s["RTP header"]
    assert s["RTCP"].startswith("BWE with transport-wide-cc; NACK/PLI/FIR/REMB/RTX")
    json.dumps(r)  # serialisable


def test_openai_answer_matches_the_seed_summary():
    r = inspect_sdp(OPENAI_ANSWER)
    assert r["type"] == "answer" and r["line_endings"] == "CRLF"
    assert r["ice"]["ice_lite"] and r["ice"]["ufrags"] == ["NGikpJ/u0/3oN5GD"]
    cands = r["ice"]["candidates"]
    assert [(c["transport"], c["port"], c["priority"], c["tcptype"]) for c in cands[:2]] == [
        ("udp", 3478, 2130706431, None), ("tcp", 443, 1671430143, "passive")]
    assert cands[0]["extra"] == {"ufrag": "NGikpJ/u0/3oN5GD"}, "OpenAI's trailing ufrag is tolerated"
    assert r["dtls"]["fingerprints"][0]["scope"] == "session" and r["dtls"]["setup"] == ["active"]
    s = summary(r)
    assert s["ICE/TURN"].startswith("Host-candidates only (no STUN or TURN server)")
    assert "2 UDP, 2 TCP passive" in s["ICE/TURN"] and "ice-lite" in s["ICE/TURN"]
    assert s["Audio Transmission"] == "Opus with in-band FEC; no DTX or RED (sendrecv)"
    assert s["Video transmission"] == "none"
    assert s["RTP header"] == "no header extensions; extmap-allow-mixed"
    assert s["RTCP"] == "no BWE feedback; no NACK/PLI; rtcp-mux, rtcp-rsize"
    assert s["DataChannels"].endswith("(sctp-port 5000, max-message-size 1073741823)")


async def test_answer_from_our_server(echo_server):
    async with httpx.AsyncClient() as http:
        resp = await http.post(echo_server.url + "/v1/realtime/calls", content=OFFER,
                               headers={"Authorization": "Bearer x", "Content-Type": "application/sdp"})
    assert resp.status_code == 201, resp.text
    r = inspect_sdp(resp.text)
    assert r["type"] == "answer" and r["line_endings"] == "CRLF" and not r["warnings"]
    assert not r["ice"]["end_of_candidates"]
    assert r["dtls"]["setup"] == ["active"]
    video = media(r, "video")
    assert video["direction"] == "recvonly"
    assert {c["name"] for c in video["codecs"]} == {"H264"}, "H.264 only, no RTX"
    assert {c["h264"]["packetization_mode"] for c in video["codecs"]} == {1}
    s = summary(r)
    assert s["PeerConnection"] == "Single PeerConnection using BUNDLE (mids 0 1 2)"
    assert s["Video transmission"].startswith("H.264-only without simulcast, RTX; H.264 profiles: ")
    assert s["Audio Transmission"].startswith("Opus with in-band FEC, PCMU/PCMA fallback; no DTX or RED")
    assert "NACK/PLI (no FIR, REMB, RTX)" in s["RTCP"]
    text = render_text(r)
    assert "| PeerConnection " in text and "constrained baseline 3.1" in text


def test_render_text_tables_are_aligned():
    text = render_text(inspect_sdp(OFFER))
    block = text.split("Summary\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len({len(line) for line in block}) == 1, "every row of a table has the same width"
    assert ("| 102 | H264/90000   | level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"
            " | baseline 3.1") in text
    assert "| 1293445650 | 1    | TCP       | 127.0.0.1 | 9     | 1518214911 | host | active " in text
    assert "fingerprint (every m-section) | sha-256 99:11" in text


def test_lf_crlf_and_junk_are_tolerated():
    crlf = inspect_sdp(OFFER.replace("\n", "\r\n"))
    lf = inspect_sdp(OFFER)
    assert crlf["summary"] == lf["summary"] and crlf["line_endings"] == "CRLF" and lf["line_endings"] == "LF"
    junk = OFFER.replace("a=mid:1\n", "a=mid:1\nthis is junk\na=candidate:bad\nx=unknown\na=weird-attr\n")
    r = inspect_sdp(junk)
    assert any("not an SDP line" in w for w in r["warnings"]) and any("candidate" in w for w in r["warnings"])
    assert "a=weird-attr" in media(r, "video")["other"] and "x=unknown" in media(r, "video")["other"]
    assert r["summary"] == lf["summary"]


def test_json_and_escaped_inputs():
    as_json = json.dumps({"type": "answer", "sdp": OPENAI_ANSWER})
    assert inspect_sdp(as_json)["summary"] == inspect_sdp(OPENAI_ANSWER)["summary"]
    escaped = json.dumps(OPENAI_ANSWER)  # one line with \r\n escapes, as copied from a JS console
    assert inspect_sdp(escaped)["summary"] == inspect_sdp(OPENAI_ANSWER)["summary"]


def test_simulcast_and_legacy_datachannel():
    sdp = OFFER.replace("a=ssrc-group:FID", "a=rid:q send\na=rid:h send\na=simulcast:send q;h\na=ssrc-group:FID")
    s = summary(inspect_sdp(sdp))
    assert "with simulcast" in s["Video transmission"]
    legacy = ("v=0\no=- 1 1 IN IP4 0.0.0.0\ns=-\nt=0 0\n"
              "m=application 9 DTLS/SCTP 5000\na=sctpmap:5000 webrtc-datachannel 1024\n")
    s = summary(inspect_sdp(legacy))
    assert "sctpmap" in s["DataChannels"] and "max-message-size absent" in s["DataChannels"]


# ---- CLI entry -----------------------------------------------------------------------------
def test_main_inspect_file_and_json(capsys):
    assert main_inspect(str(OFFER_PATH), False) == 0
    out = capsys.readouterr().out
    assert out.startswith("SDP offer") and "Video transmission" in out
    assert main_inspect(str(OFFER_PATH), True) == 0
    assert json.loads(capsys.readouterr().out)["type"] == "offer"


def test_main_inspect_stdin(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(OPENAI_ANSWER))
    assert main_inspect("-", False) == 0
    assert "ice-lite" in capsys.readouterr().out


@pytest.mark.parametrize("content, message", [
    ("", "is empty"), ("   \n\n", "is empty"), ("hello world\n", "does not look like SDP"),
])
def test_main_inspect_bad_input(tmp_path, capsys, content, message):
    path = tmp_path / "x.sdp"
    path.write_text(content)
    assert main_inspect(str(path), False) == 2
    assert message in capsys.readouterr().err


def test_main_inspect_missing_file(tmp_path, capsys):
    assert main_inspect(str(tmp_path / "nope.sdp"), False) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err and "nope.sdp" in err
