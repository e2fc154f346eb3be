"""Reading the SDP offer and session from a POST body in any of the accepted encodings:
multipart/form-data (`sdp` + optional `session`, typed or untyped parts), raw
`application/sdp`, or JSON `{"sdp": ..., "session": {...}}`."""

from __future__ import annotations

import email.parser
import email.policy
import json
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from .errors import ApiError


@dataclass
class OfferRequest:
    sdp: str
    session: Any = None  # the raw `session` JSON object, validated later


async def read_body(request: Request, limit: int) -> bytes:
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
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"The 'session' field is not valid JSON: {exc.msg} at position {exc.pos}.",
                       code="invalid_json", param="session") from None
    if not isinstance(value, dict):
        raise ApiError(400, "The 'session' field must be a JSON object.", code="invalid_type", param="session")
    return value


def _parse_multipart(content_type: str, body: bytes) -> OfferRequest:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\nMIME-Version: 1.0\r\n\r\n" + body)
    if not message.is_multipart():
        raise ApiError(400, "Malformed multipart body: no parts found (check the boundary).", code="invalid_body")
    fields: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        fields[str(name)] = part.get_payload(decode=True) or b""
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
            data = json.loads(_utf8(body, "body"))
        except json.JSONDecodeError as exc:
            raise ApiError(400, f"Invalid JSON body: {exc.msg}.", code="invalid_json") from None
        if not isinstance(data, dict) or not isinstance(data.get("sdp"), str):
            raise ApiError(400, "Missing required parameter: 'sdp' (a string).", code="missing_required_parameter",
                           param="sdp")
        session = data.get("session")
        if session is not None and not isinstance(session, dict):
            raise ApiError(400, "The 'session' field must be a JSON object.", code="invalid_type", param="session")
        return OfferRequest(data["sdp"], session)
    raise ApiError(415, f"Unsupported Content-Type '{ctype or '(none)'}'. Send multipart/form-data with 'sdp' and "
                        "'session' fields, application/sdp, or application/json.", code="unsupported_media_type")
