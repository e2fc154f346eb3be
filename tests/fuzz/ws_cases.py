"""WebSocket frames for fuzzing, written by hand (RFC 6455) so that a client library's own checks do not stand
in the way: text frames with mutated events or invalid UTF-8, binary frames, fragments and continuations out
of order, control frames that are too long or fragmented, reserved opcodes and bits, unmasked frames, bad
close codes, and a declared length far beyond the server's limit."""

from __future__ import annotations

import asyncio
import base64
import os
import random
import struct

from .core import choice, mutate_bytes
from .event_cases import event_case

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bool = True,
          length: int | None = None) -> bytes:
    """One client frame (masked unless told otherwise); `length` overrides the declared payload length."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0xF)])
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 1 << 16:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def _text(rng: random.Random, huge: int) -> bytes:
    _kind, raw = event_case(rng, huge=huge)
    return raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")


def frames_case(rng: random.Random, *, huge: int = 1 << 14) -> list[bytes]:
    """The frames of one case, sent on a fresh connection after the handshake."""
    kind = rng.randrange(16)
    text = _text(rng, huge)
    if kind <= 3:
        return [frame(TEXT, text)]
    if kind == 4:  # invalid UTF-8 in a text frame: close 1007
        return [frame(TEXT, choice(rng, (b"\xff", b'{"type":"\xc0\xaf"}', b"\xed\xa0\x80", text + b"\x80")))]
    if kind == 5:
        return [frame(BINARY, text if rng.random() < 0.5 else rng.randbytes(rng.randrange(300)))]
    if kind == 6:  # a message in fragments, a ping between them
        cut = rng.randrange(len(text) + 1)
        return [frame(TEXT, text[:cut], fin=False), frame(PING, b"p"), frame(CONT, text[cut:])]
    if kind == 7:  # a continuation with nothing to continue, or a new message inside a fragmented one
        return choice(rng, ([frame(CONT, text)], [frame(TEXT, text[:3], fin=False), frame(TEXT, text)]))
    if kind == 8:  # control frames: too long, fragmented
        return [choice(rng, (frame(PING, b"x" * 126), frame(PING, b"x", fin=False), frame(PONG, rng.randbytes(200))))]
    if kind == 9:
        return [frame(rng.choice((3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF)), text)]
    if kind == 10:
        return [frame(TEXT, text, rsv=rng.randint(1, 7))]
    if kind == 11:
        return [frame(TEXT, text, mask=False)]
    if kind == 12:  # close: odd codes, a 1-byte payload, a reason that is not UTF-8
        payload = choice(rng, (struct.pack("!H", rng.choice((0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535))),
                               b"\x03", struct.pack("!H", 1000) + b"\xff", struct.pack("!H", 1000) + b"bye"))
        return [frame(CLOSE, payload)]
    if kind == 13:  # a length far beyond the limit, and only a little data
        return [frame(TEXT, b"{" * 16, length=rng.choice(((1 << 63) - 1, 1 << 40, 64 << 20)))]
    if kind == 14:  # bytes that are not frames
        return [mutate_bytes(rng, frame(TEXT, text))]
    return [frame(TEXT, text), frame(PING, b"ping"), frame(BINARY, b"\x00"), frame(TEXT, _text(rng, huge))]


# ---- a raw client ---------------------------------------------------------------------------------------
async def handshake(host: str, port: int, path: str, headers: dict[str, str]) -> tuple[asyncio.StreamReader,
                                                                                       asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"] + [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    if not head.startswith(b"HTTP/1.1 101"):
        writer.close()
        raise ConnectionError(f"handshake refused: {head[:80]!r}")
    return reader, writer


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One server frame (unmasked; fragments are not reassembled)."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    return b0 & 0xF, await reader.readexactly(n)
