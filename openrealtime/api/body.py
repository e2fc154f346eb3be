"""Reading the SDP offer and session from a POST body in any of the accepted encodings:
multipart/form-data (`sdp` + optional `session`, typed or untyped parts), raw
`application/sdp`, or JSON `{"sdp": ..., "session": {...}}`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from ..protocol.json_limits import JsonTooDeep
from ..protocol.json_limits import loads as loads_limited
from .errors import ApiError


@dataclass
class OfferRequest:
    sdp: str
    session: Any = None  # the raw `session` JSON object, validated later


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused (413) at the first byte over `limit`: a declared Content-Length is checked
    before anything is read, a chunked body as it arrives."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"Request body of {declared} bytes exceeds the {limit}-byte limit.", code="request_too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"Request body exceeds the {limit}-byte limit.", code="request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, f"The {what} is not valid UTF-8 text.", code="invalid_encoding", param=what) from None


def _session_json(text: str) -> Any:
    try:
        value = loads_limited(text)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"The 'session' field is not valid JSON: {exc.msg} at position {exc.pos}.",
                       code="invalid_json", param="session") from None
    except JsonTooDeep as exc:
        raise ApiError(400, f"The 'session' field is not valid JSON: {exc}.", code="invalid_json",
                       param="session") from None
    if not isinstance(value, dict):
        raise ApiError(400, "The 'session' field must be a JSON object.", code="invalid_type", param="session")
    return value


def _multipart_fields(content_type: str, body: bytes) -> dict[str, bytes]:
    """Form fields by name (python-multipart's streaming parser; parts with or without a type)."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "Malformed multipart body: the Content-Type has no boundary.", code="invalid_body")
    fields: dict[str, bytes] = {}
    state: dict[str, Any] = {"name": None, "header": b"", "value": b"", "data": bytearray()}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["header"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        if state["header"].lower() == b"content-disposition":
            _, disp = parse_options_header(state["value"])
            name = disp.get(b"name")
            state["name"] = name.decode("utf-8", "replace") if name is not None else None
        state["header"], state["value"] = b"", b""

    def on_part_begin() -> None:
        state["name"], state["data"] = None, bytearray()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["data"] += data[start:end]

    def on_part_end() -> None:
        if state["name"]:
            fields[state["name"]] = bytes(state["data"])

    try:  # python-multipart refuses a boundary longer than 256 bytes here (RFC 2046 allows 70)
        parser = MultipartParser(boundary, {
            "on_header_field": on_header_field, "on_header_value": on_header_value,
            "on_header_end": on_header_end, "on_part_begin": on_part_begin, "on_part_data": on_part_data,
            "on_part_end": on_part_end})
        parser.write(body)
        parser.finalize()
    except Exception as exc:  # python-multipart raises its own errors on broken framing
        raise ApiError(400, f"Malformed multipart body: {exc}.", code="invalid_body") from None
    return fields


def _parse_multipart(content_type: str, body: bytes) -> OfferRequest:
    fields = _multipart_fields(content_type, body)
    if not fields:
        raise ApiError(400, "Malformed multipart body: no parts found (check the boundary).", code="invalid_body")
    if "sdp" not in fields:
        raise ApiError(400, "Missing required parameter: 'sdp' (the offer as a form field).",
                       code="missing_required_parameter", param="sdp")
    session = _session_json(_utf8(fields["session"], "session")) if "session" in fields else None
    return OfferRequest(_utf8(fields["sdp"], "sdp"), session)


def parse_offer_body(content_type: str, body: bytes) -> OfferRequest:
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        return _parse_multipart(content_type, body)
    if ctype == "application/sdp":
        return OfferRequest(_utf8(body, "sdp"))
    if ctype == "application/json":
        try:
            data = loads_limited(_utf8(body, "body"))
        except json.JSONDecodeError as exc:
            raise ApiError(400, f"Invalid JSON body: {exc.msg}.", code="invalid_json") from None
        except JsonTooDeep as exc:
            raise ApiError(400, f"Invalid JSON body: {exc}.", code="invalid_json") from None
        if not isinstance(data, dict) or not isinstance(data.get("sdp"), str):
            raise ApiError(400, "Missing required parameter: 'sdp' (a string).", code="missing_required_parameter",
                           param="sdp")
        session = data.get("session")
        if session is not None and not isinstance(session, dict):
            raise ApiError(400, "The 'session' field must be a JSON object.", code="invalid_type", param="session")
        return OfferRequest(data["sdp"], session)
    raise ApiError(415, f"Unsupported Content-Type '{ctype or '(none)'}'. Send multipart/form-data with 'sdp' and "
                        "'session' fields, application/sdp, or application/json.", code="unsupported_media_type")
