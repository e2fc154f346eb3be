"""Call control for SIP calls, as openai-python's `client.realtime.calls` sends it:
`POST /v1/realtime/calls/{call_id}/accept` (a full session config, validated before the caller hears
anything: 400 on a bad one), `/reject` (`status_code`, 300-699, default 603), `/refer` (`target_uri`).
`/hangup` is the WebRTC route (api/calls.py): a SIP call is in the same registry and hangs up with a BYE.
All of them are idempotent (the SDK retries on 408/409/429/5xx) and answer 200 with no body.

With `--sip-port`, `install` also runs the SIP server (openrealtime/sip/) for the app's lifetime.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import ssl
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

from ..cluster.model_pools import MODEL_STAGES
from ..protocol.errors import ProtocolError
from ..protocol.json_limits import JsonTooDeep
from ..protocol.json_limits import loads as loads_limited
from ..protocol.session import PcmaFormat, PcmFormat, PcmuFormat, RealtimeSessionConfig, parse_session_config
from ..session.engine import SessionEngine, SessionLimits
from ..session.voices import check_session_voice
from ..sip.digest import DigestAuth
from ..sip.sdp import MediaPlan
from ..sip.server import CallControlError, SipServer, SipSettings
from ..sip.webhook import WebhookSender
from .body import read_body
from .errors import ApiError
from .state import ServerState

log = logging.getLogger("openrealtime.api")
router = APIRouter()

MAX_TARGET_URI = 2048
_TARGET_URI = re.compile(r"^(sips?|tel):[^\s<>\"]+$", re.I)


def _sip(request: Request) -> SipServer | None:
    return getattr(request.app.state, "sip", None)


@contextmanager
def as_api_errors() -> Iterator[None]:
    """A control request the SIP server cannot do, answered in OpenAI's error shape."""
    try:
        yield
    except CallControlError as exc:
        kind = "server_error" if exc.status >= 500 else "invalid_request_error"
        raise ApiError(exc.status, exc.message, code=exc.code, param=exc.param, type=kind) from None


def _not_found(call_id: str) -> ApiError:
    return ApiError(404, f"Call '{call_id}' not found (it may have ended already).", code="call_not_found",
                    param="call_id")


async def _json_body(request: Request, state: ServerState) -> dict[str, Any]:
    raw = await read_body(request, state.settings.max_body_bytes)
    if not raw.strip():
        return {}
    try:
        value = loads_limited(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiError(400, "The body is not valid UTF-8 text.", code="invalid_encoding") from None
    except (json.JSONDecodeError, JsonTooDeep) as exc:
        raise ApiError(400, f"The body is not valid JSON: {exc}.", code="invalid_json") from None
    if not isinstance(value, dict):
        raise ApiError(400, "The body must be a JSON object.", code="invalid_type")
    return value


async def _control(request: Request) -> tuple[ServerState, dict[str, Any]]:
    """The server's state and the JSON body of a call-control request (a server API key required)."""
    state: ServerState = request.app.state.server
    state.auth(request)
    return state, await _json_body(request, state)


def _with_codec(config: RealtimeSessionConfig, plan: MediaPlan) -> RealtimeSessionConfig:
    """The RTP codec is negotiated on the SIP leg: the session reports it as its audio format (G.711 as
    such; Opus, decoded to 24 kHz PCM as on WebRTC calls, as audio/pcm)."""
    fmt = {"PCMU": PcmuFormat, "PCMA": PcmaFormat}.get(plan.codec, PcmFormat)()
    audio = config.audio.model_copy(update={"input": config.audio.input.model_copy(update={"format": fmt}),
                                            "output": config.audio.output.model_copy(update={"format": fmt})})
    return config.model_copy(update={"audio": audio})


@router.post("/v1/realtime/calls/{call_id}/accept")
async def accept_call(call_id: str, request: Request) -> Response:
    state, body = await _control(request)
    if body.get("type") != "realtime":
        raise ApiError(400, "Missing or invalid 'type': a call is accepted with a realtime session config "
                            "(type \"realtime\").", code="invalid_value", param="type")
    try:
        config = parse_session_config(body, param="session")
        check_session_voice(config, state.models)
    except ProtocolError as exc:
        raise ApiError.from_protocol(exc) from None
    assert isinstance(config, RealtimeSessionConfig)
    sip = _sip(request)
    if sip is None or not sip.is_sip_call(call_id):
        if sip is None or state.calls.get(call_id) is None:
            raise _not_found(call_id)
        return Response(status_code=200)  # a WebRTC call: answered at creation
    settings = state.settings

    def make_engine(transport, plan: MediaPlan) -> SessionEngine:
        return SessionEngine(transport, _with_codec(config, plan), models=state.models, runtime=state.runtime,
                             limits=SessionLimits(max_duration_s=settings.max_call_duration_s), egress=state.egress)

    with as_api_errors():
        await sip.accept(call_id, make_engine)
    return Response(status_code=200)


@router.post("/v1/realtime/calls/{call_id}/reject")
async def reject_call(call_id: str, request: Request) -> Response:
    state, body = await _control(request)
    status = body.get("status_code", 603)
    if isinstance(status, bool) or not isinstance(status, int) or not 300 <= status <= 699:
        raise ApiError(400, "Invalid 'status_code': a SIP final status from 300 to 699 (default 603).",
                       code="invalid_value", param="status_code")
    sip = _sip(request)
    if sip is None:
        raise _not_found(call_id)
    if sip.reject_idempotent(call_id):
        return Response(status_code=200)
    with as_api_errors():
        sip.reject(call_id, status)
    return Response(status_code=200)


@router.post("/v1/realtime/calls/{call_id}/refer")
async def refer_call(call_id: str, request: Request) -> Response:
    state, body = await _control(request)
    target = body.get("target_uri")
    if not isinstance(target, str) or not target.strip():
        raise ApiError(400, "Missing required parameter: 'target_uri' (a sip:, sips: or tel: URI).",
                       code="missing_required_parameter", param="target_uri")
    target = target.strip()
    if len(target) > MAX_TARGET_URI or not _TARGET_URI.match(target):
        raise ApiError(400, "Invalid 'target_uri': a sip:, sips: or tel: URI without spaces, quotes or <>, "
                            f"at most {MAX_TARGET_URI} characters.", code="invalid_value", param="target_uri")
    sip = _sip(request)
    if sip is None:
        raise _not_found(call_id)
    with as_api_errors():
        await sip.refer(call_id, target)
    return Response(status_code=200)


# ---- the SIP server's lifetime -------------------------------------------------------------------------
def sip_settings(state: ServerState) -> SipSettings:
    s = state.settings
    advertise = s.sip_advertise_ip or state.ice.addresses[0][1]
    context = None
    if s.sip_tls_port is not None and s.sip_tls_cert and s.sip_tls_key:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(s.sip_tls_cert, s.sip_tls_key)
    return SipSettings(host=s.host, port=s.sip_port or 0, advertise_ip=advertise, tls_port=s.sip_tls_port,
                       tls_context=context, ring_timeout_s=s.sip_ring_timeout_s,
                       allow=tuple(ipaddress.ip_network(a, strict=False) for a in s.sip_allow),
                       auth=DigestAuth.from_specs(s.sip_auth),
                       max_calls=s.max_calls, max_duration_s=s.max_call_duration_s, api=s.sip_api)


def install(app: FastAPI, state: ServerState) -> None:
    """Add the call-control routes; with --sip-port, run the SIP server while the app runs."""
    app.include_router(router)
    app.state.sip = None
    settings = state.settings
    if settings.sip_port is None:
        return
    inner = app.router.lifespan_context

    def admission() -> str | None:
        refused = state.health.admission_error(pool_stages=MODEL_STAGES)  # accepted later: counted, not leased here
        return refused.error.message if refused is not None else None

    @asynccontextmanager
    async def lifespan(app_: FastAPI):
        assert settings.webhook_url and settings.webhook_secret  # Settings.check()
        sip = SipServer(sip_settings(state), state.calls, WebhookSender(settings.webhook_url, settings.webhook_secret),
                        admission=admission)
        async with inner(app_) as maybe_state:
            try:
                await sip.start()
            except OSError as exc:
                log.error("sip could not listen on port %s: %s", settings.sip_port, exc)
                raise
            app_.state.sip = sip
            try:
                yield maybe_state
            finally:
                app_.state.sip = None
                await sip.close()

    app.router.lifespan_context = lifespan
