"""The size limits on everything the network sends this server, in one place.

README.md "Security → Limits" lists them with what a client gets when it crosses one. Every refusal is
OpenAI's error shape: over HTTP `{"error": {"message", "type", "param", "code"}}` with the status
below, on a session an `error` event (the session goes on working).

HTTP (every route; api/request_limits.py checks the head before any route runs)
  MAX_URL_BYTES         path and query string: longer → 414 `request_uri_too_long`.
  MAX_HEADER_COUNT      headers in one request (or WebSocket handshake): more → 431
                        `request_header_fields_too_large`.
  MAX_HEADER_FIELD_BYTES one header (name + value): longer → 431.
  MAX_HEADER_BYTES      all headers together: more → 431. The HTTP parser (h11) cuts off a request head
                        still unfinished at twice this (a plain-text 400, connection closed), so at most
                        that plus one socket read is buffered, whatever a client sends.
  MAX_BODY_BYTES        request body (Settings.max_body_bytes): a larger Content-Length → 413
                        `request_too_large` before the body is read; chunked bodies are counted as they
                        arrive and refused at the first byte over (api/body.py).
  MAX_SDP_BYTES         POST /v1/tools/inspect-sdp body → 413.
  MAX_JSON_DEPTH        nesting of any JSON we parse (bodies, `session` form parts, client events):
                        deeper → 400 / `error` event `invalid_json`, checked without recursion.

WebSocket and data channel
  MAX_EVENT_BYTES       one client event (WebSocket text frame or data-channel message after the
                        transport's own limit) → `error` event `message_too_large`.
  WS_MAX_FRAME_BYTES    one WebSocket message at the protocol layer: over it the socket is closed 1009.
  WS_MAX_QUEUE          WebSocket messages the protocol layer buffers before it stops reading the socket
                        (TCP backpressure), so a fast sender costs at most WS_MAX_QUEUE × WS_MAX_FRAME_BYTES.
  (data channel)        aiortc's advertised max-message-size (256 KiB): larger → `message_too_large`; a
                        peer holding more than the receive window (1 MiB) plus one such message in
                        unfinished fragments has its SCTP association aborted (media/aiortc_patches/sctp_transport.py).

SIP (openrealtime/sip/, with --sip-port)
  SIP_MAX_MESSAGE_BYTES  one SIP message (a UDP datagram, or one message on TCP/TLS); SIP_MAX_HEADERS
                        header fields, SIP_MAX_LINE_BYTES per line, SIP_MAX_BODY_BYTES of body: over any
                        of them the message is dropped (a request read far enough gets 400).
  SIP_MAX_CONNECTIONS   SIP TCP/TLS connections at once; each idle SIP_STREAM_IDLE_S is closed.

Session content
  MAX_IMAGE_BYTES       decoded bytes of one `input_image` data URL → `invalid_value`.
  MAX_IMAGE_PIXELS      width × height (× frames for animated images) declared in the image's header,
                        read without decoding it: a decompression bomb (a few hundred bytes that declare
                        50000 × 50000) is refused before anything decodes it → `invalid_value`.
  IMAGE_TYPES           data URL media types accepted (OpenAI's list: PNG, JPEG, WebP, GIF).
  MAX_TOOLS             tools in a session or response.
  MAX_INSTRUCTIONS_CHARS  `instructions` of a session or response.
  (SessionLimits)       items per conversation (2000), images per session (100), input audio buffer
                        (15 min): session/engine.py.
"""

from __future__ import annotations

KIB = 1024
MIB = 1024 * 1024

MAX_URL_BYTES = 8 * KIB
MAX_HEADER_BYTES = 32 * KIB
MAX_HEADER_COUNT = 100
MAX_HEADER_FIELD_BYTES = 8000  # below the 8 KiB per line that WebSocket handshakes (websockets) allow
MAX_BODY_BYTES = 1 * MIB
MAX_SDP_BYTES = 256 * KIB
MAX_JSON_DEPTH = 64

MAX_EVENT_BYTES = 16 * MIB
WS_MAX_FRAME_BYTES = 32 * MIB
WS_MAX_QUEUE = 4

SIP_MAX_MESSAGE_BYTES = 64 * KIB
SIP_MAX_HEADERS = 100
SIP_MAX_LINE_BYTES = 8 * KIB
SIP_MAX_BODY_BYTES = 32 * KIB
SIP_MAX_CONNECTIONS = 1024
SIP_STREAM_IDLE_S = 300.0

MAX_IMAGE_BYTES = 10 * MIB
MAX_IMAGE_PIXELS = 50_000_000
IMAGE_TYPES = ("png", "jpeg", "jpg", "webp", "gif")
MAX_TOOLS = 128
MAX_INSTRUCTIONS_CHARS = 256 * KIB


def uvicorn_limits() -> dict[str, object]:
    """The uvicorn.Config arguments that apply the transport-level limits (`serve` and the embedded
    server). h11 is chosen over httptools because it bounds the request head (`h11_max_incomplete_event_size`);
    httptools accepts headers without a size limit."""
    return {"http": "h11", "h11_max_incomplete_event_size": 2 * MAX_HEADER_BYTES,
            "ws_max_size": WS_MAX_FRAME_BYTES, "ws_max_queue": WS_MAX_QUEUE}
