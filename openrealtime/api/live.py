"""OpenAI's Live API over HTTP, WebSocket and WebRTC (openai-python 3.63 `client.live`).

- `WS /v1/live/sessions` (`client.live.connect()`): a LiveSession (live/session.py) started by the client's
  `session.start`. The same path as the POST below: the route is chosen by the Upgrade header.
- `POST /v1/live/sessions` (`client.live.create(session=, transport={type: "webrtc", sdp})`): a WebRTC call
  on the media edge (media/call.py) whose session is a LiveSession; answered 201 with
  `{session: {id: "live_…"}, transport: {type: "webrtc", sdp: answer}}`. Its events ride the first data
  channel the client opens, whatever its label.
- `WS /v1/live/sessions/{id}/attach` (`client.live.sideband.connect`): a trusted observer of a WebRTC session:
  every event, the input audio reflected and the output audio with its times; every command but
  `session.start` and input audio; no data-channel permissions.
- `POST /v1/live/sessions/{id}/hangup`: ends a WebRTC session (its sidebands get `session.closed`).
- `POST /v1/live/sessions/{id}/accept` (`client.live.sessions.accept`, with `--sip-port`): a ringing SIP call
  (sip/server.py; announced by `live.transport.incoming` with `--sip-api live`) answered as a LiveSession;
  `reject` and `refer` act on it as on a Realtime call (api/sip_calls.py); a sideband attaches to it.
- `fork` and `content` (stored sessions) answer with errors that say what is missing here.

In a cluster the POST is placed on a node by load and `…/attach` and `…/hangup` reach the session's owner
from any node (api/cluster_routing.py), as for Realtime calls.

Auth: an API key (`Authorization: Bearer`). A refused handshake is an HTTP reply in OpenAI's error shape:
401, 404 (unknown session), 429 (`--max-calls`, `--max-conversations`), 503 (loading, draining), 501 on a
server without a language model (`--engine echo`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, TypeVar

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from .. import ids
from ..limits import MAX_EVENT_BYTES
from ..media.call import CallOptions, RealtimeCall
from ..observability.logs import set_call_id
from ..protocol.errors import ProtocolError, pydantic_error_to_protocol
from ..protocol.json_limits import JsonTooDeep
from ..protocol.json_limits import loads as loads_limited
from ..protocol.live import LiveAcceptRequest, LiveCreateRequest, SessionStartedEvent, live_error
from ..protocol.server_events import to_json
from ..live.config import check_supported
from ..live.session import LiveLimits, LiveSession
from .auth import bearer_token
from .body import read_body
from .cluster_routing import client_host, pipe_sideband, route_new_call, route_to_owner, websocket_owner
from .errors import ApiError
from .sip_calls import as_api_errors, refer_call, reject_call
from .state import ServerState
from .websocket import _deny, _read_frames, _serve, _token, serve_direct
from .ws_transport import WebSocketTransport

log = logging.getLogger("openrealtime.live")
RequestT = TypeVar("RequestT", bound=BaseModel)
router = APIRouter()


def _limits(state: ServerState) -> LiveLimits:
    return LiveLimits(max_duration_s=state.settings.max_call_duration_s, max_event_bytes=MAX_EVENT_BYTES)


def _require_models(state: ServerState) -> None:
    models = state.models
    if models is None or models.vad is None or models.stt is None or models.llm is None or models.tts is None:
        raise ApiError(501, "Live sessions need speech-to-text, a language model and a voice; this server has none "
                            "(--engine echo). Start it with --engine local.", code="live_unavailable",
                       type="server_error")


def _admit(state: ServerState, *, calls: bool) -> None:
    if (refused := state.health.admission_error()) is not None:
        raise refused
    if calls and state.calls.full() or not calls and len(state.ws_sessions) >= state.settings.max_calls:
        raise ApiError(429, f"This server is at its limit of {state.settings.max_calls} concurrent sessions; retry "
                            "later or raise --max-calls.", code="too_many_sessions", type="rate_limit_exceeded")
    _require_models(state)


# ---- WebSocket -----------------------------------------------------------------------------------
@router.websocket("/v1/live/sessions")
async def live_websocket(websocket: WebSocket) -> None:
    state: ServerState = websocket.app.state.server
    try:
        await state.auth.check_token(_token(websocket), allow_ephemeral=False)
        _admit(state, calls=False)
        seat = await state.health.seat()  # 429 model_capacity_exceeded (--llm/stt/tts-max-sessions)
    except ApiError as exc:
        await _deny(websocket, exc)
        return
    with seat:  # the shared model pools' leases, held for the session's life
        await websocket.accept()
        transport = WebSocketTransport(websocket)
        session = LiveSession(transport, models=state.models, runtime=state.runtime, egress=state.egress,
                              limits=_limits(state))
        set_call_id(session.id)
        client = websocket.client.host if websocket.client else "-"
        log.info("live session=%s client=%s transport=websocket state=open", session.id, client)
        try:
            await serve_direct(websocket, state, session, transport)
        finally:
            log.info("live session=%s state=closed code=%s events_out=%d stats=%s", session.id,
                     transport.close_code, transport.events_out, session.stats)


# ---- WebRTC --------------------------------------------------------------------------------------
def _request(body: bytes, model: type[RequestT], shape: str) -> RequestT:
    """The JSON body as `model` (strict: unknown fields refused, naming them)."""
    try:
        data = loads_limited(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, JsonTooDeep) as exc:
        raise ApiError(400, f"The body is not valid JSON: {exc}. Send {shape} as application/json.",
                       code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"The body must be a JSON object: {shape}.", code="invalid_type")
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        raise ApiError.from_protocol(pydantic_error_to_protocol(exc, data=data)) from None


@router.post("/v1/live/sessions", status_code=201)
async def create_live_session(request: Request) -> JSONResponse:
    state: ServerState = request.app.state.server
    state.auth(request)
    body = await read_body(request, state.settings.max_body_bytes)
    placed = await route_new_call(request, body)  # in a cluster: the reply of the node the session is placed on
    if placed is not None:
        return placed
    created = _request(body, LiveCreateRequest, "{session, transport: {type: 'webrtc', sdp}}")
    _admit(state, calls=True)
    try:
        check_supported(created.session, "webrtc", state.models)
    except ProtocolError as exc:
        raise ApiError.from_protocol(exc) from None
    settings = state.settings
    session_id = ids.live_session_id()

    def session_factory(transport: Any) -> Any:
        return LiveSession(transport, models=state.models, runtime=state.runtime, egress=state.egress,
                           limits=_limits(state), config=created.session, session_id=session_id)

    call = RealtimeCall(session_id, CallOptions(ice=state.ice, connect_timeout_s=settings.connect_timeout_s,
                                                max_duration_s=settings.max_call_duration_s,
                                                opus_complexity=settings.opus_complexity, events_label=None),
                        session_factory, on_ended=state.calls.discard, client=client_host(request))
    try:
        answer = await call.answer(created.transport.sdp)
    except ProtocolError as exc:
        await call.hangup("invalid_offer")
        exc.param = "transport.sdp" if exc.param == "sdp" else exc.param
        raise ApiError.from_protocol(exc) from None
    state.calls.add(call)
    log.info("live session=%s transport=webrtc state=created", session_id)
    return JSONResponse({"session": {"id": session_id}, "transport": {"type": "webrtc", "sdp": answer}},
                        status_code=201)


def _live_call(state: ServerState, session_id: str) -> Any:
    call = state.calls.get(session_id)
    if call is None or not isinstance(call.engine, LiveSession):
        raise ApiError(404, f"Live session '{session_id}' not found (it may have ended, or it is not a WebRTC "
                            "session: a WebSocket session has no sideband).", code="session_not_found",
                       param="session_id")
    return call


@router.post("/v1/live/sessions/{session_id}/hangup")
async def hangup_live_session(session_id: str, request: Request) -> Response:
    state: ServerState = request.app.state.server
    state.auth(request)
    if state.calls.get(session_id) is None:
        owner_reply = await route_to_owner(request, session_id)  # in a cluster: the session's own node
        if owner_reply is not None:
            return owner_reply
    await _live_call(state, session_id).hangup("hangup")
    return Response(status_code=200)


# ---- SIP (--sip-port) -----------------------------------------------------------------------------
def _sip(request: Request) -> Any:
    """The SIP server; without one (no --sip-port) a SIP command is answered 400 sip_not_supported."""
    sip = getattr(request.app.state, "sip", None)
    if sip is None:
        raise ApiError(400, "This server takes no phone calls (start it with --sip-port): accept, reject and refer "
                            "act on SIP sessions.", code="sip_not_supported", param="session_id")
    return sip


@router.post("/v1/live/sessions/{session_id}/accept")
async def accept_live_session(session_id: str, request: Request) -> Response:
    """A ringing SIP call (announced by `live.transport.incoming`, or `realtime.call.incoming`: the first accept
    chooses the API) answered as a Live session; its events reach sidebands (`…/attach`)."""
    state: ServerState = request.app.state.server
    state.auth(request)
    accepted = _request(await read_body(request, state.settings.max_body_bytes), LiveAcceptRequest,
                        "{session: {type: 'live', model, ...}}")
    sip = _sip(request)
    if not sip.is_sip_call(session_id):
        if state.calls.get(session_id) is not None:
            return Response(status_code=200)  # a WebRTC session: started at creation
        raise ApiError(404, f"Live session '{session_id}' not found: no SIP call rings with this id (start the server "
                            "with --sip-port; the webhook gives the id).", code="session_not_found",
                       param="session_id")
    _require_models(state)
    try:
        check_supported(accepted.session, "sip", state.models)
    except ProtocolError as exc:
        raise ApiError.from_protocol(exc) from None

    def make_session(transport: Any, plan: Any) -> LiveSession:
        return LiveSession(transport, models=state.models, runtime=state.runtime, egress=state.egress,
                           limits=_limits(state), config=accepted.session, session_id=session_id)

    with as_api_errors():
        await sip.accept(session_id, make_session)
    log.info("live session=%s transport=sip state=accepted", session_id)
    return Response(status_code=200)


@router.post("/v1/live/sessions/{session_id}/reject")
async def reject_live_session(session_id: str, request: Request) -> Response:
    request.app.state.server.auth(request)
    _sip(request)
    return await reject_call(session_id, request)


@router.post("/v1/live/sessions/{session_id}/refer")
async def refer_live_session(session_id: str, request: Request) -> Response:
    request.app.state.server.auth(request)
    _sip(request)
    return await refer_call(session_id, request)


@router.post("/v1/live/sessions/{session_id}/{action}")
async def unsupported_live_action(session_id: str, action: str, request: Request) -> Response:
    state: ServerState = request.app.state.server
    state.auth(request)
    if action == "fork":
        raise ApiError(400, "Forks need stored sessions (store: true), which this server does not keep yet.",
                       code="fork_not_supported", param="session_id")
    raise ApiError(404, f"Unknown Live session action '{action}'.", code="not_found")


@router.get("/v1/live/sessions/{session_id}/content")
async def live_session_content(session_id: str, request: Request) -> Response:
    state: ServerState = request.app.state.server
    state.auth(request)
    raise ApiError(404, "Recordings need stored sessions (store: true), which this server does not keep yet.",
                   code="recording_not_found", param="session_id")


# ---- sideband ------------------------------------------------------------------------------------
@router.websocket("/v1/live/sessions/{session_id}/attach")
async def live_sideband(websocket: WebSocket, session_id: str) -> None:
    state: ServerState = websocket.app.state.server
    try:
        token = bearer_token(websocket)  # type: ignore[arg-type]  # reads .headers only
        state.auth.check_api_key(token)
        if state.calls.get(session_id) is None and (owner := await websocket_owner(websocket, session_id,
                                                                                   token)) is not None:
            await pipe_sideband(websocket, owner)  # in a cluster: the session's own node serves it
            return
        call = _live_call(state, session_id)
    except ApiError as exc:
        await _deny(websocket, exc)
        return
    await websocket.accept()
    set_call_id(session_id)
    session: LiveSession = call.engine
    transport = WebSocketTransport(websocket)
    unsubscribe = [session.events.subscribe(lambda event, text: transport.send_text(text)),
                   session.reflections.subscribe(lambda event, text: transport.send_text(text))]
    log.info("live sideband session=%s attached", session_id)
    if session.started:  # the replay: where the session stands
        transport.send_text(_started_text(session))

    def to_session(text: str) -> None:
        if not call.closed.is_set():
            session.handle_sideband(text, lambda exc: transport.send_text(_error_text(exc)))

    reader = asyncio.create_task(_read_frames(websocket, to_session, lambda exc: transport.send_text(
        _error_text(exc)), False))
    try:
        await _serve(transport, reader, asyncio.ensure_future(call.closed.wait()))
    finally:
        for stop in unsubscribe:
            stop()
        transport.abort()
        log.info("live sideband session=%s detached", session_id)


def _started_text(session: LiveSession) -> str:
    return to_json(SessionStartedEvent(session=session.resource()))


def _error_text(exc: ProtocolError) -> str:
    return to_json(live_error(exc))
