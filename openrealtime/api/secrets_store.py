"""Ephemeral client secrets (`ek_…`) behind a small interface: in this process's memory, or in the
cluster store (Redis/SQLite, by hash) so that a secret minted on one node works on every node."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Protocol

from ..cluster.store import ClusterStore
from ..protocol.session import RealtimeSessionConfig, TranscriptionSessionConfig
from ..protocol.translation import TranslationSessionConfig


@dataclass
class ClientSecret:
    value: str
    expires_at: int
    session: RealtimeSessionConfig | TranscriptionSessionConfig | TranslationSessionConfig
    session_id: str


class SecretStore(Protocol):
    async def put(self, secret: ClientSecret) -> None: ...

    async def get(self, value: str) -> ClientSecret | None:
        """The secret if it exists and has not expired (a cluster store may raise StoreUnavailable)."""
        ...


class MemorySecretStore:
    def __init__(self, max_secrets: int = 100_000) -> None:
        self._secrets: dict[str, ClientSecret] = {}
        self.max_secrets = max_secrets

    async def put(self, secret: ClientSecret) -> None:
        if len(self._secrets) >= self.max_secrets:
            self._purge()
            if len(self._secrets) >= self.max_secrets:  # all live: drop the one expiring first
                oldest = min(self._secrets.values(), key=lambda s: s.expires_at)
                del self._secrets[oldest.value]
        self._secrets[secret.value] = secret

    async def get(self, value: str) -> ClientSecret | None:
        secret = self._secrets.get(value)
        if secret is None:
            return None
        if secret.expires_at <= time.time():
            del self._secrets[value]
            return None
        return secret

    def _purge(self) -> None:
        now = time.time()
        for key in [k for k, s in self._secrets.items() if s.expires_at <= now]:
            del self._secrets[key]


_SESSION_TYPES = {"realtime": RealtimeSessionConfig, "transcription": TranscriptionSessionConfig,
                  "translation": TranslationSessionConfig}


class ClusterSecretStore:
    """Secrets in the cluster store, under the SHA-256 of their value, expiring with them."""

    def __init__(self, store: ClusterStore) -> None:
        self.store = store

    async def put(self, secret: ClientSecret) -> None:
        payload = json.dumps({"expires_at": secret.expires_at, "session_id": secret.session_id,
                              "session": json.loads(secret.session.model_dump_json())}, separators=(",", ":"))
        await self.store.put_secret(secret.value, payload, secret.expires_at)

    async def get(self, value: str) -> ClientSecret | None:
        payload = await self.store.get_secret(value)
        if payload is None:
            return None
        data = json.loads(payload)
        session = _SESSION_TYPES[data["session"]["type"]].model_validate(data["session"])
        if data["expires_at"] <= time.time():  # the store's clock may run behind this node's
            return None
        return ClientSecret(value=value, expires_at=data["expires_at"], session=session,
                            session_id=data["session_id"])
