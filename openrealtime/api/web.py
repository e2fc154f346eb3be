"""The demo page (`GET /`) and its helper route `POST /v1/tools/inspect-sdp`."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from ..limits import MAX_SDP_BYTES
from ..media.sdp_inspect import inspect_sdp
from ..protocol.json_limits import JsonTooDeep
from ..protocol.json_limits import loads as loads_limited
from .body import read_body
from .errors import ApiError

router = APIRouter()
INDEX = Path(__file__).resolve().parent.parent / "web" / "index.html"


@lru_cache(maxsize=1)
def _index(mtime: float) -> str:
    return INDEX.read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def demo_page() -> HTMLResponse:
    try:
        html = _index(INDEX.stat().st_mtime)
    except OSError:
        raise ApiError(404, "The demo page is not installed (openrealtime/web/index.html).",
                       code="not_found") from None
    # the page talks to this origin (or a configured one); nothing is loaded from elsewhere
    return HTMLResponse(html, headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


@router.post("/v1/tools/inspect-sdp")
async def inspect_sdp_route(request: Request) -> JSONResponse:
    """Body: SDP text (any content type), or JSON `{"sdp": "..."}` / an RTCSessionDescription.
    Returns `media.sdp_inspect.inspect_sdp` JSON (the seed review's tables)."""
    state = request.app.state.server
    await state.auth.key_or_secret(request)
    body = await read_body(request, MAX_SDP_BYTES)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "The body is not valid UTF-8 text.", code="invalid_encoding") from None
    if "json" in request.headers.get("content-type", "").lower():
        try:
            value = loads_limited(text)
        except json.JSONDecodeError as exc:
            raise ApiError(400, f"The body is not valid JSON: {exc.msg} at position {exc.pos}.",
                           code="invalid_json") from None
        except JsonTooDeep as exc:
            raise ApiError(400, f"The body is not valid JSON: {exc}.", code="invalid_json") from None
        if isinstance(value, dict) and isinstance(value.get("sdp"), str):
            text = value["sdp"]
        elif isinstance(value, str):
            text = value
        else:
            raise ApiError(400, "Send the SDP as text, or JSON {\"sdp\": \"v=0...\"}.", code="missing_required_parameter",
                           param="sdp")
    if not text.strip():
        raise ApiError(400, "The body is empty; send an SDP offer or answer (starting with 'v=0').",
                       code="missing_required_parameter", param="sdp")
    report = inspect_sdp(text)
    if report["session"]["version"] is None and not report["media"]:
        raise ApiError(400, "This does not look like SDP (no 'v=' line and no 'm=' sections).",
                       code="invalid_sdp", param="sdp")
    return JSONResponse(report)
