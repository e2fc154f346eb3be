"""WebRTC signaling: POST /v1/realtime/calls (offer → answer) and call control."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .. import ids
from ..media.call import CallOptions, RealtimeCall
from ..protocol.errors import ProtocolError
from ..protocol.session import override_session, parse_session_config
from ..session.voices import check_session_voice
from ..session.engine import SessionEngine, SessionLimits
from .admission import session_stages
from .body import parse_offer_body, read_body
from .cluster_routing import client_host, route_new_call, route_to_owner
from .errors import ApiError
from .state import ServerState

log = logging.getLogger("openrealtime.api")
router = APIRouter()


def _state(request: Request) -> ServerState:
    return request.app.state.server


@router.post("/v1/realtime/calls", status_code=201, response_class=Response)
async def create_call(request: Request) -> Response:
    state = _state(request)
    principal = await state.auth.key_or_secret(request)
    body = await read_body(request, state.settings.max_body_bytes)
    placed = await route_new_call(request, body)  # in a cluster: the reply of the node the call is placed on
    if placed is not None:
        return placed
    refused = state.health.admission_error()
    if refused is not None:
        raise refused
    offer = parse_offer_body(request.headers.get("content-type", ""), body)
    try:
        if principal.secret is not None:
            config = override_session(principal.secret.session, offer.session)
        else:
            config = parse_session_config(offer.session)
        model = request.query_params.get("model")
        if model and offer.session is None and principal.secret is None and hasattr(config, "model"):
            config = config.model_copy(update={"model": model})
        check_session_voice(config, state.models)
    except ProtocolError as exc:
        raise ApiError.from_protocol(exc) from None
    if state.calls.full():
        raise ApiError(429, f"This server is at its limit of {state.settings.max_calls} concurrent calls; "
                            "retry later or raise --max-calls.", code="too_many_calls", type="rate_limit_exceeded")
    settings = state.settings
    call_id = ids.rtc_call_id()
    client = client_host(request)  # the forwarding node says whose call it is

    def engine_factory(transport):
        return SessionEngine(transport, config, models=state.models, runtime=state.runtime,
                             limits=SessionLimits(max_duration_s=settings.max_call_duration_s), egress=state.egress)

    with await state.health.seat(session_stages(config)) as seat:  # 429 model_capacity_exceeded (admission.py)
        call = RealtimeCall(call_id, CallOptions(ice=state.ice, connect_timeout_s=settings.connect_timeout_s,
                                                 max_duration_s=settings.max_call_duration_s,
                                                 opus_complexity=settings.opus_complexity),
                            engine_factory, on_ended=state.calls.discard, client=client)
        seat.keep_until(call.closed)  # the shared model pools' leases, held while the call lives
    try:
        answer = await call.answer(offer.sdp)
    except ProtocolError as exc:
        await call.hangup("invalid_offer")
        raise ApiError.from_protocol(exc) from None
    state.calls.add(call)
    return Response(content=answer, status_code=201, media_type="application/sdp",
                    headers={"Location": f"/v1/realtime/calls/{call_id}"})


@router.post("/v1/realtime/calls/{call_id}/hangup")
async def hangup_call(call_id: str, request: Request) -> Response:
    state = _state(request)
    state.auth(request)
    call = state.calls.get(call_id)
    if call is None:
        owner_reply = await route_to_owner(request, call_id)  # in a cluster: the call's own node hangs it up
        if owner_reply is not None:
            return owner_reply
        raise ApiError(404, f"Call '{call_id}' not found (it may have ended already).", code="call_not_found",
                       param="call_id")
    await call.hangup("hangup")
    return Response(status_code=200)
