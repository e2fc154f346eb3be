"""SDP offers for fuzzing: real offers (Chromium 156, Firefox 128, stock aiortc 1.16 as the openai-python
SDK's `realtime.calls.create` examples use) mutated line by line and attribute by attribute."""

from __future__ import annotations

import random
import re
from pathlib import Path

from .core import INTERESTING_INTS, choice, huge_text, mutate_bytes, rand_text

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
OFFER_FILES = ("chromium-156-offer.sdp", "firefox-128-offer.sdp", "aiortc-1.16-offer.sdp")


def real_offers() -> dict[str, str]:
    return {name.split("-offer")[0]: (FIXTURES / name).read_text() for name in OFFER_FILES}


_NUMBERS = tuple(str(n) for n in INTERESTING_INTS) + ("", "-0", "1.5", "0x10", "1e3", "٣", "9" * 40, "abc", " ")
_ATTRIBUTE_VALUES = {
    "fingerprint": ("sha-256", "sha-256 ", "sha-1 00:11", "md5 00:11:22", "sha-256 ZZ:ZZ", "sha-999 00",
                    "sha-256 " + ":".join(["AB"] * 31), "sha-256 " + ":".join(["AB"] * 33), "SHA-256 00",
                    "sha-256 " + "0" * 64, "sha-512 " + ":".join(["00"] * 64)),
    "setup": ("active", "passive", "actpass", "holdconn", "", "ACTIVE", "both"),
    "ice-ufrag": ("", "a", "x" * 256, "ü", "a b", "a:b"),
    "ice-pwd": ("", "short", "x" * 256, "ü" * 22),
    "mid": ("", "0", "1", "2", "99", "a b", "x" * 300, "0 1"),
    "group": ("BUNDLE", "BUNDLE 0", "BUNDLE 0 1 2 3 4 5", "BUNDLE 9 8 7", "LS 0 1", "BUNDLE 0 0 0", ""),
    "rtpmap": ("111 opus/48000/2", "111 opus/0/2", "111 opus/48000/0", "111 opus/48000/999999", "-1 opus/48000",
               "128 opus/48000/2", "999999999999 opus/48000/2", "111 opus", "111", "111 /48000", "111 opus/abc",
               "0 PCMU/8000", "96 H264/90000", "96 H264/0", "96 rtx/90000", "111 OPUS/48000/2"),
    "fmtp": ("111 ", "111 minptime=-1", "111 useinbandfec=abc", "111 ;;;;", "111 a=b=c", "97 apt=", "97 apt=999",
             "97 apt=-1", "102 profile-level-id=zz", "102 profile-level-id=", "102 packetization-mode=7",
             "102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f" * 20, "x"),
    "extmap": ("0 urn:ietf:params:rtp-hdrext:sdes:mid", "15 urn:ietf:params:rtp-hdrext:sdes:mid",
               "256 urn:x", "99999999999 urn:x", "-1 urn:x", "1/sendonly urn:ietf:params:rtp-hdrext:sdes:mid",
               "1/bogus urn:x", "abc urn:x", "1", "",
               "3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"),
    "rtcp-fb": ("111 transport-cc", "* nack", "999 nack", "111", "", "111 ccm", "abc nack pli"),
    "ssrc": ("0 cname:x", "4294967295 cname:x", "4294967296 cname:x", "-1 cname:x", "abc cname:x", "1", "",
             "1 msid:", "1 cname:" + "x" * 1000),
    "ssrc-group": ("FID 1", "FID 1 2 3", "FID", "SIM 1 2 3", "FID abc def", "FEC-FR 1 2"),
    "candidate": ("", "x", "1 1 udp 1 127.0.0.1 9 typ host", "1 1 udp 1 127.0.0.1 99999 typ host",
                  "1 1 udp 99999999999999 ::1 1 typ host", "1 1 udp 1 999.1.1.1 1 typ host",
                  "1 1 udp 1 a.local 1 typ host", "1 0 udp 1 127.0.0.1 1 typ host", "1 1 sctp 1 1.2.3.4 1 typ host",
                  "1 1 tcp 1 127.0.0.1 9 typ host tcptype bogus", "1 1 udp 1 127.0.0.1 1 typ relay raddr x rport y",
                  "1 1 udp 1 127.0.0.1 1 notyp host"),
    "sctp-port": _NUMBERS,
    "max-message-size": _NUMBERS,
    "rtcp": ("9 IN IP4 0.0.0.0", "", "abc", "99999 IN IP4 x", "9 IN IP6 ::", "9"),
    "msid": ("", "a", "a b c", "x" * 500),
    "rid": ("0 send", "0", "0 recv max-width=abc", "0 bogus"),
    "simulcast": ("send 0;1;2", "recv ~0", "", "send"),
    "ice-options": ("trickle", "", "renomination", "ice2"),
    "sendrecv": ("",), "recvonly": ("",), "sendonly": ("",), "inactive": ("",),
}
_M_KINDS = ("audio", "video", "application", "text", "message", "image", "", "AUDIO", "audio video")
_PROTOS = ("UDP/TLS/RTP/SAVPF", "RTP/AVP", "RTP/SAVP", "UDP/DTLS/SCTP", "DTLS/SCTP", "TCP/DTLS/SCTP", "", "x",
           "UDP/TLS/RTP/SAVPF/EXTRA")
_SESSION_LINES = ("v=1", "v=", "o=", "o=- x x IN IP4", "s=", "t=", "t=a b", "c=IN IP4", "c=IN IP9 x", "b=AS:-1",
                  "a=ice-lite", "a=extmap-allow-mixed", "a=msid-semantic:", "z=", "k=clear:x", "x", "=", "a=",
                  "a=:", "a=group:BUNDLE", "a=setup:passive", "i=" + "x" * 70, "a=fingerprint:sha-256 00")


MAX_CASE_CHARS = 2 << 20


def _attr_line(rng: random.Random, name: str | None = None) -> str:
    name = name or choice(rng, tuple(_ATTRIBUTE_VALUES))
    value = choice(rng, _ATTRIBUTE_VALUES[name])
    return f"a={name}:{value}" if value else f"a={name}"


def _m_line(rng: random.Random, line: str) -> str:
    parts = line[2:].split(" ")
    op = rng.randrange(5)
    if op == 0:
        parts[0] = choice(rng, _M_KINDS)
    elif op == 1 and len(parts) > 1:
        parts[1] = choice(rng, _NUMBERS + ("9/2", "0/0", "9/-1"))
    elif op == 2 and len(parts) > 2:
        parts[2] = choice(rng, _PROTOS)
    elif op == 3:
        formats = [choice(rng, _NUMBERS) for _ in range(rng.choice((0, 1, 3, 200)))]
        parts = parts[:3] + formats
    else:
        parts = parts[:rng.randrange(len(parts) + 1)]
    return "m=" + " ".join(parts)


def mutate_sdp(rng: random.Random, text: str, *, huge: int = 1 << 16) -> str:
    """One to four line-aware edits of an SDP offer."""
    lines = [ln for ln in re.split(r"\r\n|\n", text) if ln]
    for _ in range(rng.randint(1, 4)):
        n = len(lines)
        op = rng.randrange(16)
        i = rng.randrange(n) if n else 0
        if not lines:
            lines.append(choice(rng, _SESSION_LINES))
        elif op == 0:  # drop a line
            del lines[i]
        elif op == 1:  # drop every line of one attribute
            name = choice(rng, tuple(_ATTRIBUTE_VALUES))
            lines = [ln for ln in lines if not ln.startswith(f"a={name}")]
        elif op == 2:  # duplicate a line
            lines.insert(i, lines[i])
        elif op == 3 and n >= 2:  # swap two lines
            j = rng.randrange(n)
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 4:  # a bad value for an attribute that exists
            attrs = [k for k, ln in enumerate(lines) if ln.startswith("a=") and ln[2:].split(":")[0] in _ATTRIBUTE_VALUES]
            if attrs:
                k = choice(rng, attrs)
                lines[k] = _attr_line(rng, lines[k][2:].split(":")[0])
        elif op == 5:  # an attribute inserted anywhere
            lines.insert(i, _attr_line(rng))
        elif op == 6:  # an m= line changed
            ms = [k for k, ln in enumerate(lines) if ln.startswith("m=")]
            if ms:
                k = choice(rng, ms)
                lines[k] = _m_line(rng, lines[k])
        elif op == 7:  # a session-level oddity
            lines.insert(rng.randrange(min(n, 5) + 1), choice(rng, _SESSION_LINES))
        elif op == 8:  # one m= section repeated many times
            ms = [k for k, ln in enumerate(lines) if ln.startswith("m=")] + [n]
            if len(ms) > 1:
                a = rng.randrange(len(ms) - 1)
                section = lines[ms[a]:ms[a + 1]]
                lines += section * rng.choice((2, 16, 200))
        elif op == 9:  # truncate
            lines = lines[:i]
        elif op == 10:  # a huge value
            lines[i] = lines[i] + huge_text(rng, huge)
        elif op == 11:  # characters inside a line
            line = lines[i]
            k = rng.randrange(len(line) + 1)
            lines[i] = line[:k] + choice(rng, ("\x00", " ", ":", "=", "\t", "é", "\ud800", "\r", rand_text(rng, 6))) + line[k:]
        elif op == 12:  # a line cut short
            lines[i] = lines[i][:rng.randrange(len(lines[i]) + 1)]
        elif op == 13:  # every number on a line replaced
            lines[i] = re.sub(r"\d+", lambda _m: choice(rng, _NUMBERS), lines[i])
        elif op == 14:  # sections reordered
            ms = [k for k, ln in enumerate(lines) if ln.startswith("m=")]
            if len(ms) >= 2:
                head, sections = lines[:ms[0]], []
                for a, b in zip(ms, ms[1:] + [n]):
                    sections.append(lines[a:b])
                rng.shuffle(sections)
                lines = head + [ln for s in sections for ln in s]
        else:  # an m= section dropped
            ms = [k for k, ln in enumerate(lines) if ln.startswith("m=")] + [n]
            if len(ms) > 1:
                a = rng.randrange(len(ms) - 1)
                del lines[ms[a]:ms[a + 1]]
    ending = choice(rng, ("\r\n", "\r\n", "\n", "\r", "\r\n\r\n", " \r\n"))
    out = ending.join(lines) + (ending if rng.random() < 0.8 else "")
    out = out[:MAX_CASE_CHARS]  # big enough to cross every limit, small enough to generate quickly
    if rng.random() < 0.05:
        out = choice(rng, ("", " ", "\ufeff", "\n\n")) + out
    return out


def sdp_case(rng: random.Random, offers: dict[str, str] | None = None, *, huge: int = 1 << 16) -> str:
    """A mutated real offer (sometimes mutated at the byte level, decoded with replacement)."""
    offers = offers or real_offers()
    text = offers[choice(rng, sorted(offers))]
    if rng.random() < 0.1:
        return mutate_bytes(rng, text.encode(), max_len=1 << 17).decode("utf-8", "replace")
    return mutate_sdp(rng, text, huge=huge)
