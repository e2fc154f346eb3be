"""Admission to shared model servers: at most N sessions at once per model stage, counted across the cluster.

Nodes share remote OpenAI-compatible model servers (`--llm-url`, `--stt-url`, `--tts-url`);
`--llm-max-sessions N` (and `--stt-max-sessions`, `--tts-max-sessions`) caps the sessions using each
stage on every node together, so that a shared pool is not overrun. A session holds one lease per
stage it uses, in that stage's pool (`model:llm`, …) of the cluster store (cluster/store.py): taken
when the session is admitted, renewed by its node every `RENEW_S` while it lives, released when it
ends. A node that dies stops renewing: its leases expire after `LEASE_TTL_S` (or leave with its node
record, whichever comes first), and the pool admits again by itself.

Without a cluster store (one process alone) the leases are counted in this process (`LocalLeases`).
While the store cannot be reached, a session is admitted against this node's own count of its seats
(each node then allows up to the limit by itself) and its leases are taken once the store answers.
A session whose lease was lost (the node cut off past the TTL) goes on and takes one again when it can.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Protocol

from .cancellation import raise_if_cancelled
from .store import Lease, StoreUnavailable, check_lease_args

log = logging.getLogger("openrealtime.cluster")

MODEL_STAGES = ("stt", "llm", "tts")  # what a speech-to-speech session uses
LEASE_TTL_S = 10.0  # a dead node's leases expire within this
RENEW_S = 3.0  # three renewals per TTL: one lost write does not lose a lease
POOL_PREFIX = "model:"


class PoolFull(Exception):
    """The pool of `stage` holds `limit` sessions already."""

    def __init__(self, stage: str, limit: int) -> None:
        super().__init__(f"the {stage} pool holds {limit} sessions")
        self.stage = stage
        self.limit = limit


class LeaseStore(Protocol):
    """The counted leases of cluster/store.py's `ClusterStore`."""

    async def acquire(self, pool: str, limit: int, holder: str, ttl_s: float) -> Lease | None: ...

    async def renew(self, lease: Lease, ttl_s: float) -> Lease | None: ...

    async def release(self, lease: Lease) -> None: ...

    async def lease_count(self, pool: str) -> int: ...


class LocalLeases:
    """Counted leases in this process's memory, with the store's semantics (one process alone)."""

    def __init__(self) -> None:
        self._leases: dict[str, Lease] = {}

    def _live(self, pool: str) -> list[Lease]:
        now = time.monotonic()
        for lease_id in [i for i, lease in self._leases.items() if lease.expires_at <= now]:
            del self._leases[lease_id]
        return [lease for lease in self._leases.values() if lease.pool == pool]

    async def acquire(self, pool: str, limit: int, holder: str, ttl_s: float) -> Lease | None:
        check_lease_args(limit, ttl_s)
        if len(self._live(pool)) >= limit:
            return None
        lease = Lease(pool, f"{holder}/{uuid.uuid4().hex}", holder, time.monotonic() + ttl_s)
        self._leases[lease.lease_id] = lease
        return lease

    async def renew(self, lease: Lease, ttl_s: float) -> Lease | None:
        check_lease_args(1, ttl_s)
        if lease.lease_id not in {held.lease_id for held in self._live(lease.pool)}:
            return None
        self._leases[lease.lease_id] = renewed = replace(lease, expires_at=time.monotonic() + ttl_s)
        return renewed

    async def release(self, lease: Lease) -> None:
        self._leases.pop(lease.lease_id, None)

    async def lease_count(self, pool: str) -> int:
        return len(self._live(pool))


class Seat:
    """One session's leases, a stage each (a stage's lease is None while it could not be taken: the
    store unreachable, or lost). Used as a context manager around what starts the session: leaving
    the block releases the seat, unless `keep_until` handed it on to the session's own end."""

    def __init__(self, pools: "ModelPools | None", leases: dict[str, Lease | None]) -> None:
        self.pools = pools
        self.leases = leases
        self.released = False
        self._kept = False

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(self.leases)

    def keep_until(self, ended: asyncio.Event) -> None:
        """Hold the seat until `ended` is set (a call's `closed`), then release it."""
        self._kept = True
        if self.pools is not None:  # also without leases: the session is known to have been admitted
            self.pools.hold_until(self, ended)
        else:
            self.released = True

    def release(self) -> None:
        """Give the leases back (at once here; in the store as soon as it answers). Idempotent."""
        if not self.released:
            self.released = True
            if self.pools is not None:
                self.pools.give_back(self)

    def __enter__(self) -> "Seat":
        return self

    def __exit__(self, *exc) -> None:
        if not self._kept:
            self.release()


class ModelPools:
    """This node's side of the model pools: its seats, their renewal, and the pools' counts last seen."""

    def __init__(self, limits: Mapping[str, int | None], store: LeaseStore, holder: str, *,
                 ttl_s: float = LEASE_TTL_S, renew_s: float = RENEW_S) -> None:
        if not 0 < renew_s < ttl_s:
            raise ValueError(f"the lease renewal interval ({renew_s}) must be shorter than its TTL ({ttl_s})")
        unknown = set(limits) - set(MODEL_STAGES)
        if unknown:
            raise ValueError(f"no model stage {sorted(unknown)}: the stages are {', '.join(MODEL_STAGES)}")
        self.limits = {stage: int(n) for stage, n in limits.items() if n}
        self.store = store
        self.holder = holder
        self.ttl_s = ttl_s
        self.renew_s = renew_s
        self.counts: dict[str, int] = dict.fromkeys(self.limits, 0)  # cluster-wide, as last seen
        self.refused: dict[str, int] = dict.fromkeys(self.limits, 0)
        self.seats: set[Seat] = set()
        self._tasks: set[asyncio.Task] = set()  # store writes (releases, leases of adopted sessions)
        self._waiters: set[asyncio.Task] = set()  # seats waiting for their session's end
        self._held: set[asyncio.Event] = set()  # the session ends those seats wait for
        self._keeper: asyncio.Task | None = None

    @staticmethod
    def pool(stage: str) -> str:
        return POOL_PREFIX + stage

    def limited(self, stages: Iterable[str]) -> list[str]:
        return [stage for stage in stages if stage in self.limits]

    # ---- admission ---------------------------------------------------------------------------
    async def take(self, stages: Iterable[str] = MODEL_STAGES) -> Seat:
        """A seat with a lease in each limited pool of `stages`; `PoolFull` (and nothing held) when one is full."""
        seat = Seat(self, {})
        try:
            for stage in self.limited(stages):
                seat.leases[stage] = await self._acquire(stage)
        except BaseException:
            seat.release()
            raise
        if seat.leases:
            self.seats.add(seat)
        return seat

    async def _acquire(self, stage: str) -> Lease | None:
        limit = self.limits[stage]
        try:
            lease = await self.store.acquire(self.pool(stage), limit, self.holder, self.ttl_s)
        except StoreUnavailable as exc:
            mine = sum(1 for seat in self.seats if stage in seat.leases)
            if mine >= limit:
                self.refused[stage] += 1
                raise PoolFull(stage, limit) from None
            log.warning("model pool stage=%s: the cluster store is unreachable (%s); admitted against this node's "
                        "own %d of %d sessions", stage, exc, mine + 1, limit)
            return None
        if lease is None:
            self.counts[stage] = limit
            self.refused[stage] += 1
            raise PoolFull(stage, limit)
        self.counts[stage] = min(limit, self.counts[stage] + 1)
        return lease

    def known_full(self, stages: Iterable[str] = MODEL_STAGES) -> PoolFull | None:
        """A pool of `stages` full as last counted (at most `renew_s` ago), or None. For admission that
        cannot wait for the store; `take` is the authoritative count."""
        for stage in self.limited(stages):
            if self.counts[stage] >= self.limits[stage]:
                return PoolFull(stage, self.limits[stage])
        return None

    def adopt(self, ended: asyncio.Event) -> None:
        """Count a session admitted without a seat (it is running already: never refused) until `ended`;
        nothing if a seat is held until `ended` already."""
        stages = list(self.limits)
        if not stages or ended in self._held:
            return
        seat = Seat(self, dict.fromkeys(stages))
        self.seats.add(seat)
        seat.keep_until(ended)
        self._spawn(self._fill_quietly(seat))

    # ---- holding and giving back -------------------------------------------------------------
    def hold_until(self, seat: Seat, ended: asyncio.Event) -> None:
        async def wait() -> None:
            try:
                await ended.wait()
            finally:
                self._held.discard(ended)
                seat.release()

        self._held.add(ended)
        self._spawn(wait(), self._waiters)

    def give_back(self, seat: Seat) -> None:
        self.seats.discard(seat)
        for stage, lease in seat.leases.items():
            if lease is not None:
                self.counts[stage] = max(0, self.counts[stage] - 1)
                self._spawn(self._release(lease))

    async def _release(self, lease: Lease) -> None:
        try:
            await self.store.release(lease)
        except StoreUnavailable as exc:
            log.info("model pool lease not released (it expires within %g s): %s", self.ttl_s, exc)

    def _spawn(self, coro, tasks: set[asyncio.Task] | None = None) -> None:
        tasks = self._tasks if tasks is None else tasks
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    # ---- renewal -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._keeper is None and self.limits:
            self._keeper = asyncio.get_running_loop().create_task(self._keep(), name="model-pool-leases")

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self.renew_s)
            try:
                await self.renew_all()
            except Exception:  # noqa: BLE001 - a bug here must not end the renewals
                log.exception("model pool leases not renewed")
            raise_if_cancelled()

    async def renew_all(self) -> bool:
        """Renew every held lease, take the missing ones, read the pools' counts. False: the store is unreachable."""
        try:
            for seat in list(self.seats):
                await self._fill(seat, renew=True)
            for stage in self.limits:
                self.counts[stage] = await self.store.lease_count(self.pool(stage))
        except StoreUnavailable:
            return False
        return True

    async def _fill_quietly(self, seat: Seat) -> None:
        try:
            await self._fill(seat)
        except StoreUnavailable:
            pass  # taken at the next renewal

    async def _fill(self, seat: Seat, *, renew: bool = False) -> None:
        """Renew the seat's leases (with `renew`) and take those it lacks (never refusing it: it runs already)."""
        for stage, lease in list(seat.leases.items()):
            if seat.released:
                return
            if lease is not None and renew:
                lease = await self.store.renew(lease, self.ttl_s)
                if lease is None:
                    log.warning("model pool stage=%s: a session's lease expired (the store lost it, or this node "
                                "was cut off); taking it again", stage)
            if lease is None:
                lease = await self.store.acquire(self.pool(stage), self.limits[stage], self.holder, self.ttl_s)
            if seat.released:  # ended meanwhile: give back what was just taken
                if lease is not None:
                    await self._release(lease)
                return
            seat.leases[stage] = lease

    async def close(self) -> None:
        """Stop renewing and give every lease back (best effort: the rest expire)."""
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
            self._keeper = None
        for waiter in list(self._waiters):
            waiter.cancel()
        await asyncio.gather(*list(self._waiters), return_exceptions=True)
        for seat in list(self.seats):
            seat.release()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
