"""A node's presence in the cluster store: heartbeats, its call ids, and leaving when it stops.

`NodeAgent` runs one background task on the serving loop. Every `interval_s` (and at once when the
node becomes ready, starts draining or its number of calls changes, so that placement sees fresh
loads) it writes the node's record with a TTL of `ttl_s`; a node that dies simply
stops and leaves `live_nodes()` when the TTL runs out. The node's calls are mapped as they start and
end. The store going away never affects a call: failed writes are remembered and redone once the
store answers again, and when the store has lost the node (Redis restarted, or the node was cut off
past its TTL) the heartbeat re-registers it and re-asserts every call it owns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .cancellation import raise_if_cancelled
from .store import ClusterStore, NodeRecord, StoreUnavailable, check_node_ttl

log = logging.getLogger("openrealtime.cluster")

HEARTBEAT_TTL_S = 9.0  # a silent node leaves placement within this (≤ MAX_NODE_TTL_S)
HEARTBEAT_INTERVAL_S = 3.0  # three heartbeats per TTL: one lost write does not expire the node
STATE_POLL_S = 0.25  # how soon a node that becomes ready, starts draining or gains or loses calls says so
DEREGISTER_TIMEOUT_S = 3.0  # at shutdown; past it the record expires by itself


@dataclass(frozen=True)
class NodeStatus:
    """What the node reports with each heartbeat, read from the server's state."""

    calls: int
    max_calls: int
    loop_lag_s: float  # the largest since the previous status read
    ready: bool
    draining: bool


class NodeAgent:
    def __init__(self, store: ClusterStore, node_id: str, internal_url: str, status: Callable[[], NodeStatus],
                 call_ids: Callable[[], Iterable[str]], *, ttl_s: float = HEARTBEAT_TTL_S,
                 interval_s: float = HEARTBEAT_INTERVAL_S) -> None:
        check_node_ttl(ttl_s)
        if not 0 < interval_s < ttl_s:
            raise ValueError(f"the heartbeat interval ({interval_s}) must be shorter than its TTL ({ttl_s})")
        self.store = store
        self.node_id = node_id
        self.internal_url = internal_url
        self.status = status
        self.call_ids = call_ids
        self.ttl_s = ttl_s
        self.interval_s = interval_s
        self.reachable: bool | None = None  # None until the first heartbeat
        self.registrations = 0  # heartbeats that found the node unknown (first start, store lost it)
        self._resync = False  # a call write failed: re-assert every call at the next good heartbeat
        self._unremoved: set[str] = set()  # calls ended while the store could not be told
        self._lag_s = 0.0  # the largest event-loop lag read since the last heartbeat written
        self._published: tuple[bool, bool, int] | None = None  # (ready, draining, calls) of the last heartbeat
        self._task: asyncio.Task | None = None
        self._stopping = False  # the heartbeat loop ends at its next turn even if a cancellation was swallowed
        self._writes: set[asyncio.Task] = set()
        self._write_order = asyncio.Lock()  # FIFO: a call's removal never overtakes its addition

    # ---- heartbeats --------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"cluster-heartbeat-{self.node_id}")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            try:
                await self.beat()
            except Exception:  # noqa: BLE001 - a bug here must not end the heartbeats
                log.exception("cluster heartbeat failed node=%s", self.node_id)
            raise_if_cancelled()
            due = loop.time() + self.interval_s
            while not self._stopping and loop.time() < due and self._published == self._state_of(self._read_status()):
                await asyncio.sleep(min(STATE_POLL_S, max(0.0, due - loop.time())))

    async def beat(self) -> bool:
        """One heartbeat (and whatever call writes are owed). Returns whether the store answered."""
        status = self._read_status()
        record = NodeRecord(node_id=self.node_id, internal_url=self.internal_url, calls=status.calls,
                            max_calls=status.max_calls, loop_lag_s=self._lag_s, ready=status.ready,
                            draining=status.draining)
        self._published = self._state_of(status)  # tried: a failed write is retried on the interval
        try:
            known = await self.store.heartbeat(record, self.ttl_s)
            if not known or self._resync:
                self._resync = True
                for call_id in list(self.call_ids()):
                    await self.store.set_call(call_id, self.node_id)
                self._resync = False
            for call_id in list(self._unremoved):
                await self.store.remove_call(call_id, self.node_id)
                self._unremoved.discard(call_id)
        except StoreUnavailable as exc:
            if self.reachable is not False:
                log.warning("cluster store unreachable node=%s: %s (calls go on; retrying every %g s)",
                            self.node_id, exc, self.interval_s)
            self.reachable = False
            return False
        self._lag_s = 0.0
        if self.reachable is False:
            log.info("cluster store reachable again node=%s", self.node_id)
        self.reachable = True
        if not known:
            self.registrations += 1
            log.info("cluster node %s node=%s url=%s calls=%d draining=%s",
                     "registered" if self.registrations == 1 else "re-registered", self.node_id, self.internal_url,
                     status.calls, status.draining)
        return True

    def _read_status(self) -> NodeStatus:
        """The node's status now; its loop lag (the largest since the previous read) is kept until the
        next heartbeat written, which reports the largest of the interval."""
        status = self.status()
        self._lag_s = max(self._lag_s, status.loop_lag_s)
        return status

    @staticmethod
    def _state_of(status: NodeStatus) -> tuple[bool, bool, int]:
        return status.ready, status.draining, status.calls

    # ---- calls -------------------------------------------------------------------------------
    def call_added(self, call_id: str) -> None:
        self._unremoved.discard(call_id)
        self._spawn(self._write_call(call_id, added=True))

    def call_ended(self, call_id: str) -> None:
        self._spawn(self._write_call(call_id, added=False))

    async def _write_call(self, call_id: str, *, added: bool) -> None:
        try:
            async with self._write_order:
                if added:
                    await self.store.set_call(call_id, self.node_id)
                else:
                    await self.store.remove_call(call_id, self.node_id)
        except StoreUnavailable:
            if added:
                self._resync = True
            else:
                self._unremoved.add(call_id)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    # ---- leaving -----------------------------------------------------------------------------
    async def stop(self) -> None:
        """Stop heartbeating and remove the node (with its calls and leases) from the store."""
        task, self._task = self._task, None
        if task is not None:
            # the Redis client can swallow a cancellation that lands inside a command (redis-py#2028): the
            # flag ends the loop at its next turn, and the wait is bounded whatever happens
            self._stopping = True
            task.cancel()
            _done, pending = await asyncio.wait({task}, timeout=DEREGISTER_TIMEOUT_S)
            if pending:
                log.warning("cluster heartbeat did not stop in %g s node=%s; leaving it", DEREGISTER_TIMEOUT_S,
                            self.node_id)
        if self._writes:
            await asyncio.wait(set(self._writes), timeout=DEREGISTER_TIMEOUT_S)
        try:
            await asyncio.wait_for(self.store.deregister(self.node_id), DEREGISTER_TIMEOUT_S)
        except (StoreUnavailable, TimeoutError) as exc:
            log.warning("cluster node not deregistered node=%s (its record expires within %g s): %s",
                        self.node_id, self.ttl_s, exc or "timed out")
            return
        log.info("cluster node deregistered node=%s", self.node_id)
