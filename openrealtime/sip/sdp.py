"""SDP offer/answer for the RTP leg (RFC 3264, RFC 4566; SDES-SRTP RFC 4568; RFC 4733 events).

The answer takes Opus (`opus/48000/2`, answered with `useinbandfec=1`, mono both ways) when the
caller offers it, else the first codec of the caller's audio section that we implement (PCMU/8000,
PCMA/8000); adds `telephone-event` when offered (at the chosen codec's clock when offered so, else at
8000), answers RTP/SAVP(F) with our own key for the
first crypto suite we know (AES_CM_128_HMAC_SHA1_80 or _32; MKI and session parameters refused; keys
offered on RTP/AVP, "best effort" SRTP, are taken too),
mirrors the caller's direction (hold: `sendonly` / `inactive` / `c=0.0.0.0` → we stop sending), and
rejects every other m= section with port 0. `SdpError` carries the SIP status to answer (488).

An INVITE without an offer (RFC 3261 §13.2.1 "late offer") gets our offer in the 200 OK (`build_offer`:
Opus, PCMU, PCMA and telephone-event on RTP/AVP) and the caller's answer in the ACK, read by `negotiate`
like an offer (its first codec we offered, its address, its direction mirrored); until then the call's
plan is `awaiting_answer()` (nothing sent).
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
from dataclasses import dataclass, field

SUPPORTED_CODECS = ("PCMU", "PCMA")
OPUS_FMTP = "minptime=10;useinbandfec=1;stereo=0;sprop-stereo=0"
STATIC_PT = {0: ("PCMU", 8000, 1), 8: ("PCMA", 8000, 1)}
SRTP_SUITES = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
SRTP_KEY_BYTES = 30  # 16-byte master key + 14-byte salt
MAX_SDP_LINES = 400
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_ANSWER_DIRECTION = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


class SdpError(ValueError):
    def __init__(self, message: str, status: int = 488) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Crypto:
    tag: str
    suite: str
    key: bytes  # master key + salt

    def line(self) -> str:
        return f"a=crypto:{self.tag} {self.suite} inline:{base64.b64encode(self.key).decode()}"


@dataclass
class MediaSection:
    kind: str
    port: int
    proto: str
    formats: list[str]
    rtpmap: dict[int, tuple[str, int, int]] = field(default_factory=dict)
    fmtp: dict[int, str] = field(default_factory=dict)
    direction: str | None = None
    connection: str | None = None
    crypto: list[str] = field(default_factory=list)
    rtcp_mux: bool = False
    ptime: int | None = None

    def codec(self, pt: int) -> tuple[str, int, int] | None:
        if pt in self.rtpmap:
            return self.rtpmap[pt]
        return STATIC_PT.get(pt)


@dataclass
class SessionDescription:
    connection: str | None
    direction: str | None
    media: list[MediaSection]


@dataclass
class MediaPlan:
    """What was agreed for the audio stream."""

    codec: str  # "PCMU" | "PCMA" | "OPUS"
    payload_type: int
    clock_rate: int
    dtmf_payload_type: int | None
    remote_host: str
    remote_port: int
    direction: str  # ours, as answered: sendrecv | recvonly | sendonly | inactive
    rtcp_mux: bool = False
    remote_crypto: Crypto | None = None
    local_crypto: Crypto | None = None
    proto: str = "RTP/AVP"
    dtmf_clock_rate: int = 8000

    @property
    def channels(self) -> int:
        return 2 if self.codec == "OPUS" else 1  # opus/48000/2 in SDP (RFC 7587), mono on our side

    @property
    def fmtp(self) -> str | None:
        return OPUS_FMTP if self.codec == "OPUS" else None

    @property
    def security(self) -> str:
        return "srtp" if self.remote_crypto is not None else "rtp"

    @property
    def sends(self) -> bool:
        return self.direction in ("sendrecv", "sendonly")

    @property
    def receives(self) -> bool:
        return self.direction in ("sendrecv", "recvonly")

    @property
    def format_type(self) -> str:
        """The session's audio format type for this codec (audio/pcmu, audio/pcma, audio/opus)."""
        return "audio/" + self.codec.lower()


def parse_sdp(text: str) -> SessionDescription:
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    if len(lines) > MAX_SDP_LINES:
        raise SdpError("SDP too long", 400)
    if not lines or lines[0] != "v=0":
        raise SdpError("not an SDP body (no v=0)", 400)
    session = SessionDescription(connection=None, direction=None, media=[])
    current: MediaSection | None = None
    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"malformed SDP line {line[:40]!r}", 400)
        kind, value = line[0], line[2:]
        if kind == "m":
            current = _media_line(value)
            session.media.append(current)
        elif kind == "c":
            address = _connection(value)
            if current is None:
                session.connection = address
            else:
                current.connection = address
        elif kind == "a":
            _attribute(session, current, value)
    return session


def _media_line(value: str) -> MediaSection:
    parts = value.split()
    if len(parts) < 4:
        raise SdpError("malformed m= line", 400)
    port = parts[1].split("/", 1)[0]
    if not port.isdigit() or int(port) > 65535:
        raise SdpError("malformed m= port", 400)
    return MediaSection(kind=parts[0].lower(), port=int(port), proto=parts[2].upper(), formats=parts[3:])


def _connection(value: str) -> str:
    parts = value.split()
    if len(parts) < 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError("malformed c= line", 400)
    address = parts[2].split("/", 1)[0]
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise SdpError("c= must hold an IP address", 488) from None
    return address


def _attribute(session: SessionDescription, media: MediaSection | None, value: str) -> None:
    name, _, rest = value.partition(":")
    if name in _DIRECTIONS:
        if media is None:
            session.direction = name
        else:
            media.direction = name
        return
    if media is None:
        return
    if name == "rtpmap":
        pt, _, encoding = rest.partition(" ")
        bits = encoding.strip().split("/")
        if pt.isdigit() and len(bits) >= 2 and bits[1].isdigit():
            channels = int(bits[2]) if len(bits) > 2 and bits[2].isdigit() else 1
            media.rtpmap[int(pt)] = (bits[0], int(bits[1]), channels)
    elif name == "fmtp":
        pt, _, params = rest.partition(" ")
        if pt.isdigit():
            media.fmtp[int(pt)] = params.strip()
    elif name == "crypto":
        media.crypto.append(rest.strip())
    elif name == "rtcp-mux":
        media.rtcp_mux = True
    elif name == "ptime" and rest.strip().isdigit():
        media.ptime = int(rest.strip())


def parse_crypto(value: str) -> Crypto | None:
    """One `a=crypto` value we can use (a known suite, one inline key of the right size, no MKI, no
    session parameters); else None."""
    parts = value.split()
    if len(parts) != 3 or parts[1] not in SRTP_SUITES or not parts[0].isdigit():
        return None
    keys = parts[2].split(";")
    if len(keys) != 1 or not keys[0].startswith("inline:"):
        return None
    fields = keys[0][len("inline:"):].split("|")
    if any(":" in f for f in fields[1:]):  # an MKI
        return None
    try:
        key = base64.b64decode(fields[0] + "=" * (-len(fields[0]) % 4), validate=True)
    except ValueError:
        return None
    if len(key) != SRTP_KEY_BYTES:
        return None
    return Crypto(parts[0], parts[1], key)


@dataclass
class Negotiated:
    plan: MediaPlan
    offer: SessionDescription
    index: int  # the offer's m= section the plan answers

    def answer(self, *, address: str, port: int, origin: "Origin") -> str:
        return build_answer(self.offer, self.plan, self.index, address=address, port=port, origin=origin)


def negotiate(offer_text: str, *, keep_codec: str | None = None) -> Negotiated:
    """The plan for the first usable audio section of an offer (raises SdpError otherwise).
    `keep_codec`: the codec already in use (a re-INVITE), preferred when still offered."""
    offer = parse_sdp(offer_text)
    reasons: list[str] = []
    for index, media in enumerate(offer.media):
        if media.kind != "audio" or media.port == 0:
            continue
        plan = _plan(offer, media, keep_codec, reasons)
        if plan is not None:
            return Negotiated(plan, offer, index)
    raise SdpError("no acceptable audio stream: " + ("; ".join(reasons) or "the offer has no audio section"))


def _plan(offer: SessionDescription, media: MediaSection, keep_codec: str | None,
          reasons: list[str]) -> MediaPlan | None:
    secure = media.proto in ("RTP/SAVP", "RTP/SAVPF")
    if media.proto not in ("RTP/AVP", "RTP/AVPF") and not secure:
        reasons.append(f"transport {media.proto} is not supported (RTP/AVP or RTP/SAVP with SDES)")
        return None
    offered: list[tuple[int, str, int]] = []
    events: dict[int, int] = {}  # telephone-event clock rate -> payload type
    for fmt in media.formats:
        if not fmt.isdigit():
            continue
        pt = int(fmt)
        codec = media.codec(pt)
        if codec is None:
            continue
        name, rate, _channels = codec
        if name.lower() == "telephone-event":
            events.setdefault(rate, pt)
        elif (name.upper() in SUPPORTED_CODECS and rate == 8000) or (name.upper() == "OPUS" and rate == 48000):
            offered.append((pt, name.upper(), rate))
    if not offered:
        reasons.append("no common codec (opus/48000/2, PCMU/8000, PCMA/8000)")
        return None
    chosen = next((c for c in offered if c[1] == keep_codec), None) \
        or next((c for c in offered if c[1] == "OPUS"), offered[0])
    dtmf_rate = chosen[2] if chosen[2] in events else 8000
    dtmf = events.get(dtmf_rate)
    # SDES keys on RTP/SAVP, or on RTP/AVP ("best effort" SRTP, as baresip and some PBXes offer it)
    remote_crypto = next((c for c in map(parse_crypto, media.crypto) if c is not None), None)
    if secure and remote_crypto is None:
        reasons.append("RTP/SAVP without a usable a=crypto (AES_CM_128_HMAC_SHA1_80/32 inline key)")
        return None
    host = media.connection or offer.connection
    if host is None:
        raise SdpError("no c= line", 400)
    direction = media.direction or offer.direction or "sendrecv"
    if ipaddress.ip_address(host).is_unspecified and direction in ("sendrecv", "recvonly"):  # RFC 2543 hold
        direction = "sendonly" if direction == "sendrecv" else "inactive"
    local_crypto = Crypto(remote_crypto.tag, remote_crypto.suite, secrets.token_bytes(SRTP_KEY_BYTES)) \
        if remote_crypto is not None else None
    return MediaPlan(codec=chosen[1], payload_type=chosen[0], clock_rate=chosen[2], dtmf_payload_type=dtmf,
                     remote_host=host, remote_port=media.port, direction=_ANSWER_DIRECTION[direction],
                     rtcp_mux=media.rtcp_mux, remote_crypto=remote_crypto, local_crypto=local_crypto,
                     proto=media.proto, dtmf_clock_rate=dtmf_rate)


@dataclass
class Origin:
    """Our o= line: one session id, a version bumped by every new answer (RFC 3264 §8)."""

    session_id: int = field(default_factory=lambda: secrets.randbelow(2 ** 62))
    version: int = field(default_factory=lambda: secrets.randbelow(2 ** 30))

    def next(self) -> int:
        self.version += 1
        return self.version


def build_answer(offer: SessionDescription, plan: MediaPlan, index: int, *, address: str, port: int,
                 origin: Origin) -> str:
    """The answer: our audio section in place of the offer's section `index`, every other m= refused (port 0)."""
    family = "IP6" if ":" in address else "IP4"
    lines = ["v=0", f"o=openrealtime {origin.session_id} {origin.next()} IN {family} {address}", "s=openrealtime",
             f"c=IN {family} {address}", "t=0 0"]
    for i, media in enumerate(offer.media):
        if i != index:
            lines.append(f"m={media.kind} 0 {media.proto} {' '.join(media.formats) or '0'}")
            continue
        pts = [str(plan.payload_type)] + ([str(plan.dtmf_payload_type)] if plan.dtmf_payload_type is not None else [])
        lines.append(f"m=audio {port} {plan.proto} {' '.join(pts)}")
        codec = "opus" if plan.codec == "OPUS" else plan.codec
        lines.append(f"a=rtpmap:{plan.payload_type} {codec}/{plan.clock_rate}"
                     + (f"/{plan.channels}" if plan.channels > 1 else ""))
        if plan.fmtp is not None:
            lines.append(f"a=fmtp:{plan.payload_type} {plan.fmtp}")
        if plan.dtmf_payload_type is not None:
            lines.append(f"a=rtpmap:{plan.dtmf_payload_type} telephone-event/{plan.dtmf_clock_rate}")
            lines.append(f"a=fmtp:{plan.dtmf_payload_type} 0-16")
        lines.append("a=ptime:20")
        lines.append(f"a={plan.direction}")
        if plan.rtcp_mux:
            lines.append("a=rtcp-mux")
        if plan.local_crypto is not None:
            lines.append(plan.local_crypto.line())
    return "\r\n".join(lines) + "\r\n"


def build_offer(*, address: str, port: int, origin: Origin) -> str:
    """Our offer, for an INVITE that came without one (sent in the 200 OK; the ACK answers it)."""
    family = "IP6" if ":" in address else "IP4"
    return "\r\n".join([
        "v=0", f"o=openrealtime {origin.session_id} {origin.next()} IN {family} {address}", "s=openrealtime",
        f"c=IN {family} {address}", "t=0 0", f"m=audio {port} RTP/AVP 111 0 8 101",
        "a=rtpmap:111 opus/48000/2", f"a=fmtp:111 {OPUS_FMTP}", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16", "a=ptime:20", "a=sendrecv"]) + "\r\n"


def awaiting_answer() -> MediaPlan:
    """The plan of a call whose INVITE had no offer, until the answer in the ACK: nothing sent, nothing taken."""
    return MediaPlan(codec="PCMU", payload_type=0, clock_rate=8000, dtmf_payload_type=None, remote_host="0.0.0.0",
                     remote_port=0, direction="inactive")
