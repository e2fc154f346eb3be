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

import logging
import time
from typing import Any

from fastapi import APIRouter, Request, WebSocket

from ..limits import MAX_EVENT_BYTES
from ..observability.logs import set_call_id
from ..protocol.errors import ProtocolError
from ..protocol.translation import MAX_MODEL_CHARS, TranslationSessionConfig, parse_translation_session
from ..translation.session import TranslationSession, session_object
from .admission import session_stages
from .auth import TRANSLATION_SESSIONS, Principal
from .client_secrets import mint_secret
from .errors import ApiError
from .state import ServerState
from .websocket import _deny, _token, serve_direct
from .ws_transport import WebSocketTransport

log = logging.getLogger("openrealtime.translation")
router = APIRouter()


@router.post("/v1/realtime/translations/client_secrets")
async def create_translation_secret(request: Request) -> dict[str, Any]:
    state: ServerState = request.app.state.server

    def parse(session: Any) -> TranslationSessionConfig:
        if session is None:
            raise ProtocolError("Missing required parameter: 'session'.", code="missing_required_parameter",
                                param="session")
        return parse_translation_session(session)

    secret = await mint_secret(request, parse)
    # the session object as a session on this server shows it (what the target language gets here)
    session = session_object(secret.session, state.models, id=secret.session_id, expires_at=secret.expires_at)
    return {"value": secret.value, "expires_at": secret.expires_at, "session": session.model_dump(mode="json")}


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
        if models is None or models.vad is None or models.stt is None or models.llm is None:
            raise ApiError(501, "Translation sessions need speech-to-text and a language model; this server has "
                                "none (--engine echo). Start it with --engine local.", code="translation_unavailable",
                           type="server_error")
        seat = await state.health.seat(session_stages(config))  # 429 model_capacity_exceeded
    except ApiError as exc:
        await _deny(websocket, exc)
        return
    with seat:  # the shared model pools' leases, held for the session's life
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
    max_duration_s = state.settings.max_call_duration_s
    transport = WebSocketTransport(websocket)
    session = TranslationSession(transport, config, models=state.models, runtime=state.runtime,
                                 expires_at=int(time.time() + max_duration_s), max_duration_s=max_duration_s,
                                 max_event_bytes=MAX_EVENT_BYTES)
    set_call_id(session.id)
    client = websocket.client.host if websocket.client else "-"
    log.info("translation session=%s client=%s state=open model=%s target=%s", session.id, client, config.model,
             config.audio.output.language)
    try:
        await serve_direct(websocket, state, session, transport)
    finally:
        log.info("translation session=%s state=closed code=%s events_out=%d utterances=%d", session.id,
                 transport.close_code, transport.events_out, session.stats["utterances"])
