"""The Realtime WebSocket interface (spec §1.4): `GET /v1/realtime?model=…` runs a session on the same
SessionEngine as WebRTC; `GET /v1/realtime?call_id=rtc_…` attaches a sideband to a live WebRTC call.

Auth: `Authorization: Bearer KEY`, or the browser subprotocols `realtime` +
`openai-insecure-api-key.KEY` (`openai-organization.*`, `openai-project.*` and other offered
subprotocols are accepted and ignored; `realtime` is echoed when offered). `ek_` client secrets open
direct sessions (their stored session applies); a sideband needs an API key. A failed handshake is
an HTTP reply in OpenAI's error shape: 401 (auth), 404 (unknown call_id), 400 (bad query),
429 (session limit), 503 (models still loading, a backend not answering yet, or draining).

Beta: the header `OpenAI-Beta: realtime=v1` or the subprotocol `openai-beta.realtime-v1` selects
the beta event names and shapes (protocol/beta.py). `POST /v1/realtime?model=` (beta WebRTC
signaling, raw SDP) is answered by the `/v1/realtime/calls` route, with beta events on its data channel.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import JSONResponse, Response

from ..limits import MAX_EVENT_BYTES
from ..observability.logs import demote_client_faults, set_call_id
from ..protocol import beta as beta_protocol
from ..protocol import server_events as ev
from ..protocol.errors import ProtocolError
from ..protocol.session import RealtimeSessionConfig, TranscriptionSessionConfig, session_object
from ..session.engine import SessionEngine, SessionLimits
from .admission import session_stages
from .auth import bearer_token
from .calls import create_call
from .cluster_routing import pipe_sideband, websocket_owner
from .errors import ApiError
from .state import ServerState
from .ws_transport import CLOSE_NORMAL, CLOSE_SERVER_ERROR, CLOSE_TIMEOUT_S, WebSocketTransport

log = logging.getLogger("openrealtime.websocket")
router = APIRouter()
demote_client_faults()  # uvicorn logs a client's invalid UTF-8 frame as an ERROR with a traceback

API_KEY_PROTOCOL = "openai-insecure-api-key."
# Text frames over limits.MAX_EVENT_BYTES get an `error` event and the socket stays open; frames over
# limits.WS_MAX_FRAME_BYTES (uvicorn's `ws_max_size`) are refused by the protocol layer with close 1009.


def _token(websocket: WebSocket) -> str | None:
    token = bearer_token(websocket)  # type: ignore[arg-type]  # reads .headers only
    if token is not None:
        return token
    for proto in websocket.scope.get("subprotocols") or []:
        if proto.startswith(API_KEY_PROTOCOL) and len(proto) > len(API_KEY_PROTOCOL):
            return proto[len(API_KEY_PROTOCOL):]
    return None


async def _deny(websocket: WebSocket, exc: ApiError) -> None:
    """Refuse the handshake with an HTTP error in OpenAI's shape (close 1008 where the server can't)."""
    response = JSONResponse(exc.error.http_body(), status_code=exc.status, headers=exc.headers)
    try:
        await websocket.send_denial_response(response)
    except RuntimeError:  # ASGI server without the websocket.http.response extension
        await websocket.close(1008, exc.error.message[:120])


@router.websocket("/v1/realtime")
async def realtime_websocket(websocket: WebSocket) -> None:
    state: ServerState = websocket.app.state.server
    query = websocket.query_params
    offered = list(websocket.scope.get("subprotocols") or [])
    beta = beta_protocol.wants_beta(websocket.headers.get("openai-beta"), offered)
    call_id = query.get("call_id")
    owner = None  # in a cluster: the other node whose call this sideband is for
    try:
        principal = await state.auth.check_token(_token(websocket), allow_ephemeral=call_id is None)
        if call_id is not None:
            call = state.calls.get(call_id)
            if call is None and (owner := await websocket_owner(websocket, call_id, _token(websocket))) is None:
                raise ApiError(404, f"Call '{call_id}' not found (it may have ended already).",
                               code="call_not_found", param="call_id")
        elif (refused := state.health.admission_error()) is not None:
            raise refused
        elif len(state.ws_sessions) >= state.settings.max_calls:
            raise ApiError(429, f"This server is at its limit of {state.settings.max_calls} concurrent WebSocket "
                                "sessions; retry later or raise --max-calls.", code="too_many_sessions",
                           type="rate_limit_exceeded")
        else:
            config = _session_config(principal.secret.session if principal.secret else None,
                                     query.get("model"), query.get("intent"))
            seat = await state.health.seat(session_stages(config))  # 429 model_capacity_exceeded
    except ApiError as exc:
        await _deny(websocket, exc)
        return
    if owner is not None:
        await pipe_sideband(websocket, owner)  # the owner's handshake reply, then frames both ways
        return
    if call_id is not None:
        await websocket.accept(subprotocol="realtime" if "realtime" in offered else None)
        await _run_sideband(websocket, state, call, beta)
        return
    with seat:  # the shared model pools' leases, held for the session's life
        await websocket.accept(subprotocol="realtime" if "realtime" in offered else None)
        await _run_session(websocket, state, config, beta)


def _session_config(stored: Any, model: str | None, intent: str | None):
    if stored is not None:
        config = stored.model_copy(deep=True)
    elif intent == "transcription":
        config = TranscriptionSessionConfig()
    else:
        config = RealtimeSessionConfig()
    if model and isinstance(config, RealtimeSessionConfig):
        if len(model) > 128:
            raise ApiError(400, "Invalid 'model': at most 128 characters.", code="invalid_value", param="model")
        config = config.model_copy(update={"model": model})
    return config


async def _read_frames(websocket: WebSocket, engine_input, send_error, beta: bool) -> None:
    """Client frames → the engine until the peer goes away. Bad frames get an `error` event."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            if message.get("bytes") is not None:
                send_error(ProtocolError("Binary frames are not supported: send each client event as one JSON "
                                         "text frame.", code="invalid_frame_type"))
            continue
        if beta:
            text = beta_protocol.client_text_to_ga(text, MAX_EVENT_BYTES)
        engine_input(text)


async def _serve(transport: WebSocketTransport, reader: asyncio.Task, ended: asyncio.Future | None = None) -> None:
    """Run until the client leaves (reader returns), the transport closes itself (expiry, slow client,
    send failure) or `ended` fires (the sideband's call ended: close 1000)."""
    closed = asyncio.ensure_future(transport.closed.wait())
    waiters = {reader, closed} | ({ended} if ended is not None else set())
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if reader.done():
            exc = None if reader.cancelled() else reader.exception()
            if exc is None:
                transport.abort()  # the client went away: nothing left to deliver
            else:
                log.error("websocket reader failed", exc_info=exc)
                transport.close_with(CLOSE_SERVER_ERROR, "internal server error")
        elif ended is not None and ended.done():
            transport.close_with(CLOSE_NORMAL, "call ended")
        try:
            await asyncio.wait_for(transport.closed.wait(), CLOSE_TIMEOUT_S + 1)
        except asyncio.TimeoutError:
            transport.abort()
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _run_session(websocket: WebSocket, state: ServerState, config: Any, beta: bool) -> None:
    settings = state.settings
    transport = WebSocketTransport(websocket, beta=beta)
    engine = SessionEngine(transport, config, models=state.models, runtime=state.runtime,
                           limits=SessionLimits(max_duration_s=settings.max_call_duration_s,
                                                max_event_bytes=MAX_EVENT_BYTES), egress=state.egress)
    transport.conversation_id = engine.conversation.id
    set_call_id(engine.id)
    client = websocket.client.host if websocket.client else "-"
    log.info("websocket session=%s client=%s state=open model=%s beta=%s", engine.id, client,
             getattr(config, "model", "-"), beta)
    try:
        await serve_direct(websocket, state, engine, transport, beta=beta)
    finally:
        log.info("websocket session=%s state=closed code=%s events_out=%d", engine.id, transport.close_code,
                 transport.events_out)


class DirectSession(Protocol):
    """A session a WebSocket runs by itself: a SessionEngine, or a TranslationSession (api/translations.py)."""

    def start(self) -> None: ...

    def handle_message(self, text: str) -> None: ...

    def send_error(self, exc: ProtocolError) -> None: ...

    def expire(self) -> None: ...

    def shut_down(self) -> None: ...

    def close(self, reason: str) -> None: ...


async def serve_direct(websocket: WebSocket, state: ServerState, session: DirectSession,
                       transport: WebSocketTransport, *, beta: bool = False) -> None:
    """Run `session` until the client leaves or the session closes itself: one of `--max-calls` meanwhile
    (and drained with the others), expired after `--max-call-duration`."""
    state.ws_sessions.add(session)
    expiry = asyncio.get_running_loop().call_later(state.settings.max_call_duration_s, session.expire)
    session.start()
    reader = asyncio.create_task(_read_frames(websocket, session.handle_message, session.send_error, beta))
    try:
        await _serve(transport, reader)
    finally:
        expiry.cancel()
        session.close("websocket_closed")
        transport.abort()
        state.ws_sessions.discard(session)


async def _run_sideband(websocket: WebSocket, state: ServerState, call: Any, beta: bool) -> None:
    """Observe every server event of a WebRTC call and send client events into its engine."""
    set_call_id(call.id)
    engine: SessionEngine = call.engine
    transport = WebSocketTransport(websocket, beta=beta, conversation_id=engine.conversation.id)
    events = engine.events
    unsubscribe = events.subscribe(lambda event, text: transport.send_text(text))
    log.info("websocket sideband call=%s attached listeners=%d", call.id, events.listeners)
    # like any Realtime connection, a sideband starts with `session.created` (the call's session; to it alone)
    transport.send(ev.SessionCreatedEvent(session=session_object(engine.config, id=engine.id,
                                                                 expires_at=engine.expires_at)))

    def to_engine(text: str) -> None:
        if not call.closed.is_set():
            engine.handle_message(text)

    def error_here(exc: ProtocolError) -> None:
        transport.send(ev.ErrorEvent(error=exc.detail()))

    reader = asyncio.create_task(_read_frames(websocket, to_engine, error_here, beta))
    try:
        await _serve(transport, reader, asyncio.ensure_future(call.closed.wait()))
    finally:
        unsubscribe()
        transport.abort()
        log.info("websocket sideband call=%s detached listeners=%d", call.id, events.listeners)


# ---- beta WebRTC signaling -----------------------------------------------------------------------
@router.post("/v1/realtime", status_code=201, response_class=Response)
async def create_beta_call(request: Request) -> Response:
    """`POST /v1/realtime?model=…` with a raw SDP offer: the beta WebRTC interface. Answered exactly like
    `/v1/realtime/calls`; the call's data channel then carries beta event names and shapes."""
    response = await create_call(request)
    state: ServerState = request.app.state.server
    call = state.calls.get(response.headers.get("location", "").rsplit("/", 1)[-1])
    if call is not None:
        _beta_data_channel(call)
    return response


def _beta_data_channel(call: Any) -> None:
    transport = call.transport
    if not hasattr(transport, "outbound"):
        return  # a DataChannelTransport without translation hooks: GA events
    conversation_id = call.engine.conversation.id
    max_bytes = call.engine.limits.max_event_bytes
    transport.outbound = lambda text: beta_protocol.server_text_to_beta(text, conversation_id)
    transport.inbound = lambda raw: beta_protocol.client_text_to_ga(raw, max_bytes)
