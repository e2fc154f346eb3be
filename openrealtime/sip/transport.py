"""SIP over UDP, TCP and TLS (RFC 3261 §18): listeners, framing, and where a message is sent.

Every message received is handed to one callback with the `Peer` it came from; a message that does
not parse goes to `on_malformed` (the server may still answer 400 to a request it could half read),
and nothing a peer sends can raise out of here. A stream connection is framed by Content-Length
(required there); double-CRLF keep-alives get a CRLF back (RFC 5626 §3.5.1). Responses go back on the
connection or source address the request came from (RFC 3581 symmetric response routing); requests
the server sends in a dialog reuse the caller's connection when it is still open.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from .message import MAX_MESSAGE_BYTES, SipMessage, SipParseError, SipRequest, SipResponse, canonical, parse_message

log = logging.getLogger("openrealtime.sip")

from ..limits import SIP_MAX_CONNECTIONS as MAX_STREAM_CONNECTIONS
from ..limits import SIP_STREAM_IDLE_S as STREAM_IDLE_S  # a silent connection is closed (a trunk reconnects)
_KEEPALIVE = b"\r\n\r\n"


@dataclass(frozen=True)
class Peer:
    transport: str  # "UDP" | "TCP" | "TLS"
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        return self.transport != "UDP"


MessageHandler = Callable[[SipRequest | SipResponse, Peer], None]
MalformedHandler = Callable[[SipParseError, Peer], None]


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: "SipTransports") -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        if not data.strip(b"\r\n\x00 "):
            return  # a keep-alive
        self.owner.deliver(data, Peer("UDP", addr[0], addr[1]), stream=False)

    def error_received(self, exc: Exception) -> None:
        log.debug("sip udp error: %s", exc)


class SipTransports:
    """The listening sockets and the stream connections of one SIP server."""

    def __init__(self, on_message: MessageHandler, on_malformed: MalformedHandler | None = None) -> None:
        self.on_message = on_message
        self.on_malformed = on_malformed
        self._udp_transport: asyncio.DatagramTransport | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self._streams: dict[tuple[str, str, int], asyncio.StreamWriter] = {}
        self._tasks: set[asyncio.Task] = set()
        self.ports: dict[str, int] = {}
        self.malformed = 0

    async def start(self, host: str, port: int, *, tls_port: int | None = None,
                    tls_context: ssl.SSLContext | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._udp_transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(host, port))
        bound = self._udp_transport.get_extra_info("sockname")[1]
        self.ports["UDP"] = bound
        tcp = await asyncio.start_server(lambda r, w: self._accepted(r, w, "TCP"), host, bound,
                                         limit=MAX_MESSAGE_BYTES)
        self._servers.append(tcp)
        self.ports["TCP"] = tcp.sockets[0].getsockname()[1]
        if tls_context is not None and tls_port is not None:
            tls = await asyncio.start_server(lambda r, w: self._accepted(r, w, "TLS"), host, tls_port,
                                             ssl=tls_context, limit=MAX_MESSAGE_BYTES)
            self._servers.append(tls)
            self.ports["TLS"] = tls.sockets[0].getsockname()[1]

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._streams.values()):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._udp_transport is not None:
            self._udp_transport.close()
        for server in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 2)
            except (asyncio.TimeoutError, Exception):
                pass

    # ---- receiving ------------------------------------------------------------------------------
    def deliver(self, data: bytes, peer: Peer, *, stream: bool) -> None:
        try:
            message = parse_message(data, stream=stream)
        except SipParseError as exc:
            self.malformed += 1
            log.info("sip malformed message from %s:%s/%s: %s", peer.host, peer.port, peer.transport, exc)
            if self.on_malformed is not None:
                self._safely(self.on_malformed, exc, peer)
            return
        self._safely(self.on_message, message, peer)

    @staticmethod
    def _safely(fn, *args) -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - one bad message never stops the listener
            log.exception("sip message handler failed")

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, kind: str) -> None:
        if len(self._streams) >= MAX_STREAM_CONNECTIONS:
            writer.close()
            return
        host, port = writer.get_extra_info("peername")[:2]
        peer = Peer(kind, host, port)
        self._streams[(kind, host, port)] = writer
        self._spawn(self._read_stream(reader, writer, peer))

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _read_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer) -> None:
        try:
            while True:
                data = await read_stream_message(reader, writer)
                if data is None:
                    return
                self.deliver(data, peer, stream=True)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, asyncio.TimeoutError,
                ssl.SSLError, SipParseError) as exc:
            log.debug("sip %s connection from %s:%s ends: %s", peer.transport, peer.host, peer.port, exc)
        finally:
            if self._streams.get((peer.transport, peer.host, peer.port)) is writer:
                del self._streams[(peer.transport, peer.host, peer.port)]
            writer.close()

    # ---- sending --------------------------------------------------------------------------------
    def send(self, message: SipMessage, peer: Peer) -> None:
        data = message.encode()
        if peer.transport == "UDP":
            if self._udp_transport is not None:
                self._udp_transport.sendto(data, (peer.host, peer.port))
            return
        writer = self._streams.get((peer.transport, peer.host, peer.port))
        if writer is not None and not writer.is_closing():
            writer.write(data)
            return
        self._spawn(self._connect_and_send(data, peer))

    async def _connect_and_send(self, data: bytes, peer: Peer) -> None:
        context = ssl.create_default_context() if peer.transport == "TLS" else None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(peer.host, peer.port, ssl=context, limit=MAX_MESSAGE_BYTES), 5)
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
            log.info("sip could not connect to %s:%s/%s: %s", peer.host, peer.port, peer.transport, exc)
            return
        self._streams[(peer.transport, peer.host, peer.port)] = writer
        writer.write(data)
        await self._read_stream(reader, writer, peer)

    def local_port(self, transport: str) -> int:
        return self.ports.get(transport) or self.ports.get("UDP", 0)


async def read_stream_message(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes | None:
    """The next message on a stream (None at a clean end); keep-alives are answered and skipped."""
    while True:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STREAM_IDLE_S)
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                raise
            return None
        if head == _KEEPALIVE or not head.strip():
            writer.write(b"\r\n")  # pong
            continue
        head = head.lstrip(b"\r\n")
        length = _content_length(head)
        if len(head) + length > MAX_MESSAGE_BYTES:
            raise SipParseError("message over the size limit")
        body = await asyncio.wait_for(reader.readexactly(length), 30) if length else b""
        return head + body


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon and canonical(name.strip().decode("latin-1")) == "content-length":
            value = value.strip()
            if not value.isdigit() or len(value) > 6:
                raise SipParseError("malformed Content-Length")
            return int(value)
    raise SipParseError("no Content-Length on a stream transport")
