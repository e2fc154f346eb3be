"""Bearer authentication for /v1 routes: server API keys and ephemeral `ek_` secrets."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Request

from ..cluster.store import StoreUnavailable
from .errors import ApiError
from .secrets_store import ClientSecret, SecretStore


REALTIME_SESSIONS = ("realtime", "transcription")
TRANSLATION_SESSIONS = ("translation",)
MINT_ROUTES = {"realtime": "POST /v1/realtime/client_secrets", "transcription": "POST /v1/realtime/client_secrets",
               "translation": "POST /v1/realtime/translations/client_secrets"}


@dataclass
class Principal:
    kind: str  # "api_key" | "ephemeral"
    secret: ClientSecret | None = None


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def store_unavailable(what: str) -> ApiError:
    """The 503 for an `ek_` secret that cannot be {what} while the cluster store is unreachable."""
    return ApiError(503, f"Ephemeral client secrets cannot be {what} right now (the cluster store is unreachable); "
                         "retry shortly, or use an API key.", code="server_not_ready", type="server_error",
                    headers={"Retry-After": "2"})


class Authenticator:
    def __init__(self, api_keys: list[str], store: SecretStore) -> None:
        self.api_keys = [k.encode() for k in api_keys]
        self.store = store

    async def check_token(self, token: str | None, *, allow_ephemeral: bool,
                          sessions: tuple[str, ...] = REALTIME_SESSIONS) -> Principal:
        """An API key, or (`allow_ephemeral`) an `ek_` secret minted for one of these session types."""
        mint = MINT_ROUTES[sessions[0]]
        if token is not None and token.startswith("ek_") and allow_ephemeral:
            try:
                secret = await self.store.get(token)
            except StoreUnavailable:  # fail closed: the secret cannot be checked
                raise store_unavailable("checked") from None
            if secret is None:
                raise _unauthorized(f"The ephemeral client secret is unknown or expired. Mint a new one with {mint}.")
            if secret.session.type not in sessions:
                raise _unauthorized(f"This ephemeral client secret was minted for a {secret.session.type} session "
                                    f"({MINT_ROUTES[secret.session.type]}) and cannot open this one; mint one with "
                                    f"{mint}.")
            return Principal("ephemeral", secret)
        return self.check_api_key(token)

    def check_api_key(self, token: str | None) -> Principal:
        if token is None:
            raise _unauthorized("You didn't provide an API key. Send 'Authorization: Bearer YOUR_KEY'.")
        if token.startswith("ek_"):
            raise _unauthorized("Ephemeral client secrets can't be used for this route; use an API key.")
        if not self.api_keys:  # no keys configured: loopback or --insecure-no-auth
            return Principal("api_key")
        candidate = token.encode()
        if any(hmac.compare_digest(candidate, key) for key in self.api_keys):
            return Principal("api_key")
        raise _unauthorized("Incorrect API key provided.")

    def __call__(self, request: Request) -> Principal:
        """A route that needs a server API key."""
        return self.check_api_key(bearer_token(request))

    async def key_or_secret(self, request: Request) -> Principal:
        """A route that also takes an ephemeral `ek_` secret (its stored session comes with it)."""
        return await self.check_token(bearer_token(request), allow_ephemeral=True)
