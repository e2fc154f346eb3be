"""The SDP answer policy (the seed's table) on a real Chromium 156 offer."""

import re
from pathlib import Path

import httpx
import pytest

OFFER = (Path(__file__).parent.parent / "fixtures" / "chromium-156-offer.sdp").read_text()
ALLOWED_H264 = {"42001f", "42e01f", "4d001f", "64001f"}


def sections(sdp: str) -> tuple[list[str], list[list[str]]]:
    lines = sdp.split("\r\n")
    session, media, current = [], [], None
    for line in lines:
        if line.startswith("m="):
            current = [line]
            media.append(current)
        elif current is None:
            session.append(line)
        else:
            current.append(line)
    return session, media


def attr(section: list[str], name: str) -> list[str]:
    return [ln.split(":", 1)[1] for ln in section if ln.startswith(f"a={name}:")]


async def post_offer(server, offer: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(server.url + "/v1/realtime/calls", content=offer,
                               headers={"Authorization": "Bearer x", "Content-Type": "application/sdp"})


def with_video_direction(offer: str, direction: str) -> str:
    head, _, video = offer.partition("m=video")
    return head + "m=video" + video.replace("a=sendrecv", f"a={direction}", 1)


@pytest.fixture
async def answer(echo_server):
    resp = await post_offer(echo_server, OFFER)
    assert resp.status_code == 201, resp.text
    return resp


async def test_reply_framing(answer):
    assert answer.headers["content-type"].startswith("application/sdp")
    assert re.fullmatch(r"/v1/realtime/calls/rtc_[0-9a-f]{32}", answer.headers["location"])
    body = answer.text
    assert body.endswith("\r\n")
    assert "\n" not in body.replace("\r\n", "")


async def test_bundle_dtls_ice(answer):
    session, media = sections(answer.text)
    assert "a=group:BUNDLE 0 1 2" in session
    assert [m[0].split()[0] for m in media] == ["m=audio", "m=video", "m=application"]
    for m in media:
        assert "a=setup:active" in m
        cands = attr(m, "candidate")
        assert cands, "every m-section carries the host candidates"
        for cand in cands:
            parts = cand.split()
            assert parts[1] == "1", "no separate RTCP candidates"
            assert parts[4] == "127.0.0.1", "only the advertised address"
            assert parts[7] == "host"
    assert "a=end-of-candidates" not in answer.text
    ufrags = set(re.findall(r"a=ice-ufrag:(\S+)", answer.text))
    assert len(ufrags) == 1 and len(ufrags.pop()) >= 16
    for m in media[:2]:
        assert "a=rtcp-mux" in m


async def test_audio_codecs(answer):
    _, media = sections(answer.text)
    audio = media[0]
    assert audio[0].split()[3:] == ["111", "0", "8"], "Opus (offer PT), PCMU, PCMA; no RED/G722/CN/DTMF"
    assert attr(audio, "rtpmap") == ["111 opus/48000/2", "0 PCMU/8000", "8 PCMA/8000"]
    assert attr(audio, "fmtp") == ["111 minptime=10;useinbandfec=1"]
    assert "usedtx=1" not in answer.text
    assert "a=sendrecv" in audio


async def test_video_h264_only(answer):
    _, media = sections(answer.text)
    video = media[1]
    pts = video[0].split()[3:]
    rtpmaps = attr(video, "rtpmap")
    assert len(rtpmaps) == len(pts) >= 1
    assert all(r.split()[1] == "H264/90000" for r in rtpmaps), rtpmaps
    for fmtp in attr(video, "fmtp"):
        params = dict(p.split("=") for p in fmtp.split(" ", 1)[1].split(";"))
        assert params["packetization-mode"] == "1"
        assert params["profile-level-id"].lower() in ALLOWED_H264
    assert not any("rtx" in r.lower() for r in rtpmaps)
    assert not any(ln.startswith(("a=simulcast", "a=rid", "a=ssrc-group")) for ln in video)
    assert "a=recvonly" in video
    feedback = {f.split(" ", 1)[1] for f in attr(video, "rtcp-fb")}
    assert "goog-remb" not in feedback and "ccm fir" not in feedback


TWCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
RRID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"


def extmaps(section: list[str]) -> dict[str, int]:
    return {e.split()[1]: int(e.split()[0].split("/")[0]) for e in attr(section, "extmap")}


def offer_extmaps(kind: str) -> dict[str, int]:
    _, media = sections(OFFER.replace("\r\n", "\n").replace("\n", "\r\n"))
    return extmaps(next(m for m in media if m[0].startswith(f"m={kind}")))


async def test_datachannel_and_extensions(answer):
    _, media = sections(answer.text)
    app = media[2]
    assert app[0].startswith("m=application") and "UDP/DTLS/SCTP webrtc-datachannel" in app[0]
    assert attr(app, "sctp-port") == ["5000"]
    audio, video = extmaps(media[0]), extmaps(media[1])
    # only what is implemented, with the offer's ids (transport-wide-cc: we send feedback and
    # stamp our packets; mid; rid/rrid are parsed/written by aiortc and negotiate no simulcast)
    offered_audio, offered_video = offer_extmaps("audio"), offer_extmaps("video")
    assert audio == {MID: offered_audio[MID], TWCC: offered_audio[TWCC]}
    assert video == {u: offered_video[u] for u in (MID, TWCC, RID, RRID)}
    for m in media[:2]:
        uris = list(extmaps(m))
        assert "urn:ietf:params:rtp-hdrext:ssrc-audio-level" not in uris
        assert "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time" not in uris


async def test_rtcp_feedback(answer):
    _, media = sections(answer.text)
    audio, video = media[0], media[1]
    audio_fb = attr(audio, "rtcp-fb")
    assert audio_fb == ["111 transport-cc"], "transport-cc on Opus only (G.711 has none offered)"
    video_pts = video[0].split()[3:]
    fb_by_pt: dict[str, set[str]] = {}
    for fb in attr(video, "rtcp-fb"):
        pt, value = fb.split(" ", 1)
        fb_by_pt.setdefault(pt, set()).add(value)
    assert set(fb_by_pt) == set(video_pts)
    for pt, values in fb_by_pt.items():
        assert values == {"transport-cc", "nack", "nack pli"}, (pt, values)
    text = answer.text
    for absent in ("goog-remb", "ccm fir", "rtx/", "a=simulcast", "a=rid:", "a=ssrc-group:FID", "apt="):
        assert absent not in text, absent


async def test_sendonly_video_offer(echo_server):
    resp = await post_offer(echo_server, with_video_direction(OFFER, "sendonly"))
    assert resp.status_code == 201, resp.text
    _, media = sections(resp.text)
    assert "a=recvonly" in media[1]


async def test_audio_only_offer(echo_server):
    head, _, rest = OFFER.partition("m=video")
    _, _, app = rest.partition("m=application")
    offer = (head + "m=application" + app).replace("a=group:BUNDLE 0 1 2", "a=group:BUNDLE 0 2")
    resp = await post_offer(echo_server, offer)
    assert resp.status_code == 201, resp.text
    _, media = sections(resp.text)
    assert [m[0].split()[0] for m in media] == ["m=audio", "m=application"]
