"""Cluster-store fixtures: one real redis-server for the session, and the same contract on both stores."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from openrealtime.cluster.redis_store import RedisStore
from openrealtime.cluster.sqlite_store import SqliteStore
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A redis-server on a free port for the whole session (tests keep apart by key prefix)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of the test's own, to kill and start again on the same port."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


class StoreFactory:
    """Stores of one kind that share one backing (one Redis key prefix, one SQLite file): each one
    made is another node's (or worker's) client of the same cluster."""

    def __init__(self, kind: str, make: Callable[[], object], dump: Callable[[], object]) -> None:
        self.kind = kind
        self._make = make
        self.dump = dump  # everything stored, as text (to look for a raw secret)
        self.made: list = []

    def __call__(self):
        store = self._make()
        self.made.append(store)
        return store


def _redis_factory(server: RedisServer) -> StoreFactory:
    prefix = f"t{uuid.uuid4().hex[:8]}:"

    async def dump() -> str:
        client = RedisStore.from_url(server.url).client
        try:
            out = []
            async for key in client.scan_iter(match=prefix + "*"):
                kind = await client.type(key)
                value = await client.get(key) if kind == "string" else await client.dump(key)
                out.append(f"{key}={value!r}")
            return "\n".join(out)
        finally:
            await client.aclose()

    return StoreFactory("redis", lambda: RedisStore.from_url(server.url, prefix=prefix), dump)


def _sqlite_factory(path: Path) -> StoreFactory:
    async def dump() -> str:
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*")).decode("latin-1")

    return StoreFactory("sqlite", lambda: SqliteStore(path), dump)


@pytest.fixture(params=["redis", "sqlite"])
async def stores(request, tmp_path):
    """A factory of cluster stores on Redis or on SQLite (the test runs once for each)."""
    if request.param == "redis":
        factory = _redis_factory(request.getfixturevalue("redis_server"))
    else:
        factory = _sqlite_factory(tmp_path / "cluster.sqlite3")
    yield factory
    for store in factory.made:
        await store.close()


@pytest.fixture
async def store(stores):
    return stores()
