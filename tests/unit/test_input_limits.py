"""Limits on what clients send, at the protocol layer: JSON nesting, image data URLs (size in bytes and
the pixels their header declares, read without decoding), tools and instructions. Images are real
files made by real encoders (FFmpeg's PNG, MJPEG, libwebp and GIF through PyAV)."""

from __future__ import annotations

import base64
import fractions
import json
import struct
import zlib

import av
import numpy as np
import pytest

from openrealtime import limits
from openrealtime.media.image_header import read_header
from openrealtime.media.image_tokens import image_size_from_data_url
from openrealtime.protocol import ProtocolError, parse_client_event
from openrealtime.protocol.json_limits import JsonTooDeep, loads
from openrealtime.protocol.session import RealtimeSessionConfig, apply_session_update


def encode_still(codec: str, width: int, height: int, pix_fmt: str, **options: str) -> bytes:
    """One real image file from a real encoder."""
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, pix_fmt
    ctx.time_base = fractions.Fraction(1, 25)
    for key, value in options.items():
        ctx.options[key] = value
    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format=pix_fmt)
    return b"".join(bytes(p) for p in ctx.encode(frame) + ctx.encode(None))


def encode_animation(codec: str, container: str, width: int, height: int, pix_fmt: str, frames: int) -> bytes:
    import io

    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), i * 40, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame.reformat(format=pix_fmt)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def png_declaring(width: int, height: int, rows: int = 2) -> bytes:
    """A PNG whose header declares width × height, with the first `rows` rows of zeros compressed
    (a decompression bomb: a decoder would allocate width × height × 3 bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compressobj(9)
    body = b"".join(idat.compress(b"\0" * (1 + 3 * width)) for _ in range(rows)) + idat.flush(zlib.Z_SYNC_FLUSH)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body)


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def image_event(url: str) -> str:
    return json.dumps({"type": "conversation.item.create", "event_id": "evt_img", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_image", "image_url": url}]}})


def refused(raw: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_client_event(raw)
    return info.value


# ---- image headers ------------------------------------------------------------------------------
@pytest.mark.parametrize("codec, pix_fmt, options, fmt", [
    ("png", "rgb24", {}, "png"),
    ("mjpeg", "yuvj420p", {}, "jpeg"),
    ("libwebp", "yuv420p", {}, "webp"),
    ("libwebp", "yuv420p", {"lossless": "1"}, "webp"),
    ("gif", "rgb8", {}, "gif"),
])
def test_the_header_of_real_images_gives_their_size(codec, pix_fmt, options, fmt):
    data = encode_still(codec, 321, 123, pix_fmt, **options)
    header = read_header(data)
    assert header is not None and (header.format, header.width, header.height, header.frames) == (fmt, 321, 123, 1)
    assert image_size_from_data_url(data_url(data)) == (321, 123)
    mime = {"jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}.get(fmt, "image/png")
    assert parse_client_event(image_event(data_url(data, mime))).item.content[0].image_url.startswith("data:")


@pytest.mark.parametrize("codec, container, pix_fmt, fmt", [
    ("gif", "gif", "rgb8", "gif"), ("apng", "apng", "rgb24", "png"), ("libwebp_anim", "webp", "yuv420p", "webp")])
def test_animations_count_every_frame(codec, container, pix_fmt, fmt):
    header = read_header(encode_animation(codec, container, 64, 32, pix_fmt, frames=3))
    assert (header.format, header.width, header.height, header.frames) == (fmt, 64, 32, 3)
    assert header.decoded_pixels == 64 * 32 * 3


def test_truncated_or_unknown_data_has_no_header():
    jpeg = encode_still("mjpeg", 64, 64, "yuvj420p")
    assert read_header(jpeg[:20]) is None  # cut before the frame header
    assert read_header(b"\x89PNG\r\n\x1a\n") is None
    assert read_header(b"BM" + b"\0" * 60) is None  # BMP: not accepted
    assert read_header(b"") is None


# ---- image data URLs in client events -----------------------------------------------------------
def test_a_decompression_bomb_is_refused_from_its_header():
    bomb = png_declaring(50_000, 50_000)
    assert len(bomb) < 1000  # a few hundred bytes that declare 7.5 GB of pixels
    err = refused(image_event(data_url(bomb)))
    assert (err.code, err.param, err.event_id) == ("invalid_value", "item.content.0.image_url", "evt_img")
    assert "50000×50000" in err.message and str(limits.MAX_IMAGE_PIXELS) in err.message


def test_an_animation_over_the_pixel_budget_is_refused():
    side = int((limits.MAX_IMAGE_PIXELS / 2) ** 0.5) + 1  # one frame fits, two don't
    gif = encode_animation("gif", "gif", 64, 32, "rgb8", frames=2)
    header = gif[:6] + struct.pack("<HH", side, side) + gif[10:]  # the logical screen grows; frames stay
    assert read_header(header).decoded_pixels > limits.MAX_IMAGE_PIXELS
    assert "2 frames" in refused(image_event(data_url(header, "image/gif"))).message


def test_image_data_urls_are_checked():
    png = encode_still("png", 8, 8, "rgb24")
    cases = {
        "not a data url": "https://example.com/cat.png",
        "svg": data_url(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
        "not base64": "data:image/png;base64,@@@@",
        "truncated": data_url(png[:20]),
        "zero size": data_url(png_declaring(0, 10)),
    }
    for name, url in cases.items():
        err = refused(image_event(url))
        assert (err.code, err.param) == ("invalid_value", "item.content.0.image_url"), name


def test_image_bytes_over_the_limit_are_refused_before_decoding_base64(monkeypatch):
    monkeypatch.setattr("openrealtime.protocol.items._MAX_IMAGE_BASE64_CHARS", 1000)
    png = encode_still("png", 64, 64, "rgb24")
    assert len(base64.b64encode(png)) > 1000
    err = refused(image_event(data_url(png)))
    assert "image too large" in err.message and err.param == "item.content.0.image_url"


# ---- JSON nesting -------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [limits.MAX_JSON_DEPTH + 1, 900, 100_000])
def test_deep_json_is_refused_without_recursion(depth):
    with pytest.raises(JsonTooDeep):
        loads('{"a":' + "[" * (depth - 1) + "]" * (depth - 1) + "}")
    err = refused('{"type":"session.update","event_id":"evt_deep","session":{"metadata":'
                  + "[" * depth + "]" * depth + "}}")
    assert (err.code, err.event_id) == ("invalid_json", "evt_deep")
    assert f"deeper than {limits.MAX_JSON_DEPTH}" in err.message


def test_json_at_the_limit_parses():
    nested = "[" * (limits.MAX_JSON_DEPTH - 1) + "]" * (limits.MAX_JSON_DEPTH - 1)
    assert loads('{"a":' + nested + "}")["a"] is not None
    assert loads("[1, 2, {\"a\": [3]}]") == [1, 2, {"a": [3]}]
    assert loads(b'"just a string"') == "just a string"


# ---- tools and instructions ---------------------------------------------------------------------
def test_tools_and_instructions_are_bounded():
    tool = {"type": "function", "name": "f", "parameters": {"type": "object"}}
    many = [{**tool, "name": f"f{i}"} for i in range(limits.MAX_TOOLS + 1)]
    long = "x" * (limits.MAX_INSTRUCTIONS_CHARS + 1)
    for update, param in (({"type": "realtime", "tools": many}, "session.tools"),
                          ({"type": "realtime", "instructions": long}, "session.instructions")):
        with pytest.raises(ProtocolError) as info:  # session.update is validated as it is applied
            apply_session_update(RealtimeSessionConfig(), update)
        assert (info.value.code, info.value.param) == ("invalid_value", param), info.value.message
    for response, param in (({"tools": many}, "response.tools"), ({"instructions": long}, "response.instructions")):
        err = refused(json.dumps({"type": "response.create", "response": response}))
        assert (err.code, err.param) == ("invalid_value", param), err.message
    fits = apply_session_update(RealtimeSessionConfig(), {"type": "realtime", "tools": many[:limits.MAX_TOOLS]})
    assert len(fits.tools) == limits.MAX_TOOLS
