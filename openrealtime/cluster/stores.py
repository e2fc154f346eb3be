"""Which cluster store a server uses: Redis with `--redis-url` (many hosts), the host's SQLite file for
the workers of `--workers N` without Redis, or none (one process alone)."""

from __future__ import annotations

from .redis_store import RedisStore
from .sqlite_store import SqliteStore
from .store import ClusterStore


def open_store(*, redis_url: str | None, sqlite_path: str | None) -> ClusterStore | None:
    if redis_url:
        return RedisStore.from_url(redis_url)
    if sqlite_path:
        return SqliteStore(sqlite_path)
    return None
