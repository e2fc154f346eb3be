"""`ClusterStore` on SQLite, for the worker processes of one host (`--workers N` without Redis).

One database file in WAL mode (readers never wait for the writer) under a runtime directory; every
worker opens it. Each store runs its blocking sqlite3 calls on one thread of its own, off the event
loop; a write that counts or checks (lease admission, call ownership) is one `BEGIN IMMEDIATE`
transaction, so it is atomic across processes. Expiry uses the host's wall clock, which all workers share.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from .store import Lease, NodeRecord, StoreUnavailable, check_lease_args, check_node_ttl, secret_digest

T = TypeVar("T")
BUSY_TIMEOUT_S = 5.0  # how long a writer waits for another process's transaction before giving up

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (node_id TEXT PRIMARY KEY, record TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS calls (call_id TEXT PRIMARY KEY, node_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS calls_by_node ON calls (node_id);
CREATE TABLE IF NOT EXISTS secrets (digest TEXT PRIMARY KEY, payload TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS secrets_by_expiry ON secrets (expires_at);
CREATE TABLE IF NOT EXISTS leases (lease_id TEXT PRIMARY KEY, pool TEXT NOT NULL, holder TEXT NOT NULL,
                                   expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS leases_by_pool ON leases (pool, expires_at);
CREATE INDEX IF NOT EXISTS leases_by_holder ON leases (holder);
"""


def default_path(name: str = "cluster.sqlite3") -> Path:
    """A file in this user's runtime directory ($XDG_RUNTIME_DIR/openrealtime, else a private
    directory under the system temp dir)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    directory = Path(runtime, "openrealtime") if runtime else Path(tempfile.gettempdir(), f"openrealtime-{os.getuid()}")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return directory / name


class SqliteStore:
    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cluster-sqlite")
        self._db: sqlite3.Connection | None = None

    # ---- plumbing ----------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                                 check_same_thread=False)
            # several processes opening a new database at once: switching it to WAL takes a lock that SQLite
            # does not wait for (no busy handler there), so the setup is retried within the busy timeout
            deadline = time.monotonic() + max(self.busy_timeout_s, 1.0)
            while True:
                try:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable enough for routing facts
                    db.executescript(_SCHEMA)
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() >= deadline:
                        db.close()
                        raise
                    time.sleep(0.01)
            self._db = db
        return self._db

    async def _run(self, what: str, fn: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        def work() -> T:
            db = self._connect()
            if not write:
                return fn(db)
            db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work)
        except sqlite3.OperationalError as exc:  # locked past the busy timeout, file gone, disk full
            raise StoreUnavailable(f"the cluster database {self.path} is unavailable ({what}): {exc}") from exc

    @staticmethod
    def _drop_node_state(db: sqlite3.Connection, node_id: str) -> None:
        db.execute("DELETE FROM calls WHERE node_id = ?", (node_id,))
        db.execute("DELETE FROM leases WHERE holder = ?", (node_id,))

    # ---- nodes -------------------------------------------------------------------------------
    async def heartbeat(self, node: NodeRecord, ttl_s: float) -> bool:
        check_node_ttl(ttl_s)

        def write(db: sqlite3.Connection) -> bool:
            now = time.time()
            row = db.execute("SELECT expires_at FROM nodes WHERE node_id = ?", (node.node_id,)).fetchone()
            existed = row is not None and row[0] > now
            if not existed:  # (re)registering: start with no calls; the caller re-asserts the ones it has
                self._drop_node_state(db, node.node_id)
            db.execute("INSERT OR REPLACE INTO nodes VALUES (?, ?, ?)",
                       (node.node_id, replace(node, updated_at=now).to_json(), now + ttl_s))
            return existed

        return await self._run("heartbeat", write, write=True)

    async def deregister(self, node_id: str) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM nodes WHERE node_id = ?", (node_id,))
            self._drop_node_state(db, node_id)

        await self._run("deregister", write, write=True)

    async def live_nodes(self) -> list[NodeRecord]:
        def write(db: sqlite3.Connection) -> list[NodeRecord]:
            now = time.time()
            for (node_id,) in db.execute("SELECT node_id FROM nodes WHERE expires_at <= ?", (now,)).fetchall():
                db.execute("DELETE FROM nodes WHERE node_id = ?", (node_id,))
                self._drop_node_state(db, node_id)
            rows = db.execute("SELECT record FROM nodes ORDER BY node_id").fetchall()
            return [NodeRecord.from_json(r[0]) for r in rows]

        return await self._run("live_nodes", write, write=True)

    # ---- call map ----------------------------------------------------------------------------
    async def set_call(self, call_id: str, node_id: str) -> bool:
        def write(db: sqlite3.Connection) -> bool:
            owner = db.execute("SELECT c.node_id FROM calls c JOIN nodes n USING (node_id) WHERE c.call_id = ? "
                               "AND n.expires_at > ?", (call_id, time.time())).fetchone()
            if owner is not None and owner[0] != node_id:
                return False
            db.execute("INSERT OR REPLACE INTO calls VALUES (?, ?)", (call_id, node_id))
            return True

        return await self._run("set_call", write, write=True)

    async def remove_call(self, call_id: str, node_id: str) -> None:
        await self._run("remove_call", lambda db: db.execute(
            "DELETE FROM calls WHERE call_id = ? AND node_id = ?", (call_id, node_id)), write=True)

    async def call_node(self, call_id: str) -> str | None:
        def read(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT c.node_id FROM calls c JOIN nodes n USING (node_id) WHERE c.call_id = ? "
                             "AND n.expires_at > ?", (call_id, time.time())).fetchone()
            return None if row is None else row[0]

        return await self._run("call_node", read)

    # ---- client secrets ----------------------------------------------------------------------
    async def put_secret(self, token: str, payload: str, expires_at: float) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM secrets WHERE expires_at <= ?", (time.time(),))
            db.execute("INSERT OR REPLACE INTO secrets VALUES (?, ?, ?)", (secret_digest(token), payload, expires_at))

        if expires_at > time.time():
            await self._run("put_secret", write, write=True)

    async def get_secret(self, token: str) -> str | None:
        def read(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT payload FROM secrets WHERE digest = ? AND expires_at > ?",
                             (secret_digest(token), time.time())).fetchone()
            return None if row is None else row[0]

        return await self._run("get_secret", read)

    # ---- counted leases ----------------------------------------------------------------------
    async def acquire(self, pool: str, limit: int, holder: str, ttl_s: float) -> Lease | None:
        check_lease_args(limit, ttl_s)

        def write(db: sqlite3.Connection) -> Lease | None:
            now = time.time()
            db.execute("DELETE FROM leases WHERE pool = ? AND expires_at <= ?", (pool, now))
            (held,) = db.execute("SELECT COUNT(*) FROM leases WHERE pool = ?", (pool,)).fetchone()
            if held >= limit:
                return None
            lease = Lease(pool, f"{holder}/{uuid.uuid4().hex}", holder, now + ttl_s)
            db.execute("INSERT INTO leases VALUES (?, ?, ?, ?)", (lease.lease_id, pool, holder, lease.expires_at))
            return lease

        return await self._run("acquire", write, write=True)

    async def renew(self, lease: Lease, ttl_s: float) -> Lease | None:
        check_lease_args(1, ttl_s)

        def write(db: sqlite3.Connection) -> Lease | None:
            now = time.time()
            updated = db.execute("UPDATE leases SET expires_at = ? WHERE lease_id = ? AND expires_at > ?",
                                 (now + ttl_s, lease.lease_id, now)).rowcount
            if not updated:
                db.execute("DELETE FROM leases WHERE lease_id = ?", (lease.lease_id,))
                return None
            return replace(lease, expires_at=now + ttl_s)

        return await self._run("renew", write, write=True)

    async def release(self, lease: Lease) -> None:
        await self._run("release", lambda db: db.execute("DELETE FROM leases WHERE lease_id = ?", (lease.lease_id,)),
                        write=True)

    async def lease_count(self, pool: str) -> int:
        def read(db: sqlite3.Connection) -> int:
            return db.execute("SELECT COUNT(*) FROM leases WHERE pool = ? AND expires_at > ?",
                              (pool, time.time())).fetchone()[0]

        return await self._run("lease_count", read)

    # ---- lifetime ----------------------------------------------------------------------------
    async def ping(self) -> None:
        await self._run("ping", lambda db: db.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=True)
