"""Everything the routes share: settings, live calls, secrets, auth, model stack."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..cluster.store import ClusterStore
from ..cluster.stores import open_store
from ..config import Settings
from ..engines.egress import EgressPolicy
from ..media import aiortc_patches
from ..media.ice import IceSettings, default_advertise_ips
from ..media.ice_mux import MuxSet, address_pairs
from ..media.registry import CallRegistry
from ..runtime import Runtime
from .auth import Authenticator
from .health import ServiceHealth
from .lifecycle import Lifecycle
from .secrets_store import ClusterSecretStore, MemorySecretStore, SecretStore


@dataclass
class ServerState:
    settings: Settings
    store: SecretStore
    auth: Authenticator
    calls: CallRegistry
    ice: IceSettings
    mux: MuxSet | None = None  # the shared ICE UDP/TCP ports; started by the app's lifespan
    models: Any = None  # engines.base.ModelStack once loaded (local engine)
    owns_models: bool = False  # loaded by this server (closed on shutdown) rather than shared in
    egress: EgressPolicy = field(default_factory=EgressPolicy)  # what MCP tools may reach (--mcp-allow)
    health: ServiceHealth = field(default_factory=ServiceHealth)  # loading / ready / degraded / draining
    ws_sessions: set[Any] = field(default_factory=set)  # live direct WebSocket sessions (SessionEngine)
    started_at: float = field(default_factory=time.time)
    lifecycle: Lifecycle = field(init=False)  # drain and exit (lifecycle.py)
    runtime: Runtime = field(default_factory=Runtime)  # model worker pools, foreground gate, clock (runtime.py)
    owns_runtime: bool = True  # closed on shutdown, unless shared in (with a model stack loaded beside it)
    cluster: ClusterStore | None = None  # the store the nodes share (--redis-url, or a host's workers); None: alone

    def __post_init__(self) -> None:
        self.lifecycle = Lifecycle(self)

    @property
    def ready(self) -> bool:
        """Sessions can be served: models loaded, every remote stage connected (health.py)."""
        return self.health.accepting

    def live_sessions(self) -> int:
        """Calls and direct WebSocket sessions running now (a sideband is part of its call)."""
        return len(self.calls) + len(self.ws_sessions)

    @classmethod
    def build(cls, settings: Settings, store: SecretStore | None = None) -> "ServerState":
        try:  # the aiortc objects the server's calls run on (media/aiortc_patches): here, once, before any call
            aiortc_patches.install()
        except aiortc_patches.AiortcMismatch as exc:
            raise SystemExit(str(exc)) from None
        cluster = open_store(redis_url=settings.redis_url, sqlite_path=settings.cluster_db)
        store = store or (ClusterSecretStore(cluster) if cluster is not None else MemorySecretStore())
        advertise = settings.advertise_ips or default_advertise_ips(settings.host)
        try:
            pairs = address_pairs(settings.bind_ips, advertise)
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
        mux = MuxSet(pairs, udp_port=settings.udp_port, tcp_port=settings.tcp_port or None)
        ice = IceSettings(addresses=pairs, mux=mux)
        try:
            egress = EgressPolicy(settings.mcp_allow)
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
        return cls(settings=settings, store=store, auth=Authenticator(settings.api_keys, store),
                   calls=CallRegistry(settings.max_calls), ice=ice, mux=mux, egress=egress, cluster=cluster)
