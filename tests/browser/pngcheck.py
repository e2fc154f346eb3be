"""Decode a screenshot PNG with zlib/struct only (no Pillow) and measure how much is drawn on it."""

from __future__ import annotations

import collections
import struct
import zlib

import numpy as np


def decode_png(data: bytes, max_rows: int | None = None) -> tuple[int, int, int, list[bytes]]:
    """(width, height, bytes per pixel, rows) of an 8-bit RGB/RGBA/grey PNG (what Chromium writes);
    only the first `max_rows` rows are unfiltered when given (rows only depend on the ones above)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _comp, _filt, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0, (depth, interlace)
            bpp = {0: 1, 2: 3, 4: 2, 6: 4}[color]
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    rows: list[bytes] = []
    prior = np.zeros(stride, dtype=np.uint8)
    for y in range(min(height, max_rows or height)):
        start = y * (stride + 1)
        ftype = raw[start]
        line = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=start + 1)
        if ftype == 0:
            cur = line.copy()
        elif ftype == 1:  # Sub: a running sum per channel
            cur = (np.cumsum(line.reshape(width, bpp), axis=0, dtype=np.uint64) & 0xFF).astype(np.uint8).reshape(-1)
        elif ftype == 2:  # Up
            cur = line + prior
        else:  # Average / Paeth depend on the reconstructed left byte: byte by byte
            cur_b = bytearray(line.tobytes())
            prev = prior.tobytes()
            if ftype == 3:
                for i in range(stride):
                    left = cur_b[i - bpp] if i >= bpp else 0
                    cur_b[i] = (cur_b[i] + ((left + prev[i]) >> 1)) & 0xFF
            else:
                for i in range(stride):
                    if i >= bpp:
                        a, c = cur_b[i - bpp], prev[i - bpp]
                    else:
                        a = c = 0
                    b = prev[i]
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    cur_b[i] = (cur_b[i] + (a if pa <= pb and pa <= pc else (b if pb <= pc else c))) & 0xFF
            cur = np.frombuffer(bytes(cur_b), dtype=np.uint8)
        rows.append(cur.tobytes())
        prior = cur
    return width, height, bpp, rows


def drawn_stats(data: bytes, step: int = 2, max_rows: int | None = 1200) -> dict:
    """Share of (sampled) pixels that differ from the most common colour, and distinct colours
    (over the top `max_rows` rows: pure-Python unfiltering costs ~2 s per 1000 rows)."""
    width, height, bpp, rows = decode_png(data, max_rows)
    height = len(rows)
    colours: collections.Counter[bytes] = collections.Counter()
    channels = min(bpp, 3)
    for y in range(0, height, step):
        px = np.frombuffer(rows[y], dtype=np.uint8).reshape(width, bpp)[::step, :channels]
        packed = px.astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1][:channels], dtype=np.uint32)
        values, counts = np.unique(packed, return_counts=True)
        colours.update(dict(zip(values.tolist(), counts.tolist())))
    total = sum(colours.values())
    background, count = colours.most_common(1)[0]
    return {"width": width, "height": height, "distinct_colours": len(colours),
            "drawn_fraction": 1 - count / total, "background": background}
