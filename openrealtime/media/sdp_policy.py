"""The SDP answer policy (the seed's table), applied to aiortc.

* audio: Opus 48000/2 `minptime=10;useinbandfec=1` (offer's payload type), then PCMU, PCMA.
  No G722, RED, CN, DTX. Opus carries rtcp-fb `transport-cc`.
* video: H.264 only (42001f, 42e01f, 4d001f, 64001f; packetization-mode=1), no RTX, no
  simulcast, rtcp-fb `transport-cc`, `nack`, `nack pli` (no `goog-remb`, no `ccm fir`).
* header extensions: only what is implemented: `sdes:mid`, transport-wide-cc (we send
  transport-cc feedback and stamp our own packets, :mod:`.aiortc_patches`), and for video
  `sdes:rtp-stream-id` / `sdes:repaired-rtp-stream-id` (parsed/written by aiortc; answering them
  negotiates no simulcast or RTX: aiortc ignores `a=rid`/`a=simulcast` and RTX is filtered by the
  codec preferences). ssrc-audio-level and abs-send-time are not negotiated (audio-level costs
  ~180 µs per outgoing frame in aiortc for nothing a server needs; abs-send-time would only
  feed aiortc's REMB, which we do not advertise).
* Opus in-band FEC is real both ways (:mod:`.opus_fec`): LBRR on in our encoder, FEC/PLC in our
  decoder.

aiortc negotiates the server's calls from this table (:func:`server_codecs`,
:func:`server_header_extensions`) through ``aiortc_patches.codec_tables``; aiortc's own table is
left as it is for other peer connections in the process.
* BUNDLE is required; `a=end-of-candidates` is never sent (trickle stays open, like OpenAI).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiortc import codecs as _codecs
from aiortc import sdp as _sdp
from aiortc.rtcpeerconnection import filter_preferred_codecs, find_common_codecs
from aiortc.rtcrtpparameters import (
    RTCRtcpFeedback,
    RTCRtpCodecCapability,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
)

from ..protocol.errors import ProtocolError

H264_PROFILES = ("42001f", "42e01f", "4d001f", "64001f")
MID_EXTENSION = "urn:ietf:params:rtp-hdrext:sdes:mid"
TWCC_EXTENSION = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
RID_EXTENSION = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
RRID_EXTENSION = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
# ids only matter in offers we make (aiortc test client); one id per URI across kinds (BUNDLE)
EXTENSION_IDS = {MID_EXTENSION: 1, TWCC_EXTENSION: 3, RID_EXTENSION: 10, RRID_EXTENSION: 11}
EXTENSIONS = {"audio": (MID_EXTENSION, TWCC_EXTENSION),
              "video": (MID_EXTENSION, TWCC_EXTENSION, RID_EXTENSION, RRID_EXTENSION)}


def _opus() -> RTCRtpCodecParameters:
    return RTCRtpCodecParameters(
        mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111,
        rtcpFeedback=[RTCRtcpFeedback(type="transport-cc")],
        parameters={"minptime": 10, "useinbandfec": 1},
    )


def _h264(profile: str, pt: int) -> RTCRtpCodecParameters:
    return RTCRtpCodecParameters(
        mimeType="video/H264", clockRate=90000, payloadType=pt,
        rtcpFeedback=[RTCRtcpFeedback(type="transport-cc"), RTCRtcpFeedback(type="nack"),
                      RTCRtcpFeedback(type="nack", parameter="pli")],
        parameters={"level-asymmetry-allowed": "1", "packetization-mode": "1", "profile-level-id": profile},
    )


def server_codecs(kind: str) -> list[RTCRtpCodecParameters]:
    """The codecs the server negotiates for `kind` ("audio" or "video"), in preference order."""
    if kind == "audio":
        return [_opus(), _codecs.PCMU_CODEC, _codecs.PCMA_CODEC]
    return [_h264(p, 102 + i) for i, p in enumerate(H264_PROFILES)]


def server_header_extensions(kind: str) -> list[RTCRtpHeaderExtensionParameters]:
    """The RTP header extensions the server negotiates for `kind`."""
    return [RTCRtpHeaderExtensionParameters(id=EXTENSION_IDS[uri], uri=uri) for uri in EXTENSIONS[kind]]


def codec_preferences(kind: str) -> list[RTCRtpCodecCapability]:
    """Preferences for a pre-created transceiver: our table, without RTX."""
    return [
        RTCRtpCodecCapability(mimeType=c.mimeType, clockRate=c.clockRate, channels=c.channels, parameters=c.parameters)
        for c in server_codecs(kind)
    ]


# ---- offer validation -----------------------------------------------------------------------
@dataclass
class OfferSummary:
    media: list[tuple[str, str]] = field(default_factory=list)  # (kind, direction) in m-line order
    has_audio: bool = False
    has_video: bool = False
    has_datachannel: bool = False


def _invalid(message: str) -> ProtocolError:
    return ProtocolError(message, code="invalid_offer", param="sdp")


def validate_offer(text: str) -> OfferSummary:
    """Check an SDP offer before it reaches aiortc; raise ProtocolError(400) with the reason."""
    if not text or not text.strip():
        raise _invalid("The SDP offer is empty. Send the text of RTCPeerConnection.localDescription.sdp.")
    if not text.lstrip().startswith("v=0"):
        raise _invalid("Invalid SDP offer: it must start with 'v=0'.")
    try:
        desc = _sdp.SessionDescription.parse(text)
    except Exception as exc:  # aiortc raises ValueError/KeyError/IndexError on bad lines
        raise _invalid(f"Invalid SDP offer: could not parse it ({type(exc).__name__}: {exc}).") from None
    if desc.type not in (None, "offer") and desc.type:
        pass
    summary = OfferSummary()
    if not desc.media:
        raise _invalid("Invalid SDP offer: it has no media sections (m= lines).")
    bundle = next((g for g in desc.group if g.semantic == "BUNDLE"), None)
    active = [m for m in desc.media if m.port != 0]
    if bundle is None:
        raise _invalid("Invalid SDP offer: BUNDLE is required (a=group:BUNDLE with every m= section). "
                       "Create the RTCPeerConnection with bundlePolicy 'max-bundle' or 'balanced'.")
    missing = [m.rtp.muxId for m in active if m.rtp.muxId not in bundle.items]
    if missing:
        raise _invalid(f"Invalid SDP offer: m= sections {missing} are not in the BUNDLE group.")
    mids = [m.rtp.muxId for m in desc.media if m.rtp.muxId]
    repeated = sorted({mid for mid in mids if mids.count(mid) > 1})
    if repeated or _sections_with_several_mids(text):
        raise _invalid("Invalid SDP offer: each m= section needs exactly one a=mid of its own"
                       + (f"; {repeated} appear more than once." if repeated else "."))
    for m in desc.media:
        summary.media.append((m.kind, m.direction or "sendrecv"))
        if m.port == 0:
            continue
        if m.kind not in ("audio", "video", "application"):
            raise _invalid(f"Invalid SDP offer: m={m.kind} sections are not supported (audio, video and "
                           "application only); offer it with port 0 or leave it out.")
        ice = m.ice
        if not (ice and ice.usernameFragment and ice.password):
            raise _invalid(f"Invalid SDP offer: m={m.kind} has no a=ice-ufrag / a=ice-pwd.")
        if not (m.dtls and m.dtls.fingerprints):
            raise _invalid(f"Invalid SDP offer: m={m.kind} has no a=fingerprint (DTLS-SRTP is required).")
        if m.kind in ("audio", "video"):
            if not m.rtcp_mux:
                raise _invalid(f"Invalid SDP offer: m={m.kind} lacks a=rtcp-mux, which is required.")
            if not _common_codecs(m):
                raise _invalid(f"Invalid SDP offer: m={m.kind} (mid {m.rtp.muxId}) offers no codec this server "
                               f"receives; it takes {_SUPPORTED[m.kind]}.")
            if m.kind == "audio":
                summary.has_audio = True
            else:
                summary.has_video = True
        elif m.kind == "application":
            summary.has_datachannel = True
    if not summary.has_audio:
        raise _invalid("Invalid SDP offer: an audio m= section is required (add a microphone track or "
                       "pc.addTransceiver('audio')).")
    return summary


def _sections_with_several_mids(text: str) -> bool:
    count = 0
    for line in text.splitlines():
        if line.startswith("m="):
            count = 0
        elif line.startswith("a=mid:"):
            count += 1
            if count > 1:
                return True
    return False


_SUPPORTED = {"audio": "Opus, PCMU or PCMA",
              "video": "H.264 (profiles " + ", ".join(H264_PROFILES) + ") with packetization-mode=1"}


def _common_codecs(media: _sdp.MediaDescription) -> list[RTCRtpCodecParameters]:
    """What aiortc's setRemoteDescription would negotiate for this section (it fails on none)."""
    return filter_preferred_codecs(find_common_codecs(server_codecs(media.kind), media.rtp.codecs),
                                   codec_preferences(media.kind))


# ---- answer post-processing -----------------------------------------------------------------
def finalize_answer(text: str) -> str:
    """Drop `a=end-of-candidates`, use CRLF line endings and terminate the last line."""
    lines = [ln for ln in text.replace("\r\n", "\n").split("\n") if ln and ln != "a=end-of-candidates"]
    return "\r\n".join(lines) + "\r\n"
