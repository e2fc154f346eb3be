"""Server-side ICE for aiortc: our own `aioice.Connection` subclass.

aiortc builds its ICE agent with `aiortc.rtcicetransport.Connection(...)`, a module global
looked up at call time; `aiortc_patches.install()` (at server startup) puts a factory there
(`aiortc_patches/ice_agent.py`) that returns a `ServerIceConnection` inside `server_ice(settings)`
(a context variable carries the call's ICE settings) and a stock `aioice.Connection` otherwise
(aiortc clients in the same process, e.g. tests and benchmarks, are unaffected).

`ServerIceConnection`:
* uses a long unique ufrag (`ICE_UFRAG_LEN` chars, with an optional routing prefix);
* never contacts STUN/TURN servers; gathers host candidates only for the configured
  (bind address → advertised address) pairs;
* returns `ConnectionClosed` from `get_event()` after close instead of `None` (aiortc's
  monitor loop spins forever on `None`).

With `IceSettings.mux` (a started `ice_mux.MuxSet`, the server's normal mode) no socket is
bound per call: `gather_candidates` attaches virtual protocols to the shared UDP / ICE-TCP ports
and advertises exactly `udp 2130706431 <ip> <udp_port> typ host` and
`tcp 1671430143 <ip> <tcp_port> typ host tcptype passive` per advertised IP (UDP first, no RTCP
component). Without a mux (unit tests, embedding) each call binds its own ephemeral UDP socket.

ICE role: full ICE in the controlled role (aiortc answers; browsers are controlling and
nominate).

Consent freshness (RFC 7675): a check towards the peer every `consent_interval_s` (5 s, randomized
0.8-1.2×); consent expires `consent_timeout_s` (30 s) after the last answered check, and the Connection
closes then with `close_reason = "consent_expired"` (the call ends with that reason): a caller that
vanished without a goodbye (killed, unplugged) is let go 25-30 s after it last answered. Stock aioice
instead counts 6 consecutive failed checks, each 4-6 s apart plus a 0.5 s wait: 23-39 s after the
caller vanished, and aiortc reported it as a plain close.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import secrets
import socket
import string
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import aioice
from aioice import Candidate, stun
from aioice.candidate import candidate_foundation, candidate_priority
from aioice.ice import ConnectionClosed, StunProtocol
from aiortc import rtcicetransport

from .ice_mux import MuxSet

ICE_UFRAG_LEN = 24  # total length; at least ICE_UFRAG_MIN_RANDOM random characters after the prefix
ICE_UFRAG_MIN_RANDOM = 16
_UFRAG_ALPHABET = string.ascii_letters + string.digits
SOCKET_BUFFER_BYTES = 1 << 20
CONSENT_INTERVAL_S = 5.0  # RFC 7675 §5.1: checks every 5 s on average, randomized 0.8-1.2x
CONSENT_TIMEOUT_S = 30.0  # RFC 7675 §5.1: consent expires 30 s after the last answered check

log = logging.getLogger("openrealtime.ice")


@dataclass(frozen=True)
class IceSettings:
    """Where a call's host candidates live: pairs of (bind address, advertised address)."""

    addresses: tuple[tuple[str, str], ...]
    ufrag_prefix: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)
    # shared UDP/TCP ports (its own addresses and ports apply); None: a UDP socket per call
    mux: MuxSet | None = field(default=None, compare=False, hash=False)
    consent_interval_s: float = CONSENT_INTERVAL_S
    consent_timeout_s: float = CONSENT_TIMEOUT_S


_current: contextvars.ContextVar[IceSettings | None] = contextvars.ContextVar("openrealtime_ice", default=None)


def new_ufrag(prefix: str = "", taken=None) -> str:
    """A random ufrag: `prefix` (routing metadata, [A-Za-z0-9+/]) then >= 16 random characters."""
    if any(c not in _UFRAG_ALPHABET + "+/" for c in prefix):
        raise ValueError(f"invalid ICE ufrag prefix {prefix!r}")
    length = max(ICE_UFRAG_MIN_RANDOM, ICE_UFRAG_LEN - len(prefix))
    while True:
        ufrag = prefix + "".join(secrets.choice(_UFRAG_ALPHABET) for _ in range(length))
        if taken is None or not taken(ufrag):
            return ufrag


class ServerIceConnection(aioice.Connection):
    """Controlled-role full ICE agent with host candidates on the configured addresses."""

    def __init__(self, settings: IceSettings, **kwargs) -> None:
        for key in ("stun_server", "turn_server", "turn_username", "turn_password", "turn_ssl", "turn_transport"):
            kwargs.pop(key, None)
        mux = settings.mux
        kwargs["local_username"] = new_ufrag(settings.ufrag_prefix, mux.has_ufrag if mux is not None else None)
        super().__init__(**kwargs)
        self.settings = settings
        self.close_reason: str | None = None  # why the agent closed itself ("consent_expired"), if it did
        self.consent_at: float | None = None  # loop time of the last answered consent check

    async def gather_candidates(self) -> None:
        if self._local_candidates_start:
            return
        self._local_candidates_start = True
        mux = self.settings.mux
        if mux is not None:
            protocols, candidates = mux.attach(self, component=min(self._components))
            self._protocols += protocols
            self._local_candidates += candidates
            self._local_candidates_end = True
            return
        loop = asyncio.get_running_loop()
        for component in self._components:
            for bind_ip, advertise_ip in self.settings.addresses:
                try:
                    transport, protocol = await loop.create_datagram_endpoint(
                        lambda: StunProtocol(self), local_addr=(bind_ip, 0)
                    )
                except OSError as exc:
                    raise OSError(f"cannot bind a UDP socket on {bind_ip}: {exc}") from exc
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
                port = transport.get_extra_info("sockname")[1]
                protocol.local_candidate = Candidate(
                    foundation=candidate_foundation("host", "udp", advertise_ip),
                    component=component,
                    transport="udp",
                    priority=candidate_priority(component, "host"),
                    host=advertise_ip,
                    port=port,
                    type="host",
                )
                self._protocols.append(protocol)
                self._local_candidates.append(protocol.local_candidate)
        self._local_candidates_end = True

    async def add_remote_candidate(self, remote_candidate: Candidate | None) -> None:
        # Browsers trickle `tcptype active` candidates (port 9): nothing can be checked there.
        if remote_candidate is not None and remote_candidate.transport.lower() == "tcp":
            return
        await super().add_remote_candidate(remote_candidate)

    async def query_consent(self) -> None:  # replaces aioice's (started once ICE has completed)
        """RFC 7675 consent freshness with expiry as a deadline: checks every ~interval; consent expires
        `consent_timeout_s` after the last answered one (a check in flight then may delay it by its 0.5 s)."""
        loop = asyncio.get_running_loop()
        interval, timeout = self.settings.consent_interval_s, self.settings.consent_timeout_s
        self.consent_at = loop.time()
        while True:
            left = self.consent_at + timeout - loop.time()
            await asyncio.sleep(max(0.0, min(interval * (0.8 + 0.4 * random.random()), left)))
            if loop.time() >= self.consent_at + timeout:
                log.info("ICE consent expired: no answer to consent checks for %.0f s", timeout)
                self.close_reason = "consent_expired"
                self._query_consent_task = None  # close() would cancel (and await) this very task
                await self.close()
                return
            for pair in self.nominated_pairs():
                request = self.build_request(pair, nominate=False)
                try:
                    await pair.protocol.request(request, pair.remote_addr,
                                                integrity_key=self.remote_password.encode("utf8"), retransmissions=0)
                    self.consent_at = loop.time()
                except stun.TransactionError:
                    pass

    def valid_username(self, username: str) -> bool:
        """A STUN USERNAME aioice accepts for this agent (`<our ufrag>:<theirs>`)."""
        return self._valid_username(username)

    def nominated_pairs(self) -> list:
        """The nominated candidate pairs (one per component: BUNDLE and rtcp-mux make it one)."""
        return list(self._nominated.values())

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            if self.settings.mux is not None:
                self.settings.mux.detach(self)

    async def get_event(self):  # type: ignore[override]
        event = await super().get_event()
        return ConnectionClosed() if event is None else event


def current_ice_settings() -> IceSettings | None:
    """The ICE settings of the call being set up here (inside `server_ice`), or None."""
    return _current.get()


@contextmanager
def server_ice(settings: IceSettings) -> Iterator[None]:
    """Within this block, aiortc ICE agents are created as `ServerIceConnection`s (once
    `aiortc_patches.install()` has run: without it aiortc would gather on every interface)."""
    if rtcicetransport.Connection is aioice.Connection:
        raise RuntimeError("server_ice needs openrealtime's aiortc patches: call "
                           "openrealtime.media.aiortc_patches.install() first")
    token = _current.set(settings)
    try:
        yield
    finally:
        _current.reset(token)


def default_advertise_ips(host: str) -> list[str]:
    """127.0.0.1 when the HTTP server is bound to loopback, else this host's addresses."""
    if host in ("127.0.0.1", "localhost", "::1") or host.startswith("127."):
        return ["127.0.0.1"]
    addresses = [a for a in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) if not a.startswith("127.")]
    return addresses or ["127.0.0.1"]
