"""SIP transactions (RFC 3261 §17, with RFC 6026's Accepted state): server transactions for every
request the server receives, and non-INVITE client transactions for the ones it sends (BYE, REFER).

Retransmissions are the transaction layer's business: a repeated request gets the last response again
and never reaches the server's core; over UDP a final non-2xx answer to an INVITE is repeated on
Timer G until the ACK (or Timer H), a request we send is repeated on Timer E until an answer (or
Timer F: it failed). Timers run on the event loop (`call_later`); T1/T2/T4 are passed in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from .message import SipMessage, SipParseError, SipRequest, SipResponse, parse_name_addr
from .transport import Peer

log = logging.getLogger("openrealtime.sip")

MAGIC_COOKIE = "z9hG4bK"


@dataclass(frozen=True)
class Timers:
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def timeout(self) -> float:
        """64·T1: Timers B, F, H and J."""
        return 64 * self.t1


Send = Callable[[SipMessage, Peer], None]


def request_key(request: SipRequest, method: str | None = None) -> tuple:
    """What identifies a request's server transaction (RFC 3261 §17.2.3; the RFC 2543 fallback without
    the magic cookie). `method`: the INVITE an ACK or CANCEL refers to."""
    via = request.top_via()
    method = method or request.method
    if method == "ACK":
        method = "INVITE"
    if via.branch.startswith(MAGIC_COOKIE):
        return (via.branch, via.sent_by.lower(), method)
    try:
        from_tag = parse_name_addr(request.headers.get("from") or "").tag
    except SipParseError:
        from_tag = ""
    return (request.call_id, from_tag, request.cseq[0], via.sent_by.lower(), method)


class ServerTransaction:
    def __init__(self, layer: "TransactionLayer", key: tuple, request: SipRequest, peer: Peer) -> None:
        self.layer = layer
        self.key = key
        self.request = request
        self.peer = peer
        self.invite = request.method == "INVITE"
        self.state = "proceeding" if self.invite else "trying"
        self.last_response: SipResponse | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._interval = layer.timers.t1

    @property
    def final(self) -> bool:
        return self.last_response is not None and self.last_response.status >= 200

    def respond(self, response: SipResponse) -> None:
        if self.state in ("completed", "confirmed", "terminated") or (self.state == "accepted"
                                                                      and response.status < 200):
            return  # a final answer was given already
        self.last_response = response
        self.layer.send(response, self.peer)
        status = response.status
        if status < 200:
            if not self.invite:
                self.state = "proceeding"
            return
        timers = self.layer.timers
        if self.invite and status < 300:
            # RFC 6026: absorb retransmitted INVITEs for 64·T1; the core repeats the 2xx until the ACK
            self.state = "accepted"
            self._later(timers.timeout, self.terminate)
        elif self.invite:
            self.state = "completed"
            if not self.peer.reliable:
                self._later(self._interval, self._timer_g)
            self._later(timers.timeout, self._timer_h)
        else:
            self.state = "completed"
            self._later(0 if self.peer.reliable else timers.timeout, self.terminate)

    def retransmitted(self) -> None:
        """The same request again: repeat the last answer (none yet: nothing)."""
        if self.last_response is not None and self.state in ("proceeding", "trying", "completed"):
            self.layer.send(self.last_response, self.peer)

    def ack(self) -> None:
        if self.state == "completed":
            self.state = "confirmed"
            self._cancel()
            self._later(0 if self.peer.reliable else self.layer.timers.t4, self.terminate)

    def _timer_g(self) -> None:
        if self.state != "completed" or self.last_response is None:
            return
        self.layer.send(self.last_response, self.peer)
        self._interval = min(2 * self._interval, self.layer.timers.t2)
        self._later(self._interval, self._timer_g)

    def _timer_h(self) -> None:
        if self.state == "completed":
            log.info("sip no ACK for %s %s from %s", self.last_response.status if self.last_response else "?",
                     self.request.method, self.peer.host)
            self.terminate()

    def _later(self, delay: float, fn: Callable[[], None]) -> None:
        self._timers.append(asyncio.get_running_loop().call_later(delay, fn))

    def _cancel(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def terminate(self) -> None:
        self._cancel()
        self.state = "terminated"
        self.layer.server.pop(self.key, None)


class ClientTransaction:
    """A non-INVITE request we send; `result` resolves to its final response, or None on Timer F."""

    def __init__(self, layer: "TransactionLayer", request: SipRequest, peer: Peer) -> None:
        self.layer = layer
        self.request = request
        self.peer = peer
        self.key = (request.top_via().branch, request.method)
        self.result: asyncio.Future[SipResponse | None] = asyncio.get_running_loop().create_future()
        self._interval = layer.timers.t1
        self._timers: list[asyncio.TimerHandle] = []
        self.state = "trying"

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.layer.send(self.request, self.peer)
        if not self.peer.reliable:
            self._timers.append(loop.call_later(self._interval, self._timer_e))
        self._timers.append(loop.call_later(self.layer.timers.timeout, self._timer_f))

    def _timer_e(self) -> None:
        if self.state not in ("trying", "proceeding"):
            return
        self.layer.send(self.request, self.peer)
        self._interval = self.layer.timers.t2 if self.state == "proceeding" else min(2 * self._interval,
                                                                                    self.layer.timers.t2)
        self._timers.append(asyncio.get_running_loop().call_later(self._interval, self._timer_e))

    def _timer_f(self) -> None:
        if self.state in ("trying", "proceeding"):
            log.info("sip %s to %s:%s timed out", self.request.method, self.peer.host, self.peer.port)
            self._finish(None)

    def received(self, response: SipResponse) -> None:
        if self.state not in ("trying", "proceeding"):
            return  # a retransmitted final response: absorbed (Timer K)
        if response.status < 200:
            self.state = "proceeding"
            return
        self._finish(response)

    def _finish(self, response: SipResponse | None) -> None:
        self.state = "completed"
        for timer in self._timers:
            timer.cancel()
        if not self.result.done():
            self.result.set_result(response)
        linger = 0 if self.peer.reliable else self.layer.timers.t4  # Timer K
        asyncio.get_running_loop().call_later(linger, self.layer.client.pop, self.key, None)


class TransactionLayer:
    def __init__(self, send: Send, timers: Timers | None = None) -> None:
        self.send = send
        self.timers = timers or Timers()
        self.server: dict[tuple, ServerTransaction] = {}
        self.client: dict[tuple, ClientTransaction] = {}

    def receive_request(self, request: SipRequest, peer: Peer) -> ServerTransaction | None:
        """The request's new transaction for the core, or None when it was a retransmission (answered here).
        ACKs go to `absorb_ack` instead: they have no transaction of their own."""
        key = request_key(request)
        existing = self.server.get(key)
        if existing is not None:
            existing.retransmitted()
            return None
        transaction = ServerTransaction(self, key, request, peer)
        self.server[key] = transaction
        return transaction

    def absorb_ack(self, ack: SipRequest) -> bool:
        """Whether this ACK belonged to a non-2xx answer (handled here); False: the ACK of a 2xx, for the core."""
        existing = self.server.get(request_key(ack))
        if existing is not None and existing.state in ("completed", "confirmed"):
            existing.ack()
            return True
        return False

    def invite_of(self, cancel: SipRequest) -> ServerTransaction | None:
        """The INVITE transaction a CANCEL cancels (same branch and sent-by)."""
        return self.server.get(request_key(cancel, "INVITE"))

    def receive_response(self, response: SipResponse) -> bool:
        try:
            key = (response.top_via().branch, response.cseq[1])
        except SipParseError:
            return False
        transaction = self.client.get(key)
        if transaction is None:
            return False
        transaction.received(response)
        return True

    def request(self, request: SipRequest, peer: Peer) -> ClientTransaction:
        transaction = ClientTransaction(self, request, peer)
        self.client[transaction.key] = transaction
        transaction.start()
        return transaction

    def close(self) -> None:
        for transaction in list(self.server.values()):
            transaction.terminate()
        for transaction in list(self.client.values()):
            if not transaction.result.done():
                transaction.result.set_result(None)
            for timer in transaction._timers:
                timer.cancel()
        self.client.clear()
