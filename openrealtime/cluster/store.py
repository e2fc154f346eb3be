"""The cluster store: the one narrow interface through which nodes share routing facts.

A node's own memory stays the truth about its calls; the store holds what other nodes need to find
them and to share limits (design notes: ../shared/spec/scale-out.md §2.1):

* node records, kept alive by heartbeats with a TTL (≤ `MAX_NODE_TTL_S`): a node that stops
  heartbeating leaves `live_nodes()` when its TTL runs out, with no sweeper;
* call id → owning node, set when a call is answered, removed when it ends, and all of a node's
  calls gone once the node deregisters or its record expires;
* `ek_` client secrets, kept only by their SHA-256 (a store dump reveals no usable key), with their TTL;
* counted leases on a named pool (cluster-wide admission to a shared model server): at most `limit`
  live at once, each expiring unless its holder renews it, so a dead node's leases free themselves.

Two implementations on existing engines: `RedisStore` (many hosts) and `SqliteStore` (one host, the
workers of `--workers N` without Redis). Every operation is a coroutine; one that cannot reach the
engine raises `StoreUnavailable`, and the caller decides what that means (fail closed for `ek_`
checks, place locally for new calls).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Protocol, runtime_checkable

MAX_NODE_TTL_S = 10.0  # a node that stops heartbeating leaves placement within this long


class StoreUnavailable(Exception):
    """The store's engine cannot be reached (Redis down, a SQLite file locked too long). The client
    reconnects by itself; the operation may be retried later."""


@dataclass(frozen=True)
class NodeRecord:
    """What a node publishes about itself with each heartbeat."""

    node_id: str
    internal_url: str  # how other nodes reach its internal API
    calls: int = 0
    max_calls: int = 0
    loop_lag_s: float = 0.0  # recent event-loop lag (observability/loop_lag.py)
    ready: bool = True  # models loaded and backends connected (api/health.py): it can serve sessions now
    draining: bool = False  # takes no new placements
    updated_at: float = 0.0  # wall-clock seconds of the heartbeat that wrote it (set by the store)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> "NodeRecord":
        data = json.loads(text)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class Lease:
    """One counted slot of a pool, held by a node until released or expired."""

    pool: str
    lease_id: str
    holder: str  # node id
    expires_at: float = field(default=0.0, compare=False)  # the store's clock, seconds


def secret_digest(token: str) -> str:
    """The key a client secret is stored under: its SHA-256, hex. The token itself is never stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_node_ttl(ttl_s: float) -> None:
    if not 0 < ttl_s <= MAX_NODE_TTL_S:
        raise ValueError(f"a node's heartbeat TTL must be in (0, {MAX_NODE_TTL_S:g}] s, not {ttl_s!r}")


def check_lease_args(limit: int, ttl_s: float) -> None:
    if limit < 1:
        raise ValueError(f"a pool's limit must be at least 1, not {limit!r}")
    if ttl_s <= 0:
        raise ValueError(f"a lease's TTL must be positive, not {ttl_s!r}")


@runtime_checkable
class ClusterStore(Protocol):
    # ---- nodes -------------------------------------------------------------------------------
    async def heartbeat(self, node: NodeRecord, ttl_s: float) -> bool:
        """Write `node` (stamped with `updated_at`) to live `ttl_s` more seconds. Returns whether it
        was live already: False means it is (re)registered now — its TTL ran out or the store lost
        it — and the caller should re-assert its calls with `set_call`."""
        ...

    async def deregister(self, node_id: str) -> None:
        """Remove the node, the call ids mapped to it and the leases it holds."""
        ...

    async def live_nodes(self) -> list[NodeRecord]:
        """The nodes whose last heartbeat is within its TTL, by node id. Nodes found expired are
        removed with their calls and leases."""
        ...

    # ---- call map ----------------------------------------------------------------------------
    async def set_call(self, call_id: str, node_id: str) -> bool:
        """Map `call_id` to `node_id`. False (and nothing written) if another live node owns it."""
        ...

    async def remove_call(self, call_id: str, node_id: str) -> None:
        """Forget `call_id` if `node_id` owns it."""
        ...

    async def call_node(self, call_id: str) -> str | None:
        """The live node that owns `call_id`, or None."""
        ...

    # ---- client secrets (by hash) ------------------------------------------------------------
    async def put_secret(self, token: str, payload: str, expires_at: float) -> None:
        """Keep `payload` under the SHA-256 of `token` until `expires_at` (wall-clock seconds)."""
        ...

    async def get_secret(self, token: str) -> str | None:
        """The payload stored for `token`, or None if unknown or expired."""
        ...

    # ---- counted leases ----------------------------------------------------------------------
    async def acquire(self, pool: str, limit: int, holder: str, ttl_s: float) -> Lease | None:
        """A lease on `pool` if fewer than `limit` unexpired leases are held there now, else None."""
        ...

    async def renew(self, lease: Lease, ttl_s: float) -> Lease | None:
        """The lease with `ttl_s` more seconds, or None if it has expired or been released."""
        ...

    async def release(self, lease: Lease) -> None: ...

    async def lease_count(self, pool: str) -> int:
        """Unexpired leases held on `pool`."""
        ...

    # ---- lifetime ----------------------------------------------------------------------------
    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless the engine answers."""
        ...

    async def close(self) -> None: ...
