"""Data-channel traffic for fuzzing: client events (text and binary messages on `oai-events`) and the SCTP
messages under them as a peer can send them: DCEP OPEN/ACK with odd labels, protocols and stream ids,
strings that are not UTF-8, and payload protocol ids nobody uses."""

from __future__ import annotations

import random
import struct

from .core import choice, mutate_bytes
from .event_cases import event_case

WEBRTC_DCEP, WEBRTC_STRING, WEBRTC_BINARY, WEBRTC_STRING_EMPTY, WEBRTC_BINARY_EMPTY = 50, 51, 53, 56, 57
DATA_CHANNEL_ACK, DATA_CHANNEL_OPEN = 2, 3


def message_case(rng: random.Random, *, huge: int = 1 << 14) -> str | bytes:
    """What a client sends with `channel.send()`: a (mutated) client event as text or as bytes."""
    _kind, raw = event_case(rng, huge=huge)
    if isinstance(raw, str) and rng.random() < 0.1:
        return raw.encode("utf-8", "surrogatepass")
    if isinstance(raw, bytes):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw
    if "\ud800" <= max(raw, default=" ") and any("\ud800" <= c <= "\udfff" for c in raw):
        return raw.encode("utf-8", "surrogatepass")  # a str the channel could not encode: as bytes
    return raw


def dcep_open(rng: random.Random) -> bytes:
    label = choice(rng, (b"oai-events", b"", b"x" * 300, b"\xff\xfe", "é".encode(), rng.randbytes(8)))
    protocol = choice(rng, (b"", b"json", b"\xc0\x80", rng.randbytes(4)))
    channel_type = choice(rng, (0x00, 0x80, 0x01, 0x81, 0x02, 0x82, 0x03, 0xFF))
    label_len = len(label) if rng.random() < 0.8 else rng.choice((0, 65535, len(label) + 5))
    head = struct.pack("!BBHLHH", DATA_CHANNEL_OPEN, channel_type, rng.randrange(65536), rng.getrandbits(32),
                       label_len, len(protocol))
    return head + label + protocol


def sctp_case(rng: random.Random, events_stream: int) -> tuple[int, int, bytes]:
    """(stream id, payload protocol id, user data) for one SCTP user message. Never empty: aiortc's sender
    would consume a stream sequence number without sending a chunk, stalling that stream (a client bug)."""
    stream = rng.choice((events_stream, events_stream, rng.randrange(1024), 65535, 0, 1))
    kind = rng.randrange(8)
    if kind == 0:
        return stream, WEBRTC_DCEP, dcep_open(rng)
    if kind == 1:
        return stream, WEBRTC_DCEP, bytes([DATA_CHANNEL_ACK])
    if kind == 2:
        return stream, WEBRTC_DCEP, bytes([rng.randrange(256)]) + rng.randbytes(rng.randrange(16))
    if kind == 3:  # a string that is not UTF-8
        return stream, WEBRTC_STRING, choice(rng, (b"\xff", b'{"type":"\xc0\x80"}', b"\xed\xa0\x80", b"abc\x80"))
    if kind == 4:
        return stream, rng.choice((WEBRTC_STRING_EMPTY, WEBRTC_BINARY_EMPTY)), rng.randbytes(rng.randint(1, 3))
    if kind == 5:
        return stream, rng.randrange(2**32), rng.randbytes(rng.randint(1, 64))
    if kind == 6:
        return stream, WEBRTC_DCEP, bytes([DATA_CHANNEL_OPEN]) + rng.randbytes(rng.randrange(11))  # short
    return stream, WEBRTC_BINARY, mutate_bytes(rng, b'{"type":"response.create"}') or b"{"
