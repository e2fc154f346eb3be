"""Request-head limits for every route, HTTP and WebSocket handshakes alike (an ASGI middleware).

Refused before any route runs, in OpenAI's error shape:
  414 `request_uri_too_long`             a path and query longer than limits.MAX_URL_BYTES
  431 `request_header_fields_too_large`  more than limits.MAX_HEADER_COUNT headers, one header (name +
                                         value) over limits.MAX_HEADER_FIELD_BYTES, or all of them over
                                         limits.MAX_HEADER_BYTES
  413 `request_too_large`                a declared Content-Length over the body limit (bodies without
                                         one are counted as they are read: api/body.py `read_body`)
A WebSocket handshake gets the same HTTP reply (the `websocket.http.response` extension), or close 1008.
The HTTP parser bounds the request head before this runs (limits.uvicorn_limits: h11, twice
MAX_HEADER_BYTES), so what reaches here is already finite.
"""

from __future__ import annotations

import json
from typing import Any

from .. import limits

Scope = dict[str, Any]


def _error(status: int, message: str, code: str) -> tuple[int, bytes]:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return status, json.dumps(body).encode()


def check_head(headers: list[tuple[bytes, bytes]], max_body_bytes: int | None,
               target_bytes: int = 0) -> tuple[int, bytes] | None:
    """(status, JSON body) when the request head breaks a limit, else None. `target_bytes`: the length of
    the request target (path and query)."""
    if target_bytes > limits.MAX_URL_BYTES:
        return _error(414, f"The request URL is {target_bytes} bytes; the limit is {limits.MAX_URL_BYTES}.",
                      "request_uri_too_long")
    if len(headers) > limits.MAX_HEADER_COUNT:
        return _error(431, f"Too many request headers ({len(headers)}); the limit is {limits.MAX_HEADER_COUNT}.",
                      "request_header_fields_too_large")
    total = 0
    for name, value in headers:
        size = len(name) + len(value)
        if size > limits.MAX_HEADER_FIELD_BYTES:
            shown = name.decode("latin-1")[:64]
            return _error(431, f"Request header '{shown}' is {size} bytes; the limit is "
                               f"{limits.MAX_HEADER_FIELD_BYTES} bytes per header.", "request_header_fields_too_large")
        total += size
    if total > limits.MAX_HEADER_BYTES:
        return _error(431, f"Request headers total {total} bytes; the limit is {limits.MAX_HEADER_BYTES} bytes.",
                      "request_header_fields_too_large")
    if max_body_bytes is not None:
        for name, value in headers:
            if name.lower() == b"content-length" and value.strip().isdigit() and int(value) > max_body_bytes:
                return _error(413, f"Request body of {int(value)} bytes exceeds the {max_body_bytes}-byte limit.",
                              "request_too_large")
    return None


class RequestLimits:
    """ASGI middleware: `check_head` on every HTTP request and WebSocket handshake."""

    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        target = len(scope.get("raw_path") or scope.get("path", "").encode()) + len(scope.get("query_string") or b"")
        refused = check_head(scope.get("headers") or [], self.max_body_bytes if kind == "http" else None, target)
        if refused is None:
            await self.app(scope, receive, send)
            return
        status, body = refused
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        if kind == "http":
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await receive()  # websocket.connect
        if "websocket.http.response" in (scope.get("extensions") or {}):
            await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})
