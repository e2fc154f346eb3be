"""Operator routes: `GET /metrics` (Prometheus) and the live-calls admin API.

In a cluster (api/cluster_routing.py) the call list covers every node, each call with its `"node"`,
a call's details come from its own node, and `/metrics` adds the cluster gauges to this node's own.

`GET /v1/realtime/calls` and `GET /v1/realtime/calls/{id}` need a server API key (ephemeral
`ek_` keys are refused). `/metrics` is open when the server has no API keys configured (a
loopback bind) and otherwise needs one too (Prometheus: `authorization: {credentials: KEY}`).
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ..observability.loop_lag import LoopLagProbe
from .gc_policy import CollectAfterCalls
from ..observability.metrics import build_registry, render
from ..observability.monitor import CallMonitor
from .cluster_routing import cluster_router, node_of, route_to_owner
from .errors import ApiError
from .state import ServerState

router = APIRouter()


def install(app: FastAPI, state: ServerState) -> None:
    """Attach the call monitor, the event-loop lag probe, the metrics registry and the collection after
    calls end (gc_policy.py) to `app` and add the routes. The probe runs on the serving loop for as long
    as the app's lifespan does."""
    monitor = CallMonitor(state.calls)
    loop_lag = LoopLagProbe()
    collector = CollectAfterCalls()
    state.calls.listeners.append(collector)
    app.state.gc_collector = collector
    app.state.monitor = monitor
    app.state.loop_lag = loop_lag
    app.state.metrics_registry = build_registry(state, monitor, loop_lag=loop_lag)
    app.include_router(router)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: FastAPI):
        loop_lag.start()
        try:
            async with inner(app_) as maybe_state:
                yield maybe_state
        finally:
            loop_lag.stop()
            collector.cancel()

    app.router.lifespan_context = lifespan


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    state: ServerState = request.app.state.server
    if state.auth.api_keys:
        state.auth(request)
    router = cluster_router(request)
    if router is not None:
        await router.refresh()  # the node table behind the cluster gauges (cluster/metrics.py)
    body, content_type = await render(request.app.state.metrics_registry, request.app.state.monitor)
    return Response(body, media_type=content_type)


@router.get("/v1/realtime/calls")
async def list_calls(request: Request) -> JSONResponse:
    state: ServerState = request.app.state.server
    state.auth(request)
    monitor: CallMonitor = request.app.state.monitor
    await monitor.refresh()
    calls = sorted(state.calls.all(), key=lambda c: c.stats.created)
    data = [_with_node(monitor.describe(c), request) for c in calls]
    router = cluster_router(request)
    if router is not None and router.from_node(request.scope, request.headers) is None:
        data = await router.list_calls(request, data)  # every node's calls
    return JSONResponse({"object": "list", "data": data})


@router.get("/v1/realtime/calls/{call_id}")
async def get_call(call_id: str, request: Request) -> JSONResponse:
    state: ServerState = request.app.state.server
    state.auth(request)
    call = state.calls.get(call_id)
    if call is None:
        owner_reply = await route_to_owner(request, call_id)  # in a cluster: the call's own node describes it
        if owner_reply is not None:
            return owner_reply
        raise ApiError(404, f"Call '{call_id}' not found (it may have ended already).", code="call_not_found",
                       param="call_id")
    monitor: CallMonitor = request.app.state.monitor
    await monitor.refresh()
    return JSONResponse(_with_node(monitor.describe(call, events=True), request))


def _with_node(described: dict, request: Request) -> dict:
    """A call's description with the node that runs it, in a cluster."""
    node = node_of(request)
    return described if node is None else {**described, "node": node}
