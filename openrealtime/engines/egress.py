"""The egress policy for requests a session makes the server send (MCP servers named by tools).

Any session — a browser holding only an `ek_` key included — can name an MCP `server_url`, and the
server, not the client, connects to it. Without a policy that lets a caller reach what only the
server can: its loopback services, the private network, cloud metadata (169.254.169.254).

`EgressPolicy` refuses every address that is not a public unicast one: loopback, private (RFC 1918,
100.64.0.0/10 shared/CGNAT, fc00::/7), link-local (169.254.0.0/16, fe80::/10), unspecified,
multicast, broadcast and reserved ranges, and IPv6 forms that embed such an IPv4 address
(IPv4-mapped, IPv4-compatible, 6to4, NAT64, Teredo). Host names and odd literals (`127.1`,
`2130706433`, `0x7f.1`) are resolved the way the OS resolves them (getaddrinfo) and every address
is checked. An operator allows chosen internal servers with `--mcp-allow HOST|CIDR`: a host name
matches a URL's host exactly, an IP or CIDR matches the resolved addresses.

The check is made where the connection is opened (`transport()`: an httpx transport whose network
backend resolves the host once, checks every address and connects to a checked address), so each
redirect hop and each later connection is checked too, and there is no window between the check
and the connection for DNS to answer differently (rebinding). The URL's host name stays in the
`Host` header and in TLS (SNI and certificate verification).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# host, port -> the addresses it resolves to (IP strings); a seam for tests, the OS resolver otherwise
Resolver = Callable[[str, int], Awaitable[list[str]]]

ALLOW_HINT = ("MCP servers on internal addresses are refused unless the operator allows them with "
              "--mcp-allow HOST|CIDR (OPENREALTIME_MCP_ALLOW)")

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network
# fec0::/10: the deprecated site-local range; 64:ff9b:1::/48: local-use NAT64 (RFC 8215)
_PRIVATE = (_V4("10.0.0.0/8"), _V4("172.16.0.0/12"), _V4("192.168.0.0/16"), _V4("100.64.0.0/10"),
            _V6("fc00::/7"), _V6("fec0::/10"), _V6("64:ff9b:1::/48"))
_THIS_NETWORK = _V4("0.0.0.0/8")
_METADATA = (ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"))
_NAT64 = _V6("64:ff9b::/96")  # the well-known prefix: the IPv4 address in the last 32 bits
_IPV4_COMPATIBLE = _V6("::/96")
_HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")


class EgressRefused(Exception):
    """A connection the policy refuses: `host` resolves to `address`, which is `kind` (e.g. "loopback")."""

    def __init__(self, host: str, address: str, kind: str) -> None:
        self.host = host
        self.address = address
        self.kind = kind
        article = "an" if kind[:1] in "aeiou" else "a"
        where = f"{host} is" if _same_address(host, address) else f"{host} resolves to {address},"
        self.message = f"{where} {article} {kind} address; {ALLOW_HINT}"
        super().__init__(self.message)


def _same_address(host: str, address: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")) == ipaddress.ip_address(address)
    except ValueError:
        return False


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """An IPv4 address carried inside an IPv6 one, with the name of the form."""
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped", ip.ipv4_mapped
    if ip.sixtofour is not None:
        return "6to4", ip.sixtofour
    if ip.teredo is not None:
        return "Teredo", ip.teredo[1]
    if ip in _NAT64:
        return "NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:
        return "IPv4-compatible", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_kind(ip: IPAddress) -> str | None:
    """What makes an address internal ("loopback", "private", ...), or None for a public unicast one."""
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ip.__class__(str(ip).split("%")[0])  # without a scope id
        if ip.is_unspecified:
            return "unspecified"
        if ip.is_loopback:
            return "loopback"
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            form, v4 = embedded
            kind = address_kind(v4)
            return f"{kind} ({form})" if kind is not None else None
    if ip.is_unspecified or ip in _THIS_NETWORK:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip in _METADATA:
        return "link-local (cloud metadata)"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if any(ip in net for net in _PRIVATE if net.version == ip.version):
        return "private"
    if ip == ipaddress.IPv4Address("255.255.255.255"):
        return "broadcast"
    if ip.is_reserved or ip.is_private or not ip.is_global:
        return "reserved"  # documentation, benchmarking, protocol assignments, 240.0.0.0/4, ...
    return None


def parse_allow_list(entries: Iterable[str]) -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    """`--mcp-allow` entries -> (host names, networks). Raises ValueError naming a bad entry."""
    hosts: set[str] = set()
    networks: list[IPNetwork] = []
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        bare = entry[1:-1] if entry.startswith("[") and entry.endswith("]") else entry
        try:
            networks.append(ipaddress.ip_network(bare, strict=False))
            continue
        except ValueError:
            pass
        name = entry.lower().rstrip(".")
        if not _HOST_NAME.match(name):
            raise ValueError(f"--mcp-allow {entry!r}: expected a host name (mcp.internal), an IP address "
                             "(10.0.0.5) or a CIDR (10.0.0.0/8), without a scheme or port")
        hosts.add(name)
    return frozenset(hosts), tuple(networks)


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the OS resolves `host` to (getaddrinfo: names, and literals such as `127.1`)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         proto=socket.IPPROTO_TCP)
    seen: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        if sockaddr[0] not in seen:
            seen.append(sockaddr[0])
    return seen


class EgressPolicy:
    """Which addresses the server may connect to for a session. Built once from the settings
    (`--mcp-allow`) and passed to the sessions; the default allows public addresses only."""

    def __init__(self, allow: Iterable[str] = (), *, resolver: Resolver | None = None) -> None:
        self.allowed_hosts, self.allowed_networks = parse_allow_list(allow)
        self._resolve = resolver or system_resolver

    def __repr__(self) -> str:
        allowed = sorted(self.allowed_hosts) + [str(n) for n in self.allowed_networks]
        return f"EgressPolicy(allow={allowed})"

    def refusal(self, host: str, address: str) -> EgressRefused | None:
        """Why a connection to `address` (resolved from `host`) is refused, or None if it may go."""
        if host.lower().rstrip(".").strip("[]") in self.allowed_hosts:
            return None
        ip = ipaddress.ip_address(address.split("%")[0])
        candidates = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        if any(c in net for c in candidates for net in self.allowed_networks if net.version == c.version):
            return None
        kind = address_kind(ip)
        return EgressRefused(host, address, kind) if kind is not None else None

    async def addresses(self, host: str, port: int) -> list[str]:
        """Resolve `host` once and check every address; the addresses a connection may use.
        Raises EgressRefused if any of them is refused, OSError if it does not resolve."""
        addresses = await self._resolve(host, port)
        if not addresses:
            raise OSError(f"{host} resolves to no address")
        for address in addresses:
            refused = self.refusal(host, address)
            if refused is not None:
                raise refused
        return addresses

    def transport(self, **kwargs: Any) -> httpx.AsyncBaseTransport:
        """An httpx transport (AsyncHTTPTransport arguments) whose every connection obeys the policy."""
        return _CheckedTransport(self, **kwargs)


class _CheckingBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the policy in front: resolve, check, connect to a checked IP.
    TLS is started by httpcore afterwards with the URL's host name (SNI, certificate check)."""

    def __init__(self, policy: EgressPolicy, inner: httpcore.AsyncNetworkBackend) -> None:
        self.policy = policy
        self.inner = inner

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await asyncio.wait_for(self.policy.addresses(host, port), timeout)
        except asyncio.TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} took longer than {timeout} s") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("Unix sockets are not reachable under the egress policy")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _CheckedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: EgressPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        pool = getattr(self, "_pool", None)
        inner = getattr(pool, "_network_backend", None)
        if not isinstance(pool, httpcore.AsyncConnectionPool) or not isinstance(inner, httpcore.AsyncNetworkBackend):
            # fail closed: an httpx/httpcore whose pool cannot take the checking backend
            raise RuntimeError("this httpx/httpcore version cannot apply the egress policy; "
                               f"httpx {httpx.__version__}, httpcore {httpcore.__version__}")
        pool._network_backend = _CheckingBackend(policy, inner)
