"""This server as a node of a cluster (`--redis-url`): its heartbeat and call map in the cluster store.

With a cluster store (`ServerState.cluster`), the app's lifespan runs a `NodeAgent` (cluster/agent.py):
the node registers when the server starts, reports its calls, readiness, drain and event-loop lag
every few seconds, maps each call id to itself while the call lives, and deregisters at shutdown.
Without one nothing here runs.
"""

from __future__ import annotations

import ipaddress
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ..cluster.agent import NodeAgent, NodeStatus
from .state import ServerState


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
    inner = app.router.lifespan_context

    def status() -> NodeStatus:
        probe = getattr(app.state, "loop_lag", None)  # api/operator.py
        return NodeStatus(calls=len(state.calls), max_calls=state.settings.max_calls,
                          loop_lag_s=probe.take_recent_max_s() if probe is not None else 0.0,
                          ready=state.ready, draining=state.health.draining)

    @asynccontextmanager
    async def lifespan(app_: FastAPI):
        agent = NodeAgent(store, state.settings.cluster_node_id, internal_url(state), status,
                          call_ids=lambda: [call.id for call in state.calls.all()])

        def on_call(event: str, call) -> None:
            (agent.call_added if event == "added" else agent.call_ended)(call.id)

        state.calls.listeners.append(on_call)
        app.state.cluster_agent = agent
        agent.start()
        try:
            async with inner(app_) as maybe_state:
                yield maybe_state
        finally:
            await agent.stop()
            state.calls.listeners.remove(on_call)
            await store.close()

    app.router.lifespan_context = lifespan
