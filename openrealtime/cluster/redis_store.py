"""`ClusterStore` on Redis (standalone, or a Sentinel-managed master), through redis.asyncio.

Keys, under a prefix (default `or:`):

| key | type | what |
|---|---|---|
| `node:{id}` | string, PX = heartbeat TTL | the node's record (JSON) |
| `nodes` | set | node ids, so that expired ones can be found and their calls removed |
| `node-calls:{id}` | set | the call ids a node owns |
| `call:{call_id}` | string | the owning node id |
| `node-leases:{id}` | hash | lease id → pool, for the leases a node holds |
| `pool:{pool}` | sorted set | lease id → expiry (ms on the Redis server's clock) |
| `ek:{sha256}` | string, PXAT = the secret's expiry | a client secret's payload |

Every multi-key step is one Lua script, so it is atomic; the scripts build key names from the prefix,
which is fine on one Redis (standalone or Sentinel) and not meant for Redis Cluster. Lease expiry uses
the Redis server's clock (`TIME`), so nodes' clocks need not agree.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from .redis_url import redis_client
from .store import Lease, NodeRecord, StoreUnavailable, check_lease_args, check_node_ttl, secret_digest

# Remove a node's call ids (those still mapped to it) and its leases. ARGV: prefix, node id.
_DROP_NODE_STATE = """
local p, id = ARGV[1], ARGV[2]
for _, c in ipairs(redis.call('SMEMBERS', p .. 'node-calls:' .. id)) do
  if redis.call('GET', p .. 'call:' .. c) == id then redis.call('DEL', p .. 'call:' .. c) end
end
redis.call('DEL', p .. 'node-calls:' .. id)
local leases = redis.call('HGETALL', p .. 'node-leases:' .. id)
for i = 1, #leases, 2 do redis.call('ZREM', p .. 'pool:' .. leases[i + 1], leases[i]) end
redis.call('DEL', p .. 'node-leases:' .. id)
"""

# ARGV: prefix, node id, record JSON, TTL ms. A node (re)registering starts with no calls: the caller
# re-asserts the ones it has, so ids that ended while the store could not be told are not left behind.
_HEARTBEAT = "local existed = redis.call('EXISTS', ARGV[1] .. 'node:' .. ARGV[2])\n" \
    "if existed == 0 then\n" + _DROP_NODE_STATE + "end\n" + """
redis.call('SET', ARGV[1] .. 'node:' .. ARGV[2], ARGV[3], 'PX', ARGV[4])
redis.call('SADD', ARGV[1] .. 'nodes', ARGV[2])
return existed
"""

# ARGV: prefix, node id, force (1: deregister; 0: only if its record has expired). Returns 1 if removed.
_REMOVE_NODE = """
if ARGV[3] == '1' then redis.call('DEL', ARGV[1] .. 'node:' .. ARGV[2])
elseif redis.call('EXISTS', ARGV[1] .. 'node:' .. ARGV[2]) == 1 then return 0 end
""" + _DROP_NODE_STATE + """
redis.call('SREM', ARGV[1] .. 'nodes', ARGV[2])
return 1
"""

# ARGV: prefix, call id, node id. Returns 0 if another live node owns the call.
_SET_CALL = """
local p, c, id = ARGV[1], ARGV[2], ARGV[3]
local owner = redis.call('GET', p .. 'call:' .. c)
if owner and owner ~= id then
  if redis.call('EXISTS', p .. 'node:' .. owner) == 1 then return 0 end
  redis.call('SREM', p .. 'node-calls:' .. owner, c)
end
redis.call('SET', p .. 'call:' .. c, id)
redis.call('SADD', p .. 'node-calls:' .. id, c)
return 1
"""

_REMOVE_CALL = """
local p, c, id = ARGV[1], ARGV[2], ARGV[3]
if redis.call('GET', p .. 'call:' .. c) == id then redis.call('DEL', p .. 'call:' .. c) end
redis.call('SREM', p .. 'node-calls:' .. id, c)
"""

_CALL_NODE = """
local owner = redis.call('GET', ARGV[1] .. 'call:' .. ARGV[2])
if owner and redis.call('EXISTS', ARGV[1] .. 'node:' .. owner) == 1 then return owner end
return false
"""

_NOW_MS = "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

# KEYS: pool zset, holder's lease hash. ARGV: limit, TTL ms, lease id, pool. Returns the expiry (ms) or nil.
_ACQUIRE = _NOW_MS + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return false end
local expires = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], expires, ARGV[3])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
return expires
"""

# KEYS: pool zset, holder's lease hash. ARGV: TTL ms, lease id. Returns the new expiry (ms) or nil.
_RENEW = _NOW_MS + """
local score = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not score or tonumber(score) <= now then
  redis.call('ZREM', KEYS[1], ARGV[2]); redis.call('HDEL', KEYS[2], ARGV[2]); return false
end
local expires = now + tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], 'XX', expires, ARGV[2])
return expires
"""

_LEASE_COUNT = _NOW_MS + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""

_UNREACHABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.ReadOnlyError,
                redis_errors.BusyLoadingError, OSError)


class RedisStore:
    def __init__(self, client: Redis, *, prefix: str = "or:") -> None:
        self.client = client
        self.prefix = prefix
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._remove_node = client.register_script(_REMOVE_NODE)
        self._set_call = client.register_script(_SET_CALL)
        self._remove_call = client.register_script(_REMOVE_CALL)
        self._call_node = client.register_script(_CALL_NODE)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._lease_count = client.register_script(_LEASE_COUNT)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "or:") -> "RedisStore":
        return cls(redis_client(url), prefix=prefix)

    @asynccontextmanager
    async def _reaching(self, what: str) -> AsyncIterator[None]:
        try:
            yield
        except _UNREACHABLE as exc:
            raise StoreUnavailable(f"Redis is unreachable ({what}): {type(exc).__name__}: {exc}") from exc

    # ---- nodes -------------------------------------------------------------------------------
    async def heartbeat(self, node: NodeRecord, ttl_s: float) -> bool:
        check_node_ttl(ttl_s)
        record = replace(node, updated_at=time.time())
        async with self._reaching("heartbeat"):
            existed = await self._heartbeat(args=[self.prefix, node.node_id, record.to_json(), int(ttl_s * 1000)])
        return bool(existed)

    async def deregister(self, node_id: str) -> None:
        async with self._reaching("deregister"):
            await self._remove_node(args=[self.prefix, node_id, "1"])

    async def live_nodes(self) -> list[NodeRecord]:
        async with self._reaching("live_nodes"):
            ids = sorted(await self.client.smembers(self.prefix + "nodes"))
            if not ids:
                return []
            records = await self.client.mget([self.prefix + "node:" + i for i in ids])
            for node_id, record in zip(ids, records):
                if record is None:  # its TTL ran out: remove what it left
                    await self._remove_node(args=[self.prefix, node_id, "0"])
        return [NodeRecord.from_json(r) for r in records if r is not None]

    # ---- call map ----------------------------------------------------------------------------
    async def set_call(self, call_id: str, node_id: str) -> bool:
        async with self._reaching("set_call"):
            return bool(await self._set_call(args=[self.prefix, call_id, node_id]))

    async def remove_call(self, call_id: str, node_id: str) -> None:
        async with self._reaching("remove_call"):
            await self._remove_call(args=[self.prefix, call_id, node_id])

    async def call_node(self, call_id: str) -> str | None:
        async with self._reaching("call_node"):
            return await self._call_node(args=[self.prefix, call_id])

    # ---- client secrets ----------------------------------------------------------------------
    async def put_secret(self, token: str, payload: str, expires_at: float) -> None:
        if expires_at <= time.time():
            return
        async with self._reaching("put_secret"):
            await self.client.set(self.prefix + "ek:" + secret_digest(token), payload, pxat=int(expires_at * 1000))

    async def get_secret(self, token: str) -> str | None:
        async with self._reaching("get_secret"):
            return await self.client.get(self.prefix + "ek:" + secret_digest(token))

    # ---- counted leases ----------------------------------------------------------------------
    def _lease_keys(self, pool: str, holder: str) -> list[str]:
        return [self.prefix + "pool:" + pool, self.prefix + "node-leases:" + holder]

    async def acquire(self, pool: str, limit: int, holder: str, ttl_s: float) -> Lease | None:
        check_lease_args(limit, ttl_s)
        lease_id = f"{holder}/{uuid.uuid4().hex}"
        async with self._reaching("acquire"):
            expires = await self._acquire(keys=self._lease_keys(pool, holder),
                                          args=[limit, max(1, int(ttl_s * 1000)), lease_id, pool])
        return None if expires is None else Lease(pool, lease_id, holder, int(expires) / 1000)

    async def renew(self, lease: Lease, ttl_s: float) -> Lease | None:
        check_lease_args(1, ttl_s)
        async with self._reaching("renew"):
            expires = await self._renew(keys=self._lease_keys(lease.pool, lease.holder),
                                        args=[max(1, int(ttl_s * 1000)), lease.lease_id])
        return None if expires is None else Lease(lease.pool, lease.lease_id, lease.holder, int(expires) / 1000)

    async def release(self, lease: Lease) -> None:
        pool_key, holder_key = self._lease_keys(lease.pool, lease.holder)
        async with self._reaching("release"):
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.zrem(pool_key, lease.lease_id)
                pipe.hdel(holder_key, lease.lease_id)
                await pipe.execute()

    async def lease_count(self, pool: str) -> int:
        async with self._reaching("lease_count"):
            return int(await self._lease_count(keys=[self.prefix + "pool:" + pool]))

    # ---- lifetime ----------------------------------------------------------------------------
    async def ping(self) -> None:
        async with self._reaching("ping"):
            await self.client.ping()

    async def close(self) -> None:
        await self.client.aclose()
