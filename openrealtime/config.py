"""Server settings: CLI flags, each with an `OPENREALTIME_*` environment equivalent."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .limits import MAX_BODY_BYTES


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: list[str] = field(default_factory=list)
    advertise_ips: list[str] = field(default_factory=list)  # empty: derived from host
    bind_ips: list[str] = field(default_factory=list)  # ICE sockets; empty: advertised IP if local, else 0.0.0.0
    udp_port: int = 3478  # the one ICE UDP port for every call (0: any free port)
    tcp_port: int = 443  # the one ICE-TCP (passive) port for every call (0: ICE-TCP off)
    engine: str = "local"  # "local" | "echo"
    profile: str = "default"  # local model profile: default | fast | test
    insecure_no_auth: bool = False
    log_level: str = "info"
    log_format: str = "text"  # text | json
    connect_timeout_s: float = 15.0
    max_call_duration_s: float = 60 * 60
    max_calls: int = 64
    # conversations at once before new ones get 429 (api/admission.py): None: auto (the local LLM's), 0: no limit
    max_conversations: int | None = None
    # sessions at once per model stage on every node of the cluster together (api/admission.py,
    # cluster/model_pools.py): for shared model servers; None: no limit
    llm_max_sessions: int | None = None
    stt_max_sessions: int | None = None
    tts_max_sessions: int | None = None
    echo_delay_s: float = 0.3
    # libopus complexity of the audio we send (0-10). 5: libwebrtc's mobile setting, hybrid
    # super-wideband at 32 kbps; 1: about half the encoder CPU, wideband SILK (bench/README.md)
    opus_complexity: int = 5
    max_body_bytes: int = MAX_BODY_BYTES  # every size limit: limits.py
    # graceful drain on SIGTERM/SIGINT: live sessions get this long to end (None: max_call_duration_s)
    drain_timeout_s: float | None = None
    # a remote backend that sends nothing this long after a request / stops mid-answer this long fails it
    backend_first_token_timeout_s: float = 30.0
    backend_stall_timeout_s: float = 15.0
    # Remote OpenAI-compatible model servers, per stage (None: the local engine of --profile)
    llm_url: str | None = None
    llm_key: str | None = None
    llm_model: str | None = None
    llm_images: bool = True
    stt_url: str | None = None
    stt_key: str | None = None
    stt_model: str | None = None
    tts_url: str | None = None
    tts_key: str | None = None
    tts_model: str | None = None
    tts_voice: str | None = None
    # local models on a GPU build of llama.cpp / CTranslate2
    llm_gpu_layers: int = 0
    llm_parallel: int = 4  # replies the local LLM decodes at once (engines/local/llm_batch.py)
    stt_device: str = "cpu"
    # MCP servers a session may name on internal addresses: host names and IPs/CIDRs (engines/egress.py)
    mcp_allow: list[str] = field(default_factory=list)
    # Cluster (openrealtime/cluster/): with redis_url this node joins the nodes sharing that Redis
    redis_url: str | None = None
    node_id: str | None = None  # None: hostname-pid of the serving process (`cluster_node_id`)
    internal_url: str | None = None  # how other nodes reach this one; None: the first advertised IP and port
    cluster_secret: str | None = None  # HMAC key of node-to-node requests (cluster/auth.py); required with redis_url
    workers: int = 1  # worker processes serving the one HTTP port on this host
    # the SQLite file a host's workers share when there is no redis_url (set by the supervisor for its
    # workers, openrealtime/supervisor.py; not a flag)
    cluster_db: str | None = None
    # Phone calls over SIP (openrealtime/sip/): off unless sip_port is set
    sip_port: int | None = None  # UDP and TCP
    sip_tls_port: int | None = None
    sip_tls_cert: str | None = None
    sip_tls_key: str | None = None
    sip_advertise_ip: str | None = None  # None: the first advertised IP
    sip_allow: list[str] = field(default_factory=list)  # source IPs/CIDRs of trunks allowed to call; empty: any
    sip_auth: list[str] = field(default_factory=list)  # "user:password" digest accounts of trunks; empty: no auth
    sip_ring_timeout_s: float = 30.0  # no accept/reject by then: 603
    sip_api: str = "realtime"  # the API incoming calls are announced for: realtime.call.incoming | live.transport.incoming
    webhook_url: str | None = None  # where realtime.call.incoming is POSTed
    webhook_secret: str | None = None  # whsec_…: signs it (Standard Webhooks)

    @property
    def remote_stages(self) -> dict[str, str]:
        return {k: v for k, v in (("llm", self.llm_url), ("stt", self.stt_url), ("tts", self.tts_url)) if v}

    @property
    def secret_values(self) -> list[str]:
        """Values never to log: the server's API keys, the remote backends' keys, the cluster secret, the
        Redis password, the webhook secret and the SIP trunks' digest passwords."""
        redis_password = urlsplit(self.redis_url).password if self.redis_url else None
        sip_passwords = [spec.split(":", 1)[1] for spec in self.sip_auth if ":" in spec]
        return [*self.api_keys, *(k for k in (self.llm_key, self.stt_key, self.tts_key, self.cluster_secret,
                                              redis_password, self.webhook_secret, *sip_passwords) if k)]

    @property
    def cluster_node_id(self) -> str:
        return self.node_id or f"{socket.gethostname()}-{os.getpid()}"

    @property
    def is_loopback(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")

    def check(self) -> None:
        """Refuse unsafe or impossible combinations with a message that says what to do."""
        if not self.api_keys and not self.is_loopback and not self.insecure_no_auth:
            raise SystemExit(
                f"refusing to serve on {self.host} without an API key: pass --api-key KEY "
                "(or OPENREALTIME_API_KEYS=key1,key2), or --insecure-no-auth if this network is trusted"
            )
        if self.engine not in ("local", "echo"):
            raise SystemExit(f"--engine must be 'local' or 'echo', not {self.engine!r}")
        if not 0 <= self.opus_complexity <= 10:
            raise SystemExit(f"--opus-complexity must be 0-10, not {self.opus_complexity}")
        if self.profile not in ("default", "fast", "test"):
            raise SystemExit(f"--profile must be default, fast or test, not {self.profile!r}")
        self._check_cluster()
        self._check_sip()
        from .engines.egress import parse_allow_list

        try:
            parse_allow_list(self.mcp_allow)
        except ValueError as exc:
            raise SystemExit(str(exc)) from None

    def _check_cluster(self) -> None:
        for stage in ("llm", "stt", "tts"):
            limit = getattr(self, f"{stage}_max_sessions")
            if limit is not None and limit < 0:
                raise SystemExit(f"--{stage}-max-sessions must be 0 (no limit) or more, not {limit}")
        if self.workers < 1:
            raise SystemExit(f"--workers must be at least 1 (or auto), not {self.workers}")
        if self.internal_url is not None and urlsplit(self.internal_url).scheme not in ("http", "https"):
            raise SystemExit(f"--internal-url must be an http:// or https:// URL, not {self.internal_url!r}")
        if not self.redis_url:
            return
        if not self.cluster_secret:
            raise SystemExit("--redis-url needs a cluster secret shared by every node: set OPENREALTIME_CLUSTER_SECRET "
                             "(or pass --cluster-secret) to the same random value of 16 or more characters on each "
                             "node, e.g. from `openssl rand -hex 32`")
        if len(self.cluster_secret) < 16:
            raise SystemExit("the cluster secret (OPENREALTIME_CLUSTER_SECRET / --cluster-secret) must have 16 or more "
                             "characters, e.g. from `openssl rand -hex 32`")
        from .cluster.redis_url import check_redis_url

        try:
            check_redis_url(self.redis_url)
        except ValueError as exc:
            raise SystemExit(str(exc)) from None

    def _check_sip(self) -> None:
        if self.sip_port is None:
            if self.sip_tls_port is not None:
                raise SystemExit("--sip-tls-port needs --sip-port (SIP over UDP/TCP is always on with TLS)")
            return
        if not 0 <= self.sip_port < 65536:
            raise SystemExit(f"--sip-port must be 0-65535, not {self.sip_port}")
        if not self.webhook_url or urlsplit(self.webhook_url).scheme not in ("http", "https"):
            raise SystemExit("--sip-port needs --webhook-url http(s)://… : incoming calls are announced to your app "
                             "there (realtime.call.incoming), which accepts or rejects them")
        if not self.webhook_secret:
            raise SystemExit("--sip-port needs a webhook secret to sign realtime.call.incoming: set "
                             "OPENREALTIME_WEBHOOK_SECRET (or --webhook-secret) to whsec_ + base64 of 32 random bytes, "
                             "e.g. whsec_$(openssl rand -base64 32), and give the same value to your app")
        from .sip.webhook import check_secret

        try:
            check_secret(self.webhook_secret)
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
        if self.sip_tls_port is not None and not (self.sip_tls_cert and self.sip_tls_key):
            raise SystemExit("--sip-tls-port needs --sip-tls-cert and --sip-tls-key (PEM files)")
        if self.sip_api not in ("realtime", "live"):
            raise SystemExit(f"--sip-api must be realtime or live, not {self.sip_api!r}")
        if self.sip_ring_timeout_s <= 0:
            raise SystemExit(f"--sip-ring-timeout must be positive, not {self.sip_ring_timeout_s}")
        import ipaddress

        for entry in self.sip_auth:
            user, _, password = entry.partition(":")
            if not user or not password or any(c in user for c in '"\\ '):
                raise SystemExit("--sip-auth takes user:password (a user name without quotes, backslashes or "
                                 "spaces, and a password)")
        for entry in self.sip_allow:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise SystemExit(f"--sip-allow takes IP addresses or CIDRs, not {entry!r}") from None
