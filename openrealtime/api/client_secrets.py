"""POST /v1/realtime/client_secrets: mint an ephemeral `ek_` key bound to a session config (`mint_secret`
also serves POST /v1/realtime/translations/client_secrets, api/translations.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import ids
from ..cluster.store import StoreUnavailable
from ..protocol.errors import ProtocolError, pydantic_error_to_protocol
from ..protocol.json_limits import loads as loads_limited
from ..protocol.session import parse_session_config, session_object
from ..session.voices import check_session_voice
from .auth import store_unavailable
from .body import read_body
from .errors import ApiError
from .secrets_store import ClientSecret
from .state import ServerState

router = APIRouter()


class ExpiresAfter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    anchor: Literal["created_at"] = "created_at"
    seconds: int = Field(600, ge=10, le=7200)


class ClientSecretRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expires_after: ExpiresAfter = Field(default_factory=ExpiresAfter)
    session: dict[str, Any] | None = None


@router.post("/v1/realtime/client_secrets")
async def create_client_secret(request: Request) -> dict[str, Any]:
    state: ServerState = request.app.state.server

    def parse(session: Any) -> Any:
        config = parse_session_config(session)
        check_session_voice(config, state.models)
        return config

    secret = await mint_secret(request, parse)
    return {"value": secret.value, "expires_at": secret.expires_at,
            "session": session_object(secret.session, id=secret.session_id, expires_at=0).model_dump(mode="json")}


async def mint_secret(request: Request, parse_session: Callable[[Any], Any]) -> ClientSecret:
    """An `ek_` secret, stored, for the session `parse_session` makes of the body's `session` (which raises
    ProtocolError on a bad one); the request needs an API key, errors are OpenAI-shaped 4xx/503."""
    state: ServerState = request.app.state.server
    state.auth(request)
    raw = await read_body(request, state.settings.max_body_bytes)
    try:
        data = loads_limited(raw.decode("utf-8")) if raw.strip() else {}
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError: not JSON, or JsonTooDeep
        raise ApiError(400, f"Invalid JSON body: {exc}.", code="invalid_json") from None
    try:
        req = ClientSecretRequest.model_validate(data)
        config = parse_session(req.session)
    except ValidationError as exc:
        raise ApiError.from_protocol(pydantic_error_to_protocol(exc)) from None
    except ProtocolError as exc:
        raise ApiError.from_protocol(exc) from None
    secret = ClientSecret(value=ids.client_secret(), expires_at=int(time.time()) + req.expires_after.seconds,
                          session=config, session_id=ids.session_id())
    try:
        await state.store.put(secret)
    except StoreUnavailable:
        raise store_unavailable("minted") from None
    return secret
