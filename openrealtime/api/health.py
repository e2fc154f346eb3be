"""What the server can do right now: liveness (`/healthz`), readiness (`/readyz`) and admission.

- `loading`: the models are being loaded; nothing is admitted yet.
- `ready`: models loaded, every remote backend answered its last check, not draining.
- `degraded`: loaded, but a remote backend (`--llm-url` / `--stt-url` / `--tts-url`) does not answer;
  `BackendWatch` retries it with backoff and the state clears by itself when it answers.
- `draining`: SIGTERM/SIGINT received (lifecycle.py); live sessions go on, new ones are refused.

`/healthz` is 200 with the status while the process serves; `/readyz` is 200 only when `ready`,
otherwise 503 with the status and a reason that names the stage, the URL and what to do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..cluster.model_pools import MODEL_STAGES, ModelPools, PoolFull, Seat
from .admission import model_capacity_refusal
from .errors import ApiError

log = logging.getLogger("openrealtime.health")

RETRY_MIN_S = 1.0
RETRY_MAX_S = 10.0  # a backend that is down is tried again at least this often
PROBE_INTERVAL_S = 10.0  # a backend that answers is checked again this often
DRAIN_RETRY_AFTER_S = 5


@dataclass
class BackendHealth:
    stage: str  # "llm" | "stt" | "tts"
    url: str
    connected: bool = False  # has answered once (its engine is in the model stack)
    ok: bool = False  # answered the latest check
    error: str | None = None
    since: float = 0.0  # when `ok` last changed


class ServiceHealth:
    def __init__(self) -> None:
        self.loaded = False  # the model stack is in place (remote stages may still be connecting)
        self.draining = False
        self.backends: dict[str, BackendHealth] = {}
        # the node's limit on conversations at once (api/admission.py): the 429 a new one gets, or None
        self.capacity: Callable[[], ApiError | None] | None = None
        # the shared model pools' leases, counted across the cluster (cluster/model_pools.py); None: no limits
        self.pools: ModelPools | None = None

    # ---- state -------------------------------------------------------------------------------
    @property
    def accepting(self) -> bool:
        """Whether a session can run: loaded and every stage has an engine."""
        return self.loaded and all(b.connected for b in self.backends.values())

    def status(self) -> str:
        if self.draining:
            return "draining"
        if not self.loaded:
            return "loading"
        if any(not b.ok for b in self.backends.values()):
            return "degraded"
        return "ready"

    def reason(self) -> str | None:
        """Why the server is not ready, and what to do; None when it is."""
        if self.draining:
            return "the server is shutting down (draining its live sessions); send new sessions to another node"
        if not self.loaded:
            return "the models are still loading; retry in a few seconds"
        down = [b for b in self.backends.values() if not b.ok]
        if down:
            return "; ".join(f"{b.stage} backend at {b.url} is not answering ({b.error}); it is retried every "
                             f"{RETRY_MAX_S:g} s at most" if b.error else f"{b.stage} backend at {b.url}: connecting"
                             for b in down)
        return None

    def backend(self, stage: str, url: str) -> BackendHealth:
        if stage not in self.backends:
            self.backends[stage] = BackendHealth(stage, url, since=time.monotonic())
        return self.backends[stage]

    def backend_up(self, stage: str) -> None:
        b = self.backends[stage]
        b.connected = True
        if not b.ok:
            log.info("backend stage=%s url=%s state=up", stage, b.url)
            b.ok, b.error, b.since = True, None, time.monotonic()

    def backend_down(self, stage: str, error: str) -> None:
        b = self.backends[stage]
        if b.ok or b.error != error:
            log.warning("backend stage=%s url=%s state=down error=%s", stage, b.url, error)
        if b.ok:
            b.since = time.monotonic()
        b.ok, b.error = False, error

    # ---- admission ---------------------------------------------------------------------------
    def admission_error(self, pool_stages: Iterable[str] = ()) -> ApiError | None:
        """The refusal a new call or session gets now (503 not ready or draining, 429 at the conversation
        limit), or None when it can be served. `pool_stages`: for a session admitted without a seat (`seat`),
        the model stages it will use; a pool of those full as last counted refuses it too (429)."""
        if self.draining:
            return ApiError(503, "The server is shutting down and takes no new sessions; connect again (another "
                                 "node behind the load balancer will answer).", code="server_shutting_down",
                            type="server_error", headers={"Retry-After": str(DRAIN_RETRY_AFTER_S)})
        if not self.loaded:
            return ApiError(503, "The server is still loading its models; retry in a few seconds (GET /readyz).",
                            code="server_not_ready", type="server_error", headers={"Retry-After": "2"})
        waiting = [b for b in self.backends.values() if not b.connected]
        if waiting:
            b = waiting[0]
            return ApiError(503, f"The server cannot serve sessions yet: its {b.stage} backend at {b.url} has not "
                                 f"answered ({b.error or 'connecting'}). It is retried automatically; see GET /readyz.",
                            code="backend_unavailable", type="server_error", headers={"Retry-After": "5"})
        refused = self.capacity() if self.capacity is not None else None
        if refused is None and self.pools is not None and (full := self.pools.known_full(pool_stages)) is not None:
            refused = model_capacity_refusal(full)
        return refused

    async def seat(self, stages: Iterable[str] = MODEL_STAGES) -> Seat:
        """A new session's leases in the shared model pools of `stages` (admission.session_stages), or the
        429 `model_capacity_exceeded` of a full one. Use it around what starts the session:
        `with seat: … seat.keep_until(call.closed)`; a WebSocket session keeps the block for its life."""
        if self.pools is None:
            return Seat(None, {})
        try:
            return await self.pools.take(stages)
        except PoolFull as full:
            log.info("model pool full stage=%s limit=%d: new session refused", full.stage, full.limit)
            raise model_capacity_refusal(full) from None


class BackendWatch:
    """Connects each remote stage of the model stack, retrying with backoff until it answers, puts its
    engine in the stack, then checks it every `PROBE_INTERVAL_S`; updates `ServiceHealth` as it goes."""

    def __init__(self, health: ServiceHealth, stack: Any, *, on_connected: Any = None,
                 retry_max_s: float = RETRY_MAX_S, probe_interval_s: float = PROBE_INTERVAL_S) -> None:
        self.health = health
        self.stack = stack
        self.on_connected = on_connected  # (stage, engine): e.g. size the stage's worker pool
        self.retry_max_s = retry_max_s
        self.probe_interval_s = probe_interval_s
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        for stage, backend in self.stack.remote.items():
            self.health.backend(stage, backend.url)
            self._tasks.append(asyncio.create_task(self._watch(stage, backend), name=f"backend-{stage}"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _watch(self, stage: str, backend: Any) -> None:
        delay = RETRY_MIN_S
        while True:
            connected = self.health.backends[stage].connected
            try:
                if connected:
                    await asyncio.to_thread(backend.probe)
                else:
                    engine = await asyncio.to_thread(backend.connect)
                    setattr(self.stack, stage, engine)
                    self.stack.description[stage] = engine.describe()
                    if self.on_connected is not None:
                        self.on_connected(stage, engine)
            except Exception as exc:  # noqa: BLE001 - any failure is "not answering", with its message
                self.health.backend_down(stage, str(exc) or type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            self.health.backend_up(stage)
            delay = RETRY_MIN_S
            await asyncio.sleep(self.probe_interval_s)
