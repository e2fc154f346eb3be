"""The shared model pools on this server (`--llm-max-sessions`, `--stt-max-sessions`, `--tts-max-sessions`):
sessions at once per model stage across the cluster (cluster/model_pools.py), admitted through
`ServiceHealth.seat` and `ServiceHealth.admission_error` (api/health.py, api/admission.py).

`install` gives the server's health its `ModelPools` on the cluster store (`--redis-url`, or a host's
workers' SQLite file) or, for one process alone, on leases counted in memory; renews the leases while
the app runs and gives them back when it stops; counts a call that was admitted without a seat (a SIP
call accepted through the sync admission) for as long as it lives; and adds the pools' gauges to
`/metrics`. Without a limit set, nothing runs and a seat is empty.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from ..cluster.metrics import ModelPoolCollector
from ..cluster.model_pools import LocalLeases, ModelPools
from .admission import pool_limits
from .state import ServerState


def install(app: FastAPI, state: ServerState) -> None:
    limits = pool_limits(state.settings)
    if not limits:
        return
    pools = ModelPools(limits, state.cluster or LocalLeases(), state.settings.cluster_node_id)
    state.health.pools = pools
    app.state.metrics_registry.register(ModelPoolCollector(pools))

    def on_call(event: str, call) -> None:
        if event == "added":
            pools.adopt(call.closed)  # nothing when the route holds a seat for it already

    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: FastAPI):
        state.calls.listeners.append(on_call)
        pools.start()
        try:
            async with inner(app_) as maybe_state:
                yield maybe_state
        finally:
            state.calls.listeners.remove(on_call)
            await pools.close()

    app.router.lifespan_context = lifespan
