"""This server as a node of a cluster (`--redis-url`, or one of a host's `--workers`): its heartbeat and
call map in the cluster store, and the routing of public requests to other nodes.

With a cluster store (`ServerState.cluster`), the app's lifespan runs a `NodeAgent` (cluster/agent.py):
the node registers when the server starts, reports its calls, readiness, drain and event-loop lag
every few seconds, maps each call id to itself while the call lives, and deregisters at shutdown.
A `ClusterRouter` (api/cluster_routing.py, on `app.state.cluster_router`) places new calls and
forwards requests about other nodes' calls; `/metrics` gains the cluster gauges (cluster/metrics.py).
Without a cluster store nothing here runs.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ..cluster.agent import NodeAgent, NodeStatus
from ..cluster.metrics import ClusterCollector
from ..cluster.store import NodeRecord
from .cluster_routing import ClusterRouter
from .state import ServerState

log = logging.getLogger("openrealtime.cluster")


def internal_url(state: ServerState) -> str:
    """--internal-url, or http://<first advertised IP>:<HTTP port>."""
    settings = state.settings
    if settings.internal_url:
        return settings.internal_url.rstrip("/")
    host = state.ice.addresses[0][1] if state.ice.addresses else settings.host
    if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def install(app: FastAPI, state: ServerState) -> None:
    """Run the node's agent for as long as the app's lifespan, if the server has a cluster store."""
    if state.cluster is None:
        return
    store = state.cluster
    settings = state.settings
    node_id, url = settings.cluster_node_id, internal_url(state)
    inner = app.router.lifespan_context

    def local() -> NodeRecord:
        return NodeRecord(node_id=node_id, internal_url=url, calls=len(state.calls), max_calls=settings.max_calls,
                          ready=state.ready, draining=state.health.draining, updated_at=time.time())

    router = None
    if settings.cluster_secret:
        router = ClusterRouter(store, node_id, settings.cluster_secret, local)
        app.state.metrics_registry.register(ClusterCollector(lambda: list(router.known.values()),
                                                            lambda: router.store_up, router.counts))
    else:  # settings.check() requires one with --redis-url; a node without one still heartbeats
        log.warning("no cluster secret: node=%s routes no request to other nodes", node_id)
    app.state.cluster_router = router

    def status() -> NodeStatus:
        probe = getattr(app.state, "loop_lag", None)  # api/operator.py
        return NodeStatus(calls=len(state.calls), max_calls=state.settings.max_calls,
                          loop_lag_s=probe.take_recent_max_s() if probe is not None else 0.0,
                          ready=state.ready, draining=state.health.draining)

    @asynccontextmanager
    async def lifespan(app_: FastAPI):
        agent = NodeAgent(store, node_id, url, status, call_ids=lambda: [call.id for call in state.calls.all()])

        def on_call(event: str, call) -> None:
            (agent.call_added if event == "added" else agent.call_ended)(call.id)

        state.calls.listeners.append(on_call)
        app.state.cluster_agent = agent
        agent.start()
        if router is not None:
            router.start()
        try:
            async with inner(app_) as maybe_state:
                yield maybe_state
        finally:
            await agent.stop()
            state.calls.listeners.remove(on_call)
            if router is not None:
                await router.close()
            await store.close()

    app.router.lifespan_context = lifespan
