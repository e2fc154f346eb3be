"""Ephemeral client secrets (`ek_…`): an in-process store behind a small interface."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from ..protocol.session import RealtimeSessionConfig, TranscriptionSessionConfig


@dataclass
class ClientSecret:
    value: str
    expires_at: int
    session: RealtimeSessionConfig | TranscriptionSessionConfig
    session_id: str


class SecretStore(Protocol):
    def put(self, secret: ClientSecret) -> None: ...

    def get(self, value: str) -> ClientSecret | None:
        """The secret if it exists and has not expired."""
        ...


class MemorySecretStore:
    def __init__(self, max_secrets: int = 100_000) -> None:
        self._secrets: dict[str, ClientSecret] = {}
        self.max_secrets = max_secrets

    def put(self, secret: ClientSecret) -> None:
        if len(self._secrets) >= self.max_secrets:
            self._purge()
            if len(self._secrets) >= self.max_secrets:  # all live: drop the one expiring first
                oldest = min(self._secrets.values(), key=lambda s: s.expires_at)
                del self._secrets[oldest.value]
        self._secrets[secret.value] = secret

    def get(self, value: str) -> ClientSecret | None:
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
