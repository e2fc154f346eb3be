"""Realtime translation sessions over HTTP and WebSocket (openai-python 3.63 `realtime.translations`).

`POST /v1/realtime/translations/client_secrets` mints an `ek_` secret bound to a translation session
(`{session: {model, audio}, expires_after?}` → `{value, expires_at, session}`), with the rules of
`/v1/realtime/client_secrets`: an API key to mint, 10-7200 s (default 600), usable for several sessions
until it expires, only for translation sessions (and a realtime secret not for these).

`GET /v1/realtime/translations?model=…` (WebSocket) runs a TranslationSession (translation/session.py):
auth by API key or such an `ek_` secret (its stored session applies, its model included), in the
header or the browser subprotocol, as on `/v1/realtime`. A refused handshake is an HTTP reply in the
OpenAI error shape: 401, 400 (no model, an `intent` query), 429 (`--max-calls`), 503 (loading, draining),
501 on a server without speech-to-text and a language model (`--engine echo`). The socket closes 1000
after `session.closed`; other close codes as on `/v1/realtime` (api/ws_transport.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi import APIRouter, Request, WebSocket
from pydantic import ValidationError

from .. import ids
from ..cluster.store import StoreUnavailable
from ..limits import MAX_EVENT_BYTES
from ..observability.logs import set_call_id
from ..protocol.errors import ProtocolError, pydantic_error_to_protocol
from ..protocol.json_limits import loads as loads_limited
from ..protocol.translation import MAX_MODEL_CHARS, TranslationSessionConfig, parse_translation_session
from ..translation.session import TranslationSession, session_object
from .auth import TRANSLATION_SESSIONS, Principal, store_unavailable
from .body import read_body
from .client_secrets import ClientSecretRequest
from .errors import ApiError
from .secrets_store import ClientSecret
from .state import ServerState
from .websocket import _deny, _read_frames, _serve, _token
from .ws_transport import WebSocketTransport

log = logging.getLogger("openrealtime.translation")
router = APIRouter()


@router.post("/v1/realtime/translations/client_secrets")
async def create_translation_secret(request: Request) -> dict[str, Any]:
    state: ServerState = request.app.state.server
    state.auth(request)
    raw = await read_body(request, state.settings.max_body_bytes)
    try:
        data = loads_limited(raw.decode("utf-8")) if raw.strip() else {}
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError: not JSON, or JsonTooDeep
        raise ApiError(400, f"Invalid JSON body: {exc}.", code="invalid_json") from None
    try:
        req = ClientSecretRequest.model_validate(data)
        if req.session is None:
            raise ProtocolError("Missing required parameter: 'session'.", code="missing_required_parameter",
                                param="session")
        config = parse_translation_session(req.session)
    except ValidationError as exc:
        raise ApiError.from_protocol(pydantic_error_to_protocol(exc)) from None
    except ProtocolError as exc:
        raise ApiError.from_protocol(exc) from None
    value, session_id = ids.client_secret(), ids.session_id()
    expires_at = int(time.time()) + req.expires_after.seconds
    try:
        await state.store.put(ClientSecret(value=value, expires_at=expires_at, session=config, session_id=session_id))
    except StoreUnavailable:
        raise store_unavailable("minted") from None
    session = session_object(config, state.models, id=session_id, expires_at=expires_at)
    return {"value": value, "expires_at": expires_at, "session": session.model_dump(mode="json")}


@router.websocket("/v1/realtime/translations")
async def translation_websocket(websocket: WebSocket) -> None:
    state: ServerState = websocket.app.state.server
    offered = list(websocket.scope.get("subprotocols") or [])
    try:
        principal = await state.auth.check_token(_token(websocket), allow_ephemeral=True,
                                                 sessions=TRANSLATION_SESSIONS)
        config = _session_config(principal, websocket.query_params)
        if (refused := state.health.admission_error()) is not None:
            raise refused
        if len(state.ws_sessions) >= state.settings.max_calls:
            raise ApiError(429, f"This server is at its limit of {state.settings.max_calls} concurrent WebSocket "
                                "sessions; retry later or raise --max-calls.", code="too_many_sessions",
                           type="rate_limit_exceeded")
        models = state.models
        if models is None or any(getattr(models, stage, None) is None for stage in ("vad", "stt", "llm")):
            raise ApiError(501, "Translation sessions need speech-to-text and a language model; this server has "
                                "none (--engine echo). Start it with --engine local.", code="translation_unavailable",
                           type="server_error")
    except ApiError as exc:
        await _deny(websocket, exc)
        return
    await websocket.accept(subprotocol="realtime" if "realtime" in offered else None)
    await _run(websocket, state, config)


def _session_config(principal: Principal, query: Any) -> TranslationSessionConfig:
    if "intent" in query:
        raise ApiError(400, "Realtime translation takes no 'intent' query parameter.", code="unknown_parameter",
                       param="intent")
    if principal.secret is not None:  # its stored session, model included (fixed at creation)
        return principal.secret.session.model_copy(deep=True)
    model = query.get("model")
    if not model:
        raise ApiError(400, "Missing required parameter: 'model' (GET /v1/realtime/translations?model=…).",
                       code="missing_required_parameter", param="model")
    if len(model) > MAX_MODEL_CHARS:
        raise ApiError(400, f"Invalid 'model': at most {MAX_MODEL_CHARS} characters.", code="invalid_value",
                       param="model")
    return TranslationSessionConfig(model=model)


async def _run(websocket: WebSocket, state: ServerState, config: TranslationSessionConfig) -> None:
    settings = state.settings
    transport = WebSocketTransport(websocket)
    session = TranslationSession(transport, config, models=state.models, runtime=state.runtime,
                                 expires_at=int(time.time() + settings.max_call_duration_s),
                                 max_event_bytes=MAX_EVENT_BYTES)
    set_call_id(session.id)
    state.ws_sessions.add(session)  # bounded by --max-calls; drained like every WebSocket session
    client = websocket.client.host if websocket.client else "-"
    log.info("translation session=%s client=%s state=open model=%s target=%s", session.id, client, config.model,
             config.audio.output.language)
    expiry = asyncio.get_running_loop().call_later(settings.max_call_duration_s,
                                                   lambda: session.expire(settings.max_call_duration_s))
    session.start()
    reader = asyncio.create_task(_read_frames(websocket, session.handle_message, session.send_error, False))
    try:
        await _serve(transport, reader)
    finally:
        expiry.cancel()
        session.close("websocket_closed")
        transport.abort()
        state.ws_sessions.discard(session)
        log.info("translation session=%s state=closed code=%s events_out=%d utterances=%d", session.id,
                 transport.close_code, transport.events_out, session.stats["utterances"])
