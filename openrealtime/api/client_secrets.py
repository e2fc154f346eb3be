"""POST /v1/realtime/client_secrets: mint an ephemeral `ek_` key bound to a session config."""

from __future__ import annotations

import time
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
    state.auth(request)
    raw = await read_body(request, state.settings.max_body_bytes)
    try:
        data = loads_limited(raw.decode("utf-8")) if raw.strip() else {}
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError: not JSON, or JsonTooDeep
        raise ApiError(400, f"Invalid JSON body: {exc}.", code="invalid_json") from None
    try:
        req = ClientSecretRequest.model_validate(data)
        config = parse_session_config(req.session)
        check_session_voice(config, state.models)
    except ValidationError as exc:
        raise ApiError.from_protocol(pydantic_error_to_protocol(exc)) from None
    except ProtocolError as exc:
        raise ApiError.from_protocol(exc) from None
    value = ids.client_secret()
    expires_at = int(time.time()) + req.expires_after.seconds
    session_id = ids.session_id()
    try:
        await state.store.put(ClientSecret(value=value, expires_at=expires_at, session=config, session_id=session_id))
    except StoreUnavailable:
        raise store_unavailable("minted") from None
    return {"value": value, "expires_at": expires_at,
            "session": session_object(config, id=session_id, expires_at=0).model_dump(mode="json")}
