"""Shared-port ICE: one UDP socket and one ICE-TCP listener per bind address, for every call.

Every call's aioice `Connection` gets *virtual* `StunProtocol`s (`MuxStunProtocol`) instead of
sockets of its own (see `ServerIceConnection.gather_candidates` in `ice.py`). A `MuxSet` owns
the real sockets and routes each packet to the right call:

UDP (`_UdpEndpoint`, one `DatagramEndpoint` per bind address):
* on asyncio's selector loop, which hands a datagram protocol one datagram per loop iteration, each
  wake-up reads on from the socket while more are queued (up to `UDP_DRAIN_PER_WAKEUP`): every call's
  packets come in here, and one per iteration let a busy loop fall seconds behind until the kernel
  dropped (DTLS and SCTP with the media: setups stalled). uvloop reads in batches itself;
* first byte classified per RFC 7983: 0-3 STUN, 20-63 DTLS, 128-191 RTP/RTCP, anything else dropped;
* STUN Binding *request*: routed by ufrag (`USERNAME` up to ':'). The source address is learned
  (addr → call) only once MESSAGE-INTEGRITY verifies with that call's password, so a forged
  request never binds an address. An address already learned by another live call is never
  taken over. Unknown ufrags are dropped without a reply (no reflection/amplification);
* STUN responses: routed by the learned address, or by the transaction id of a request we sent to
  exactly that address (a check's answer may arrive before the peer's own first check);
* DTLS / SRTP from a learned address go straight to `Connection.data_received` (no STUN parse);
  from an unknown address they are dropped;
* the address table is bounded per call (LRU, `max_addrs_per_call`) and globally.

TCP (`_TcpStream`, RFC 6544 passive, RFC 4571 framing: 2-byte big-endian length + packet):
* the first frame must arrive within `first_frame_timeout_s` and be a STUN Binding request for a
  known ufrag with a valid MESSAGE-INTEGRITY, else the stream is closed; the stream is then
  attached to that call's TCP protocol, keyed by the peer address;
* writes are framed and dropped (like a full UDP socket) while the stream's write buffer is
  above `tcp_high_water`;
* losing the stream of the nominated pair closes the call's aioice `Connection` at once, which
  aiortc reports as ICE failure (instead of waiting ~30 s for consent to expire).

Detaching a call (its Connection closes) removes its ufrag, every learned address, its pending
transaction ids and closes its TCP streams.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aioice import Candidate, stun
from aioice.candidate import candidate_foundation
from aioice.ice import StunProtocol, get_host_addresses

if TYPE_CHECKING:  # pragma: no cover
    from aioice import Connection

log = logging.getLogger("openrealtime.ice")

UDP_PRIORITY = 2130706431  # host, local preference 65535, component 1 (as OpenAI / RFC 8445 recommend)
TCP_PRIORITY = 1671430143  # host tcptype passive, as OpenAI / pion / LiveKit advertise
SOCKET_BUFFER_BYTES = 4 << 20
UDP_WRITE_HIGH_WATER = 4 << 20
TCP_WRITE_HIGH_WATER = 256 << 10
FIRST_FRAME_TIMEOUT_S = 5.0
MAX_ADDRS_PER_CALL = 8
MAX_ADDRS_TOTAL = 1 << 16
MAX_TCP_STREAMS_PER_CALL = 8
MAX_PENDING_TCP_STREAMS = 1024
MAX_PENDING_TRANSACTIONS = 1 << 14
UDP_DRAIN_PER_WAKEUP = 64  # datagrams read per readiness event on asyncio's selector loop (fairness bound)
UDP_MAX_DATAGRAM = 65535
ADDRESS_TAKEOVER_IDLE_S = 0.5  # a call silent this long from an address yields it to a newer call

_BINDING_REQUEST = b"\x00\x01"
_MAGIC_COOKIE = b"\x21\x12\xa4\x42"


class MuxBindError(OSError):
    """A mux socket could not be bound; the message says how to fix it."""


@dataclass
class MuxStats:
    udp_rx: int = 0
    udp_dropped_unknown: int = 0  # non-STUN from an unknown address, or unknown ufrag
    udp_dropped_malformed: int = 0
    udp_dropped_bad_integrity: int = 0
    udp_dropped_class: int = 0  # RFC 7983 classes we never use (TURN channels, QUIC, ...)
    udp_dropped_table_full: int = 0
    udp_tx_dropped: int = 0
    addrs_learned: int = 0
    addrs_taken_over: int = 0  # an idle call's address claimed by a newer call (port reuse)
    tcp_accepted: int = 0
    tcp_rejected: int = 0  # bad / late first frame, limits
    tcp_tx_dropped: int = 0
    tcp_nominated_lost: int = 0


def _first_byte_class(b: int) -> str:
    """RFC 7983 §7 demultiplexing on the first byte."""
    if b <= 3:
        return "stun"
    if 20 <= b <= 63:
        return "dtls"
    if 128 <= b <= 191:
        return "rtp"
    return "other"


def _ufrag_of(message: stun.Message) -> str | None:
    username = message.attributes.get("USERNAME")
    if not isinstance(username, str):
        return None
    return username.partition(":")[0]


def _is_local_address(ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if addr.is_loopback or addr.is_unspecified:
        return True
    return ip in get_host_addresses(use_ipv4=addr.version == 4, use_ipv6=addr.version == 6)


def address_pairs(bind_ips: Sequence[str], advertise_ips: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """(bind address, advertised address) pairs.

    * no bind IPs: each advertised IP is bound where it is local, else the wildcard of its
      family (NAT 1:1, e.g. a cloud VM whose public IP is not on an interface);
    * one bind IP: every advertised IP is served by it;
    * as many bind IPs as advertised IPs: paired in order.
    """
    if not advertise_ips:
        raise ValueError("no advertised ICE address")
    if not bind_ips:
        pairs = []
        for ip in advertise_ips:
            wildcard = "::" if ipaddress.ip_address(ip).version == 6 else "0.0.0.0"
            pairs.append((ip if _is_local_address(ip) else wildcard, ip))
        return tuple(pairs)
    if len(bind_ips) == 1:
        return tuple((bind_ips[0], ip) for ip in advertise_ips)
    if len(bind_ips) == len(advertise_ips):
        return tuple(zip(bind_ips, advertise_ips))
    raise ValueError(
        f"--bind-ip given {len(bind_ips)} times for {len(advertise_ips)} --advertise-ip: pass one bind IP "
        "for all advertised IPs, or one per advertised IP (paired in order)"
    )


def _bind_error(exc: OSError, proto: str, ip: str, port: int) -> MuxBindError:
    flag = "--udp-port (OPENREALTIME_UDP_PORT)" if proto == "UDP" else "--tcp-port (OPENREALTIME_TCP_PORT)"
    if isinstance(exc, PermissionError):
        msg = (
            f"cannot listen on {proto} {ip}:{port} for ICE: permission denied (ports below 1024 need "
            f"privileges). Fix one of: pass a port >= 1024 with {flag}; or let Python bind low ports: "
            "sudo setcap 'cap_net_bind_service=+ep' $(readlink -f $(which python3)) (or sudo sysctl "
            f"net.ipv4.ip_unprivileged_port_start={port}); or forward {port} to a high port with your "
            "firewall and listen there"
        )
        if proto == "TCP":
            msg += "; or pass --tcp-port 0 to disable ICE-TCP"
    elif getattr(exc, "errno", None) in (98, 48):  # EADDRINUSE (Linux, macOS)
        msg = f"cannot listen on {proto} {ip}:{port} for ICE: the port is in use; pick another with {flag}"
    else:
        msg = f"cannot listen on {proto} {ip}:{port} for ICE: {exc}"
    err = MuxBindError(exc.errno, msg)
    return err


def _bound_udp_socket(bind_ip: str, port: int) -> socket.socket:
    """A non-blocking UDP socket bound to (bind_ip, port), as create_datagram_endpoint(local_addr=) makes it,
    but ours to read from (see `_UdpEndpoint.datagram_received`)."""
    family = socket.AF_INET6 if ipaddress.ip_address(bind_ip).version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((bind_ip, port))
    except OSError:
        sock.close()
        raise
    return sock


# ---- per-call virtual protocols ------------------------------------------------------------------


class MuxStunProtocol(StunProtocol):
    """aioice's StunProtocol without a socket: the mux feeds it, `transport` writes via the mux."""

    def __init__(self, receiver: "Connection", entry: "_CallEntry", kind: str, index: int) -> None:
        super().__init__(receiver)
        self.entry = entry
        self.kind = kind  # "udp" | "tcp"
        self.index = index  # endpoint / listener index in the MuxSet
        self.last_rx = 0.0  # monotonic time of the last packet delivered to this call

    def handle_stun(self, message: stun.Message, addr: tuple[str, int]) -> None:
        self.last_rx = time.monotonic()
        if message.message_class in (stun.Class.RESPONSE, stun.Class.ERROR):
            transaction = self.transactions.get(message.transaction_id)
            if transaction is not None:
                transaction.response_received(message, addr)
        elif message.message_class == stun.Class.REQUEST:
            self.receiver.request_received(message, addr, self)

    def handle_data(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        self.receiver.data_received(data, self.local_candidate.component)

    def datagram_received(self, data: bytes | str, addr: tuple[Any, ...]) -> None:
        # Not on the mux path (the mux calls handle_stun / handle_data); kept robust anyway.
        try:
            super().datagram_received(data, addr)
        except Exception:  # malformed attributes raise struct.error etc.
            pass


class _VirtualTransport:
    """The asyncio-transport surface aioice's StunProtocol uses, over a shared mux socket."""

    def __init__(self, mux: "MuxSet", bind_ip: str, port_of: Any, protocol: MuxStunProtocol) -> None:
        self._mux = mux
        self._bind_ip = bind_ip
        self._port_of = port_of  # the endpoint/listener; its port is known only once bound
        self._protocol = protocol
        self._closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return (self._bind_ip, self._port_of.port)
        return default

    def is_closing(self) -> bool:
        return self._closed

    def _release(self) -> None:
        """Per-kind cleanup before the protocol is detached."""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._release()
        self._mux._forget_protocol(self._protocol)
        self._protocol.connection_lost(None)

    def abort(self) -> None:
        self.close()


class _UdpVirtualTransport(_VirtualTransport):
    def __init__(self, mux: "MuxSet", endpoint: "_UdpEndpoint", protocol: MuxStunProtocol) -> None:
        super().__init__(mux, endpoint.bind_ip, endpoint, protocol)
        self._endpoint = endpoint

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._closed:
            return
        transport = self._endpoint.transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() > UDP_WRITE_HIGH_WATER:
            self._mux.stats.udp_tx_dropped += 1
            return
        # STUN starts with 0x00/0x01 (RFC 7983); SRTP (most packets) never needs the slice below
        if data and data[0] < 2 and data[:2] == _BINDING_REQUEST and len(data) >= 20:
            self._mux._remember_transaction(bytes(data[8:20]), self._protocol, addr)
        transport.sendto(data, addr)



class _TcpVirtualTransport(_VirtualTransport):
    def __init__(self, mux: "MuxSet", listener: "_TcpListener", protocol: MuxStunProtocol) -> None:
        super().__init__(mux, listener.bind_ip, listener, protocol)
        self._listener = listener
        self.streams: dict[tuple[str, int], _TcpStream] = {}

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        stream = self.streams.get(addr)
        if stream is None or self._closed:
            return
        stream.write(data)

    def _release(self) -> None:
        for stream in list(self.streams.values()):
            stream.close()
        self.streams.clear()


class _CallEntry:
    __slots__ = ("ufrag", "pwd", "conn", "udp", "tcp", "addrs", "streams")

    def __init__(self, ufrag: str, pwd: str, conn: "Connection") -> None:
        self.ufrag = ufrag
        self.pwd = pwd.encode("utf8")
        self.conn = conn
        self.udp: dict[int, MuxStunProtocol] = {}  # endpoint index → protocol
        self.tcp: dict[int, MuxStunProtocol] = {}  # listener index → protocol
        # learned UDP addresses, least recently confirmed first: (endpoint index, addr)
        self.addrs: OrderedDict[tuple[int, tuple[str, int]], None] = OrderedDict()
        self.streams: set[_TcpStream] = set()


# ---- UDP -----------------------------------------------------------------------------------------


class _UdpEndpoint(asyncio.DatagramProtocol):
    def __init__(self, mux: "MuxSet", index: int, bind_ip: str) -> None:
        self.mux = mux
        self.index = index
        self.bind_ip = bind_ip
        self.port = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.by_addr: dict[tuple[str, int], MuxStunProtocol] = {}
        self.drain_from: socket.socket | None = None  # the socket, where the loop reads one datagram per wake-up

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def error_received(self, exc: Exception) -> None:  # ICMP errors etc.: nothing to do
        pass

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._datagram(data, addr)
        sock = self.drain_from
        if sock is None:
            return
        for _ in range(UDP_DRAIN_PER_WAKEUP - 1):  # the rest of what is queued (see the module docstring)
            if self.transport is None or self.transport.is_closing():
                return
            try:
                data, addr = sock.recvfrom(UDP_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # as the transport would: an ICMP error for an earlier send, say
                self.error_received(exc)
                return
            self._datagram(data, addr)

    def _datagram(self, data: bytes, addr: tuple[Any, ...]) -> None:
        stats = self.mux.stats
        stats.udp_rx += 1
        if len(addr) > 2:
            addr = (addr[0], addr[1])
        if not data:
            return
        first = data[0]
        if first > 3:
            # hot path: DTLS / SRTP / SRTCP from a learned address
            protocol = self.by_addr.get(addr)
            if protocol is None:
                stats.udp_dropped_unknown += 1
            elif (20 <= first <= 63) or (128 <= first <= 191):
                protocol.handle_data(data)
            else:
                stats.udp_dropped_class += 1
            return
        try:
            self._stun(data, addr)
        except Exception:  # a bug or an odd packet must never take the shared socket down
            stats.udp_dropped_malformed += 1
            log.debug("udp mux: dropped a STUN packet from %s", addr, exc_info=True)

    def _stun(self, data: bytes, addr: tuple[str, int]) -> None:
        mux = self.mux
        stats = mux.stats
        if len(data) < 20 or data[4:8] != _MAGIC_COOKIE:
            stats.udp_dropped_malformed += 1
            return
        try:
            message = stun.parse_message(data)
        except Exception:  # ValueError, struct.error, UnicodeDecodeError ...
            stats.udp_dropped_malformed += 1
            return
        if message.message_class == stun.Class.REQUEST:
            if message.message_method != stun.Method.BINDING:
                stats.udp_dropped_class += 1
                return
            ufrag = _ufrag_of(message)
            entry = mux._calls.get(ufrag) if ufrag else None
            protocol = entry.udp.get(self.index) if entry is not None else None
            if protocol is None:
                stats.udp_dropped_unknown += 1
                return
            if not mux._confirm_addr(entry, self, addr, protocol, message):
                return
            protocol.handle_stun(message, addr)
        elif message.message_class in (stun.Class.RESPONSE, stun.Class.ERROR):
            protocol = self.by_addr.get(addr) or mux._transaction_owner(message.transaction_id, addr)
            if protocol is None:
                stats.udp_dropped_unknown += 1
                return
            protocol.handle_stun(message, addr)
        else:  # indications: aioice ignores them anyway
            stats.udp_dropped_class += 1


# ---- TCP -----------------------------------------------------------------------------------------


class _TcpListener:
    def __init__(self, index: int, bind_ip: str) -> None:
        self.index = index
        self.bind_ip = bind_ip
        self.port = 0
        self.server: asyncio.AbstractServer | None = None


class _TcpStream(asyncio.Protocol):
    def __init__(self, mux: "MuxSet", listener: _TcpListener) -> None:
        self.mux = mux
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.protocol: MuxStunProtocol | None = None
        self._buf = bytearray()
        self._timer: asyncio.TimerHandle | None = None
        self._pending = False
        self._closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        mux = self.mux
        peer = transport.get_extra_info("peername") or ("", 0)
        self.peer = (peer[0], peer[1])
        if mux._pending_streams >= MAX_PENDING_TCP_STREAMS or mux._closing:
            mux.stats.tcp_rejected += 1
            self._closed = True
            transport.abort()
            return
        mux._pending_streams += 1
        self._pending = True
        mux._streams.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self._timer = asyncio.get_running_loop().call_later(mux.first_frame_timeout_s, self._first_frame_timeout)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        buf = self._buf
        buf += data
        try:
            while len(buf) >= 2:
                length = (buf[0] << 8) | buf[1]
                if len(buf) < 2 + length:
                    break
                frame = bytes(buf[2 : 2 + length])
                del buf[: 2 + length]
                if not length:
                    continue
                if self.protocol is None:
                    if not self._attach(frame):
                        self.mux.stats.tcp_rejected += 1
                        self.close()
                        return
                else:
                    self._deliver(frame)
                if self._closed:
                    return
        except Exception:
            log.debug("tcp mux: error on a stream from %s", self.peer, exc_info=True)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._release()
        protocol = self.protocol
        if protocol is None:
            return
        self.protocol = None
        transport = protocol.transport
        if isinstance(transport, _TcpVirtualTransport) and transport.streams.get(self.peer) is self:
            del transport.streams[self.peer]
        protocol.entry.streams.discard(self)
        conn = protocol.receiver
        for pair in conn.nominated_pairs():
            if pair.protocol is protocol and pair.remote_addr == self.peer:
                self.mux.stats.tcp_nominated_lost += 1
                log.info("ice-tcp: the nominated stream from %s was lost; closing ICE", self.peer)
                asyncio.ensure_future(conn.close())
                break

    # own
    def _release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            self._pending = False
            self.mux._pending_streams -= 1
        self.mux._streams.discard(self)

    def _first_frame_timeout(self) -> None:
        self._timer = None
        if self.protocol is None and not self._closed:
            self.mux.stats.tcp_rejected += 1
            self.close()

    def _attach(self, frame: bytes) -> bool:
        if frame[0] > 3 or len(frame) < 20 or frame[4:8] != _MAGIC_COOKIE:
            return False
        try:
            message = stun.parse_message(frame)
        except Exception:
            return False
        if message.message_class != stun.Class.REQUEST or message.message_method != stun.Method.BINDING:
            return False
        ufrag = _ufrag_of(message)
        entry = self.mux._calls.get(ufrag) if ufrag else None
        protocol = entry.tcp.get(self.listener.index) if entry is not None else None
        if protocol is None or not (entry.conn.valid_username(message.attributes["USERNAME"])
                                    and message.check_message_integrity(entry.pwd)):
            return False
        transport = protocol.transport
        if not isinstance(transport, _TcpVirtualTransport) or transport.is_closing():
            return False
        if len(entry.streams) >= MAX_TCP_STREAMS_PER_CALL:
            return False
        old = transport.streams.get(self.peer)
        if old is not None and old is not self:
            old.close()
        transport.streams[self.peer] = self
        entry.streams.add(self)
        self.protocol = protocol
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            self._pending = False
            self.mux._pending_streams -= 1
        self.mux.stats.tcp_accepted += 1
        protocol.handle_stun(message, self.peer)
        return True

    def _deliver(self, frame: bytes) -> None:
        protocol = self.protocol
        if protocol is None:
            return
        kind = _first_byte_class(frame[0])
        if kind == "stun":
            try:
                message = stun.parse_message(frame)
            except Exception:
                return
            protocol.handle_stun(message, self.peer)
        elif kind in ("dtls", "rtp"):
            protocol.handle_data(frame)

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or self._closed or transport.is_closing():
            return
        if len(data) > 0xFFFF:
            return
        if transport.get_write_buffer_size() > self.mux.tcp_high_water:
            self.mux.stats.tcp_tx_dropped += 1
            return
        transport.write(len(data).to_bytes(2, "big") + data)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self._closed = True
        self._release()


# ---- the mux set ---------------------------------------------------------------------------------


class MuxSet:
    """The shared ICE sockets of one server process, and the ufrag → call table.

    `udp_port` 0 picks a free port (tests); `tcp_port` None disables ICE-TCP, 0 picks a free port.
    `advertise_udp_port` / `advertise_tcp_port` put another port in the candidates (a firewall
    forwarding e.g. 443 to the port we listen on); by default the bound port.
    """

    def __init__(
        self,
        addresses: Iterable[tuple[str, str]],
        *,
        udp_port: int = 3478,
        tcp_port: int | None = 443,
        advertise_udp_port: int | None = None,
        advertise_tcp_port: int | None = None,
        first_frame_timeout_s: float = FIRST_FRAME_TIMEOUT_S,
        max_addrs_per_call: int = MAX_ADDRS_PER_CALL,
        max_addrs_total: int = MAX_ADDRS_TOTAL,
        tcp_high_water: int = TCP_WRITE_HIGH_WATER,
    ) -> None:
        self.addresses = tuple(addresses)
        if not self.addresses:
            raise ValueError("MuxSet needs at least one (bind, advertise) address pair")
        for port in (udp_port, tcp_port, advertise_udp_port, advertise_tcp_port):
            if port is not None and not 0 <= port <= 65535:
                raise ValueError(f"invalid port {port}")
        self.bind_ips: list[str] = list(dict.fromkeys(bind for bind, _ in self.addresses))
        self.udp_port_requested = udp_port
        self.tcp_port_requested = tcp_port
        self.advertise_udp_port = advertise_udp_port
        self.advertise_tcp_port = advertise_tcp_port
        self.first_frame_timeout_s = first_frame_timeout_s
        self.max_addrs_per_call = max_addrs_per_call
        self.max_addrs_total = max_addrs_total
        self.tcp_high_water = tcp_high_water
        self.stats = MuxStats()
        self.udp: list[_UdpEndpoint] = []
        self.tcp: list[_TcpListener] = []
        self._calls: dict[str, _CallEntry] = {}
        self._n_addrs = 0
        self._transactions: OrderedDict[bytes, tuple[MuxStunProtocol, tuple[str, int]]] = OrderedDict()
        self._streams: set[_TcpStream] = set()  # every open ICE-TCP stream
        self._pending_streams = 0
        self._started = False
        self._closing = False

    # lifecycle
    @property
    def started(self) -> bool:
        return self._started

    @property
    def tcp_enabled(self) -> bool:
        return self.tcp_port_requested is not None

    @property
    def udp_port(self) -> int:
        """The bound UDP port (of the first bind address)."""
        return self.udp[0].port if self.udp else self.udp_port_requested

    @property
    def tcp_port(self) -> int | None:
        if not self.tcp_enabled:
            return None
        return self.tcp[0].port if self.tcp else self.tcp_port_requested

    async def start(self) -> None:
        if self._started:
            return
        loop = asyncio.get_running_loop()
        self._closing = False
        try:
            for index, bind_ip in enumerate(self.bind_ips):
                endpoint = _UdpEndpoint(self, index, bind_ip)
                try:
                    udp_sock = _bound_udp_socket(bind_ip, self.udp_port_requested)
                except OSError as exc:
                    raise _bind_error(exc, "UDP", bind_ip, self.udp_port_requested) from exc
                transport, _ = await loop.create_datagram_endpoint(lambda ep=endpoint: ep, sock=udp_sock)
                if isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop):
                    endpoint.drain_from = udp_sock
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                        try:
                            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER_BYTES)
                        except OSError:
                            pass
                    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < SOCKET_BUFFER_BYTES:
                        log.info("ice mux: the UDP receive buffer is capped below %d bytes; raise "
                                 "net.core.rmem_max / wmem_max for many concurrent calls", SOCKET_BUFFER_BYTES)
                endpoint.port = transport.get_extra_info("sockname")[1]
                self.udp.append(endpoint)
            if self.tcp_port_requested is not None:
                for index, bind_ip in enumerate(self.bind_ips):
                    listener = _TcpListener(index, bind_ip)
                    try:
                        listener.server = await loop.create_server(
                            lambda li=listener: _TcpStream(self, li), host=bind_ip,
                            port=self.tcp_port_requested, reuse_address=True, backlog=1024,
                        )
                    except OSError as exc:
                        raise _bind_error(exc, "TCP", bind_ip, self.tcp_port_requested) from exc
                    listener.port = listener.server.sockets[0].getsockname()[1]
                    self.tcp.append(listener)
        except BaseException:
            await self.close()
            raise
        self._started = True
        log.info(
            "ice mux: udp %s, tcp %s",
            ", ".join(f"{ep.bind_ip}:{ep.port}" for ep in self.udp),
            ", ".join(f"{li.bind_ip}:{li.port}" for li in self.tcp) or "off",
        )

    async def close(self) -> None:
        self._closing = True
        for entry in list(self._calls.values()):
            self._close_entry_protocols(entry)
        self._calls.clear()
        for stream in list(self._streams):
            stream.close()
        for endpoint in self.udp:
            if endpoint.transport is not None:
                endpoint.transport.close()
            endpoint.by_addr.clear()
        for listener in self.tcp:
            if listener.server is not None:
                listener.server.close()
        for listener in self.tcp:
            if listener.server is not None:
                try:
                    await asyncio.wait_for(listener.server.wait_closed(), 2)
                except (asyncio.TimeoutError, Exception):
                    pass
        self.udp.clear()
        self.tcp.clear()
        self._transactions.clear()
        self._n_addrs = 0
        self._started = False

    # calls
    def has_ufrag(self, ufrag: str) -> bool:
        return ufrag in self._calls

    @property
    def calls(self) -> int:
        return len(self._calls)

    def attach(self, conn: "Connection", component: int = 1) -> tuple[list[MuxStunProtocol], list[Candidate]]:
        """Register a call: its virtual protocols and the candidates to advertise (UDP first)."""
        if not self._started or self._closing:
            raise ConnectionError("the ICE mux is not running")
        ufrag = conn.local_username
        if ufrag in self._calls:
            raise ConnectionError(f"ICE ufrag {ufrag!r} is already in use")
        entry = _CallEntry(ufrag, conn.local_password, conn)
        protocols: list[MuxStunProtocol] = []
        candidates: list[Candidate] = []
        for bind_ip, advertise_ip in self.addresses:
            index = self.bind_ips.index(bind_ip)
            endpoint = self.udp[index]
            udp_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", advertise_ip),
                component=component,
                transport="udp",
                priority=UDP_PRIORITY,
                host=advertise_ip,
                port=self.advertise_udp_port or endpoint.port,
                type="host",
            )
            candidates.append(udp_candidate)
            if index not in entry.udp:  # one protocol per socket; more advertised IPs share it
                protocol = MuxStunProtocol(conn, entry, "udp", index)
                protocol.connection_made(_UdpVirtualTransport(self, endpoint, protocol))  # type: ignore[arg-type]
                protocol.local_candidate = udp_candidate
                entry.udp[index] = protocol
                protocols.append(protocol)
            if self.tcp:
                listener = self.tcp[index]
                tcp_candidate = Candidate(
                    foundation=candidate_foundation("host", "tcp", advertise_ip),
                    component=component,
                    transport="tcp",
                    priority=TCP_PRIORITY,
                    host=advertise_ip,
                    port=self.advertise_tcp_port or listener.port,
                    type="host",
                    tcptype="passive",
                )
                candidates.append(tcp_candidate)
                if index not in entry.tcp:
                    protocol = MuxStunProtocol(conn, entry, "tcp", index)
                    protocol.connection_made(_TcpVirtualTransport(self, listener, protocol))  # type: ignore[arg-type]
                    protocol.local_candidate = tcp_candidate
                    entry.tcp[index] = protocol
                    protocols.append(protocol)
        self._calls[ufrag] = entry
        return protocols, candidates

    def detach(self, conn: "Connection") -> None:
        """Forget a call: its ufrag, learned addresses, transactions and TCP streams."""
        entry = self._calls.get(conn.local_username)
        if entry is None or entry.conn is not conn:
            return
        self._close_entry_protocols(entry)
        self._calls.pop(entry.ufrag, None)

    def _close_entry_protocols(self, entry: _CallEntry) -> None:
        for protocol in [*entry.udp.values(), *entry.tcp.values()]:
            transport = protocol.transport
            if transport is not None:
                transport.close()  # → _forget_protocol + connection_lost

    def _forget_protocol(self, protocol: MuxStunProtocol) -> None:
        entry = protocol.entry
        if protocol.kind == "udp":
            endpoint = self.udp[protocol.index] if protocol.index < len(self.udp) else None
            for key in [k for k in entry.addrs if k[0] == protocol.index]:
                del entry.addrs[key]
                self._n_addrs -= 1
                if endpoint is not None and endpoint.by_addr.get(key[1]) is protocol:
                    del endpoint.by_addr[key[1]]
            if entry.udp.get(protocol.index) is protocol:
                del entry.udp[protocol.index]
        else:
            transport = protocol.transport
            if isinstance(transport, _TcpVirtualTransport):
                for stream in list(transport.streams.values()):
                    stream.close()
                transport.streams.clear()
            if entry.tcp.get(protocol.index) is protocol:
                del entry.tcp[protocol.index]
        for txid in [t for t, (p, _) in self._transactions.items() if p is protocol]:
            del self._transactions[txid]
        if not entry.udp and not entry.tcp and self._calls.get(entry.ufrag) is entry:
            del self._calls[entry.ufrag]

    # address learning
    def _confirm_addr(self, entry: _CallEntry, endpoint: _UdpEndpoint, addr: tuple[str, int],
                      protocol: MuxStunProtocol, message: stun.Message) -> bool:
        """A Binding request for `entry` arrived from `addr`: may it be delivered (and addr learned)?"""
        key = (endpoint.index, addr)
        owner = endpoint.by_addr.get(addr)
        if owner is protocol:
            entry.addrs.move_to_end(key)
            return True
        stats = self.stats
        # Learn only what aioice itself would accept (USERNAME and MESSAGE-INTEGRITY with the call's
        # password): a forged check never binds an address, and gets no reply.
        if not (entry.conn.valid_username(message.attributes["USERNAME"])
                and message.check_message_integrity(entry.pwd)):
            stats.udp_dropped_bad_integrity += 1
            return False
        if owner is not None:
            # Owned by another call. A live call's address is never taken over (a spoofed source
            # could hijack it); but once that call has gone quiet the address is free to move: the
            # OS (or a NAT) reuses ports, and a new client on an old 5-tuple must not stall.
            if time.monotonic() - getattr(owner, "last_rx", 0.0) < ADDRESS_TAKEOVER_IDLE_S:
                stats.udp_dropped_unknown += 1
                return False
            self._release_addr(endpoint, addr, owner)
            stats.addrs_taken_over += 1
        if len(entry.addrs) >= self.max_addrs_per_call:
            (old_index, old_addr), _ = entry.addrs.popitem(last=False)
            self._n_addrs -= 1
            old_endpoint = self.udp[old_index]
            if old_endpoint.by_addr.get(old_addr) is entry.udp.get(old_index):
                del old_endpoint.by_addr[old_addr]
        if self._n_addrs >= self.max_addrs_total:
            stats.udp_dropped_table_full += 1
            return False
        entry.addrs[key] = None
        endpoint.by_addr[addr] = protocol
        self._n_addrs += 1
        stats.addrs_learned += 1
        return True

    def _release_addr(self, endpoint: "_UdpEndpoint", addr: tuple[str, int], owner: MuxStunProtocol) -> None:
        del endpoint.by_addr[addr]
        if owner.entry.addrs.pop((endpoint.index, addr), "missing") != "missing":
            self._n_addrs -= 1

    def learned_addresses(self, conn: "Connection") -> list[tuple[str, int]]:
        entry = self._calls.get(conn.local_username)
        return [addr for _, addr in entry.addrs] if entry is not None else []

    @property
    def address_count(self) -> int:
        return self._n_addrs

    # STUN transactions we started (answers may come from a not-yet-learned address)
    def _remember_transaction(self, txid: bytes, protocol: MuxStunProtocol, addr: tuple[str, int]) -> None:
        transactions = self._transactions
        if txid in transactions:
            return
        transactions[txid] = (protocol, addr)
        if len(transactions) > MAX_PENDING_TRANSACTIONS:
            transactions.popitem(last=False)

    def _transaction_owner(self, txid: bytes, addr: tuple[str, int]) -> MuxStunProtocol | None:
        found = self._transactions.get(txid)
        if found is None or found[1] != addr:
            return None
        protocol = found[0]
        if txid not in protocol.transactions:  # finished: aioice no longer waits for it
            del self._transactions[txid]
            return None
        return protocol
