"""STUN datagrams and ICE-TCP streams (RFC 4571 framing) for the shared ICE ports, as a stranger can send them:
binding requests with unknown or truncated usernames, wrong integrity, attributes of any type and length,
unsolicited responses, DTLS/RTP-looking garbage, and TCP streams with lengths that lie.
(tests/media/test_ice_fuzz.py is the suite's property test; this is the campaign's generator.)"""

from __future__ import annotations

import random
import struct

from .core import choice, mutate_bytes

COOKIE = 0x2112A442
ATTRS = (0x0001, 0x0006, 0x0008, 0x0009, 0x000A, 0x0014, 0x0015, 0x0020, 0x0024, 0x0025, 0x8022, 0x8028, 0x8029,
         0x802A, 0x802B, 0x802C, 0x0000, 0x7FFF, 0xFFFF)


def stun(message_type: int, attrs: list[tuple[int, bytes]], txid: bytes, *, length: int | None = None) -> bytes:
    body = b"".join(struct.pack("!HH", t, len(v)) + v + bytes(-len(v) % 4) for t, v in attrs)
    return struct.pack("!HHI12s", message_type, len(body) if length is None else length, COOKIE, txid) + body


def datagram(rng: random.Random) -> bytes:
    kind = rng.randrange(7)
    txid = rng.randbytes(12)
    if kind <= 2:  # a binding request: a username of ours or not, integrity that cannot match
        username = choice(rng, (b"x" * 24 + b":peer", b"", b":", b"\xff" * 8, rng.randbytes(rng.randrange(600))))
        attrs = [(0x0006, username), (0x0024, struct.pack("!I", rng.getrandbits(32)))]
        attrs += [(choice(rng, ATTRS), rng.randbytes(rng.choice((0, 1, 4, 8, 20, 40)))) for _ in range(rng.randrange(5))]
        data = stun(0x0001, attrs, txid)
        return mutate_bytes(rng, data, max_len=1500) if rng.random() < 0.4 else data
    if kind == 3:  # unsolicited responses and indications
        return stun(rng.choice((0x0101, 0x0111, 0x0011, 0x0003, 0x3EEF)),
                    [(choice(rng, ATTRS), rng.randbytes(rng.randrange(40)))], txid)
    if kind == 4:  # a header that lies about its length
        return stun(0x0001, [(0x0006, b"ab:cd")], txid, length=rng.choice((0, 3, 4096, 65535)))
    if kind == 5:  # DTLS, RTP, anything
        return bytes([rng.choice((20, 21, 22, 23, 128, 144, 191, 0, 255))]) + rng.randbytes(rng.randrange(300))
    return rng.randbytes(rng.randrange(1, 1500))


def tcp_stream(rng: random.Random) -> bytes:
    """What a stranger writes to the ICE-TCP port: RFC 4571 frames (2-byte length) that may lie."""
    out = b""
    for _ in range(rng.randint(1, 4)):
        payload = datagram(rng)
        length = len(payload) if rng.random() < 0.7 else rng.choice((0, 1, 65535, len(payload) + 10))
        out += struct.pack("!H", length & 0xFFFF) + payload
    return out if rng.random() < 0.9 else rng.randbytes(rng.randrange(1, 200))
