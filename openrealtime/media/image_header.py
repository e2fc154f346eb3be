"""What an image declares about itself, read from its header without decoding a pixel.

`read_header(data)` returns the format, the width and height, and the number of frames (animated GIF,
APNG, animated WebP) of a PNG, JPEG, GIF or WebP file, or None when the bytes are not one of those or
are cut before the size. It is how `input_image` data URLs are checked against limits.MAX_IMAGE_PIXELS
before any decoder (ours or a model server's) allocates the pixels: a PNG of a few hundred bytes may
declare 50000 × 50000 (a decompression bomb); its header says so in bytes 16-24.

Only headers and chunk/segment/block lengths are read, each step bounded by the data's length, so a
hostile file costs one pass over its bytes at most.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, extended, progressive, lossless, arithmetic; not DHT/JPG/DAC)
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RSTn: no length field


@dataclass(frozen=True)
class ImageHeader:
    format: str  # "png" | "jpeg" | "gif" | "webp"
    width: int
    height: int
    frames: int = 1  # declared frames of an animation (GIF: counted; APNG: acTL; WebP: ANMF chunks)
    pixels: int = 0  # pixels a decoder would produce for every frame (width × height × frames; GIF: summed)

    @property
    def decoded_pixels(self) -> int:
        return self.pixels or self.width * self.height * self.frames


def read_header(data: bytes) -> ImageHeader | None:
    """The declared size of a PNG, JPEG, GIF or WebP image; None if unrecognized or truncated."""
    try:
        if data.startswith(PNG_SIGNATURE):
            return _png(data)
        if data.startswith(b"\xff\xd8"):
            return _jpeg(data)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return _gif(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
    except (struct.error, IndexError):
        return None
    return None


def _png(data: bytes) -> ImageHeader | None:
    if len(data) < 33 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    frames = 1
    pos = 8
    while pos + 8 <= len(data):  # acTL (APNG) comes before the first IDAT
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"acTL" and pos + 12 <= len(data):
            frames = max(1, struct.unpack(">I", data[pos + 8:pos + 12])[0])
            break
        if kind in (b"IDAT", b"IEND"):
            break
        pos += 12 + length
    return ImageHeader("png", width, height, frames)


def _jpeg(data: bytes) -> ImageHeader | None:
    pos = 2
    end = len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:  # garbage between segments: decoders skip to the next marker, as here
            pos += 1
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker in (0xD8, 0xD9, 0xDA):  # SOI again, EOI, or the scan data began before any frame header
            return None
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if marker in _JPEG_SOF:
            if pos + 9 > end:
                return None
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return ImageHeader("jpeg", width, height)
        if length < 2:
            return None
        pos += 2 + length
    return None


def _gif(data: bytes) -> ImageHeader | None:
    if len(data) < 13:
        return None
    width, height, flags = struct.unpack("<HHB", data[6:11])
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    canvas = width * height
    frames, pixels = 0, 0
    end = len(data)
    while pos < end:
        block = data[pos]
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # extension: label, then data sub-blocks
            pos = _skip_sub_blocks(data, pos + 2)
        elif block == 0x2C:  # image descriptor: left, top, width, height, flags
            if pos + 10 > end:
                break
            fw, fh, fflags = struct.unpack("<HHB", data[pos + 5:pos + 10])
            frames += 1
            pixels += max(fw * fh, canvas)  # each frame is composed onto the whole canvas
            pos += 10 + (3 << ((fflags & 7) + 1) if fflags & 0x80 else 0)
            pos = _skip_sub_blocks(data, pos + 1)  # after the LZW minimum code size
        else:
            break  # not GIF structure: a decoder stops here too
    return ImageHeader("gif", width, height, max(frames, 1), pixels=max(pixels, canvas))


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    end = len(data)
    while pos < end:
        size = data[pos]
        pos += 1 + size
        if size == 0:
            break
    return pos


def _webp(data: bytes) -> ImageHeader | None:
    kind = data[12:16]
    if kind == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return ImageHeader("webp", width & 0x3FFF, height & 0x3FFF)
    if kind == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return ImageHeader("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if kind == b"VP8X" and len(data) >= 30:
        animated = bool(data[20] & 0x02)
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        frames = 1
        if animated:
            frames, pos = 0, 12
            while pos + 8 <= len(data):
                size = struct.unpack("<I", data[pos + 4:pos + 8])[0]
                frames += data[pos:pos + 4] == b"ANMF"
                pos += 8 + size + (size & 1)
            frames = max(frames, 1)
        return ImageHeader("webp", width, height, frames)
    return None
