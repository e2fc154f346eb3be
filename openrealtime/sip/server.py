"""The SIP user agent server: OpenAI's incoming-call flow on RFC 3261 signalling.

INVITE → `100 Trying`, `180 Ringing` and the signed `realtime.call.incoming` webhook (retried while the
call rings) → the app decides through `accept` / `reject` (api/sip_calls.py) or the ring timeout
answers 603. `accept` binds the RTP leg, answers `200 OK` with the SDP answer (repeated until the ACK,
RFC 3261 §13.3.1.4), registers the call beside WebRTC ones and starts its session. In the call:
re-INVITE / UPDATE (hold, resume, new address, session refresh), BYE either way, INFO key presses,
REFER with its NOTIFY/sipfrag progress (`refer`), RFC 4028 session timers when the caller offers
them. CANCEL → 487. OPTIONS → 200. Everything the network sends is parsed strictly (message.py) and a
bad request from one peer affects nothing else.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .. import ids
from ..observability.logs import set_call_id
from ..protocol.errors import ProtocolError
from .call import SipCall, SipSessionTransport
from .dialog import Dialog, new_tag
from .digest import DigestAuth
from .dtmf import info_key
from .message import SipParseError, SipRequest, SipResponse, build_response, parse_name_addr, parse_via, split_list
from .sdp import (MediaPlan, Negotiated, Origin, SdpError, SessionDescription, awaiting_answer, build_offer,
                  negotiate)
from .transactions import ServerTransaction, Timers, TransactionLayer
from .transport import Peer, SipTransports
from .webhook import WebhookSender, incoming_call_event

log = logging.getLogger("openrealtime.sip")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REFER, NOTIFY"
SUPPORTED = "timer, replaces"
MIN_SE = 90  # RFC 4028 minimum session interval
ENDED_MEMORY = 1000  # ended call ids remembered, so a late control request gets 404 rather than a guess
REQUIRED_HEADERS = ("via", "from", "to", "call-id", "cseq")


@dataclass
class SipSettings:
    host: str  # where the SIP and RTP sockets bind
    port: int  # UDP and TCP
    advertise_ip: str  # in Via, Contact and SDP
    tls_port: int | None = None
    tls_context: ssl.SSLContext | None = None
    ring_timeout_s: float = 30.0
    ring_timeout_status: int = 603
    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()  # empty: any source
    max_calls: int = 64
    max_duration_s: float = 3600.0
    auth: DigestAuth | None = None  # digest authentication of new INVITEs (--sip-auth); None: off
    api: str = "realtime"  # "live": calls are Live sessions (live_ ids, the live.transport.incoming webhook)
    timers: Timers = field(default_factory=Timers)


class CallControlError(Exception):
    """A control request that cannot be done: the HTTP status and OpenAI error fields to answer."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


EngineMaker = Callable[[SipSessionTransport, MediaPlan], Any]  # -> SessionEngine


@dataclass
class PendingCall:
    call_id: str
    invite: SipRequest
    transaction: ServerTransaction
    peer: Peer
    dialog: Dialog
    negotiated: Negotiated
    sip_headers: list[tuple[str, str]]
    created: float = field(default_factory=time.monotonic)
    state: str = "ringing"  # ringing | accepting | accepted | rejected | cancelled | timed_out | ended
    call: SipCall | None = None
    origin: Origin = field(default_factory=Origin)
    session_interval: int | None = None  # RFC 4028, when the caller offered it
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    webhook: asyncio.Task | None = None
    ok: SipResponse | None = None  # the 2xx to repeat until the ACK
    refer: asyncio.Future | None = None
    refer_target: str | None = None
    refresh: asyncio.TimerHandle | None = None
    late_offer: bool = False  # the INVITE had no SDP: our offer goes in the 200 OK, the caller answers in the ACK

    def cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()


class SipServer:
    def __init__(self, settings: SipSettings, registry: Any, webhook: WebhookSender, *,
                 admission: Callable[[], str | None] = lambda: None) -> None:
        self.settings = settings
        self.registry = registry
        self.webhook = webhook
        self.admission = admission
        self.transports = SipTransports(self._on_message, self._on_malformed)
        self.layer = TransactionLayer(self.transports.send, settings.timers)
        self.calls: dict[str, PendingCall] = {}  # by rtc_ id, ringing or answered
        self._by_dialog: dict[tuple[str, str, str], PendingCall] = {}  # (Call-ID, their tag, our tag)
        self._by_invite: dict[tuple, PendingCall] = {}  # INVITE transaction key
        self._ended: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._tasks: set[asyncio.Task] = set()
        self.counters: collections.Counter[str] = collections.Counter()

    # ---- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        await self.transports.start(s.host, s.port, tls_port=s.tls_port, tls_context=s.tls_context)
        log.info("sip listening udp=%s tcp=%s tls=%s advertise=%s", self.transports.ports.get("UDP"),
                 self.transports.ports.get("TCP"), self.transports.ports.get("TLS"), s.advertise_ip)

    async def close(self) -> None:
        for pending in list(self.calls.values()):
            if pending.state == "ringing":
                self._final(pending, 503, "cancelled")
            elif pending.call is not None:
                await pending.call.hangup("server_shutdown")
        for task in list(self._tasks):
            task.cancel()
        await self.webhook.close()
        self.layer.close()
        await self.transports.close()

    @property
    def ports(self) -> dict[str, int]:
        return dict(self.transports.ports)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- receiving --------------------------------------------------------------------------------
    def _on_malformed(self, exc: SipParseError, peer: Peer) -> None:
        """Answer 400 to a request we could half read (its Via, From, To, Call-ID and CSeq parse)."""
        request = exc.partial
        self.counters["malformed"] += 1
        if request is None or request.method == "ACK" or not self._has_required(request):
            return
        self._stamp_via(request, peer)
        response = build_response(request, 400, f"Bad Request ({str(exc)[:80]})")
        self.transports.send(response, peer)

    @staticmethod
    def _has_required(request: SipRequest) -> bool:
        try:
            request.top_via()
            request.cseq
            parse_name_addr(request.headers.get("from") or "")
            parse_name_addr(request.headers.get("to") or "")
        except SipParseError:
            return False
        return all(request.headers.has(name) for name in REQUIRED_HEADERS)

    def _on_message(self, message: SipRequest | SipResponse, peer: Peer) -> None:
        if isinstance(message, SipResponse):
            if not self.layer.receive_response(message):
                log.debug("sip stray response %s from %s", message.status, peer.host)
            return
        request = message
        if not self._has_required(request):
            self.counters["malformed"] += 1
            if request.method != "ACK" and request.headers.has("via"):
                try:
                    self._stamp_via(request, peer)
                    self.transports.send(build_response(request, 400, "Bad Request (missing headers)"), peer)
                except SipParseError:
                    pass
            return
        headers_as_sent = list(request.headers.items)
        self._stamp_via(request, peer)
        if request.method == "ACK":
            if not self.layer.absorb_ack(request):
                self._on_ack(request)
            return
        transaction = self.layer.receive_request(request, peer)
        if transaction is None:
            return  # a retransmission, answered by its transaction
        self.counters["requests"] += 1
        try:
            self._dispatch(request, transaction, peer, headers_as_sent)
        except SipParseError as exc:
            transaction.respond(build_response(request, 400, f"Bad Request ({str(exc)[:80]})"))
        except Exception:
            log.exception("sip %s failed", request.method)
            transaction.respond(build_response(request, 500))

    def _dispatch(self, request: SipRequest, tx: ServerTransaction, peer: Peer,
                  headers_as_sent: list[tuple[str, str]]) -> None:
        method = request.method
        if request.cseq[1] != method:
            tx.respond(build_response(request, 400, "Bad Request (CSeq method)"))
            return
        if not self._allowed(peer):
            self.counters["refused_source"] += 1
            tx.respond(build_response(request, 403, "Forbidden (source not allowed)"))
            return
        max_forwards = (request.headers.get("max-forwards") or "70").strip()
        if not max_forwards.isdigit():
            tx.respond(build_response(request, 400, "Bad Request (Max-Forwards)"))
            return
        if method == "OPTIONS":
            tx.respond(build_response(request, 200, headers=self._capabilities()))
            return
        if method == "CANCEL":
            self._on_cancel(request, tx)
            return
        to_tag = parse_name_addr(request.headers.get("to") or "").tag
        if method == "INVITE" and not to_tag:
            if int(max_forwards) == 0:
                tx.respond(build_response(request, 483))
                return
            self._on_invite(request, tx, peer, headers_as_sent)
            return
        pending = self._dialog_of(request)
        if pending is None:
            status = 481 if to_tag or method in ("BYE", "NOTIFY", "INFO", "UPDATE", "PRACK") else 405
            tx.respond(build_response(request, status, headers=[("Allow", ALLOW)] if status == 405 else None))
            return
        if request.cseq[0] <= pending.dialog.remote_cseq and method != "ACK":
            tx.respond(build_response(request, 500, "Server Internal Error (CSeq out of order)",
                                      headers=[("Retry-After", "1")]))
            return
        pending.dialog.remote_cseq = request.cseq[0]
        handler = {"BYE": self._on_bye, "INVITE": self._on_reinvite, "UPDATE": self._on_update,
                   "INFO": self._on_info, "NOTIFY": self._on_notify}.get(method)
        if handler is None:
            tx.respond(build_response(request, 405, headers=[("Allow", ALLOW)]))
            return
        handler(pending, request, tx)

    def _authenticated(self, invite: SipRequest, tx: ServerTransaction, peer: Peer) -> bool:
        """Digest authentication (with --sip-auth): a new INVITE without valid credentials is answered 401 with
        a challenge; an expired nonce with an otherwise right answer gets a fresh one marked stale."""
        auth = self.settings.auth
        if auth is None:
            return True
        outcome, user = auth.check("INVITE", invite.headers.get_all("authorization"))
        if outcome == "ok":
            return True
        tx.respond(build_response(invite, 401, to_tag=new_tag(),
                                  headers=[("WWW-Authenticate", auth.challenge(stale=outcome == "stale"))]))
        self.counters["auth_failures" if outcome == "bad" else "auth_challenges"] += 1
        log.info("sip INVITE challenged (401): credentials %s user=%s source=%s:%s", outcome, _short(user),
                 peer.host, peer.port)
        return False

    def _allowed(self, peer: Peer) -> bool:
        if not self.settings.allow:
            return True
        try:
            address = ipaddress.ip_address(peer.host)
        except ValueError:
            return False
        return any(address in network for network in self.settings.allow)

    @staticmethod
    def _stamp_via(request: SipRequest, peer: Peer) -> None:
        """RFC 3261 §18.2.1 `received` and RFC 3581 `rport` on the top Via: responses follow the source."""
        for index, (name, value) in enumerate(request.headers.items):
            if name.lower() not in ("via", "v"):
                continue
            parts = split_list(value)
            via = parse_via(parts[0])
            top = parts[0]
            if "rport" in via.params and not via.params["rport"]:
                top = _set_param(top, "rport", str(peer.port))
            if via.host != peer.host or "rport" in via.params:
                top = _set_param(top, "received", peer.host)
            parts[0] = top
            request.headers.items[index] = (name, ", ".join(parts))
            return

    def _capabilities(self) -> list[tuple[str, str]]:
        return [("Allow", ALLOW), ("Accept", "application/sdp, application/dtmf-relay, message/sipfrag"),
                ("Supported", SUPPORTED), ("User-Agent", "openrealtime")]

    def _contact(self, peer: Peer) -> str:
        port = self.transports.local_port(peer.transport)
        transport = f";transport={peer.transport.lower()}" if peer.transport != "UDP" else ""
        return f"<sip:openrealtime@{_host(self.settings.advertise_ip)}:{port}{transport}>"

    def _dialog_of(self, request: SipRequest) -> PendingCall | None:
        try:
            key = (request.call_id, parse_name_addr(request.headers.get("from") or "").tag,
                   parse_name_addr(request.headers.get("to") or "").tag)
        except SipParseError:
            return None
        return self._by_dialog.get(key)

    # ---- a new call --------------------------------------------------------------------------------
    def _on_invite(self, invite: SipRequest, tx: ServerTransaction, peer: Peer,
                   headers_as_sent: list[tuple[str, str]]) -> None:
        required = [o.strip().lower() for o in invite.headers.values("require")]
        unsupported = [o for o in required if o not in ("timer",)]
        if unsupported:
            tx.respond(build_response(invite, 420, headers=[("Unsupported", ", ".join(unsupported))]))
            return
        if not self._authenticated(invite, tx, peer):
            return
        refused = self.admission()
        if refused is not None:
            tx.respond(build_response(invite, 503, headers=[("Retry-After", "5")]))
            log.info("sip INVITE refused (503): %s", refused)
            return
        live = sum(1 for p in self.calls.values() if p.state in ("ringing", "accepting"))
        if live + len(self.registry) >= self.settings.max_calls:
            tx.respond(build_response(invite, 486, headers=[("Retry-After", "10")]))
            log.info("sip INVITE refused (486): at the limit of %d calls", self.settings.max_calls)
            return
        interval = self._session_interval(invite, tx)
        if interval == -1:
            return
        late_offer = not invite.body
        if not late_offer and invite.content_type() != "application/sdp":
            tx.respond(build_response(invite, 488, "Not Acceptable Here (the offer must be SDP)"))
            return
        try:
            negotiated = Negotiated(awaiting_answer(), SessionDescription(None, None, []), 0) if late_offer \
                else negotiate(invite.body.decode("utf-8", "replace"))
        except SdpError as exc:
            reason = "Not Acceptable Here" if exc.status == 488 else "Bad Request"
            tx.respond(build_response(invite, exc.status, f"{reason} ({str(exc)[:100]})"))
            log.info("sip INVITE refused (%d): %s", exc.status, exc)
            return
        tx.respond(build_response(invite, 100))
        local_tag = new_tag()
        via_host = f"{_host(self.settings.advertise_ip)}:{self.transports.local_port(peer.transport)}"
        dialog = Dialog.from_invite(invite, peer, local_tag=local_tag, local_contact=self._contact(peer),
                                    via_host=via_host)
        live = self.settings.api == "live"
        call_id = ids.live_session_id() if live else ids.rtc_call_id()
        set_call_id(call_id)
        pending = PendingCall(call_id, invite, tx, peer, dialog, negotiated, headers_as_sent,
                              session_interval=interval, late_offer=late_offer)
        self.calls[call_id] = pending
        self._by_dialog[(dialog.call_id, dialog.remote_tag, local_tag)] = pending
        tx.respond(build_response(invite, 180, to_tag=local_tag, headers=[("Contact", dialog.local_contact),
                                                                            *self._capabilities()]))
        loop = asyncio.get_running_loop()
        pending.timers.append(loop.call_later(self.settings.ring_timeout_s, self._ring_timeout, pending))
        event = incoming_call_event(call_id, headers_as_sent, negotiated.plan.security, live=live)
        pending.webhook = self._spawn(self.webhook.deliver(event, lambda: pending.state == "ringing"))
        self.counters["invites"] += 1
        log.info("sip call=%s ringing from=%s source=%s:%s/%s codec=%s media=%s", call_id,
                 _short(invite.headers.get("from")), peer.host, peer.port, peer.transport,
                 "late-offer" if late_offer else negotiated.plan.codec, negotiated.plan.security)

    def _session_interval(self, invite: SipRequest, tx: ServerTransaction) -> int | None:
        """RFC 4028: the interval to run when the caller offers session timers (and refreshes them); -1:
        refused with 422 (too small)."""
        value = invite.headers.get("session-expires")
        supported = [o.strip().lower() for o in invite.headers.values("supported")]
        if value is None or "timer" not in supported:
            return None
        number = value.split(";", 1)[0].strip()
        if not number.isdigit():
            return None
        if int(number) < MIN_SE:
            tx.respond(build_response(invite, 422, headers=[("Min-SE", str(MIN_SE))]))
            return -1
        return int(number)

    def _ring_timeout(self, pending: PendingCall) -> None:
        if pending.state == "ringing":
            log.info("sip call=%s not answered within %.0f s: %d", pending.call_id, self.settings.ring_timeout_s,
                     self.settings.ring_timeout_status)
            self._final(pending, self.settings.ring_timeout_status, "timed_out")

    def _final(self, pending: PendingCall, status: int, state: str) -> None:
        """A final non-2xx answer to a ringing INVITE; the call is over."""
        pending.state = state
        pending.transaction.respond(build_response(pending.invite, status, to_tag=pending.dialog.local_tag))
        self._forget(pending, state)

    def _forget(self, pending: PendingCall, state: str) -> None:
        pending.state = state
        pending.cancel_timers()
        if pending.refresh is not None:
            pending.refresh.cancel()
        self.calls.pop(pending.call_id, None)
        dialog = pending.dialog
        self._by_dialog.pop((dialog.call_id, dialog.remote_tag, dialog.local_tag), None)
        self._ended[pending.call_id] = state
        while len(self._ended) > ENDED_MEMORY:
            self._ended.popitem(last=False)

    def _on_cancel(self, cancel: SipRequest, tx: ServerTransaction) -> None:
        invite_tx = self.layer.invite_of(cancel)
        if invite_tx is None:
            tx.respond(build_response(cancel, 481))
            return
        tx.respond(build_response(cancel, 200))
        pending = next((p for p in self.calls.values() if p.transaction is invite_tx), None)
        if pending is not None and pending.state in ("ringing", "accepting"):
            log.info("sip call=%s cancelled by the caller", pending.call_id)
            self._final(pending, 487, "cancelled")
        elif pending is None and not invite_tx.final:
            invite_tx.respond(build_response(invite_tx.request, 487))

    # ---- in the dialog -----------------------------------------------------------------------------
    def _on_ack(self, ack: SipRequest) -> None:
        pending = self._dialog_of(ack)
        if pending is None:
            return
        pending.dialog.confirmed = True
        if pending.ok is not None:
            pending.ok = None
            if ack.body and ack.content_type() == "application/sdp" and pending.call is not None:
                self._apply_late_answer(pending, ack)
            elif pending.late_offer and pending.call is not None:
                log.info("sip call=%s ACK without the answer to our offer: hanging up", pending.call_id)
                pending.call.hangup("media_failed")

    def _apply_late_answer(self, pending: PendingCall, ack: SipRequest) -> None:
        """The answer to the offer our 2xx made (an INVITE or re-INVITE without SDP)."""
        assert pending.call is not None
        first = pending.late_offer
        try:
            negotiated = negotiate(ack.body.decode("utf-8", "replace"),
                                   keep_codec=None if first else pending.call.plan.codec)
        except SdpError as exc:
            log.info("sip call=%s unusable SDP in ACK: %s", pending.call_id, exc)
            if first:
                pending.call.hangup("media_failed")
            return
        if first:  # we offered RTP/AVP without keys: keys in the answer are not for that offer
            negotiated.plan.remote_crypto = negotiated.plan.local_crypto = None
            pending.late_offer = False
        self._update_media(pending, negotiated)

    def _on_bye(self, pending: PendingCall, bye: SipRequest, tx: ServerTransaction) -> None:
        tx.respond(build_response(bye, 200))
        log.info("sip call=%s caller hung up", pending.call_id)
        call = pending.call
        self._forget(pending, "ended")
        if call is not None:
            call.hangup("caller_bye")

    def _on_reinvite(self, pending: PendingCall, invite: SipRequest, tx: ServerTransaction) -> None:
        call = pending.call
        if call is None or pending.state != "accepted":
            tx.respond(build_response(invite, 491 if pending.state in ("ringing", "accepting") else 481))
            return
        if pending.ok is not None:
            tx.respond(build_response(invite, 491, headers=[("Retry-After", "1")]))
            return
        self._refresh_timer(pending, invite)
        if not invite.body:  # an offer-less re-INVITE: our 2xx offers the current session, the ACK answers
            plan = call.plan
            body = Negotiated(_sendrecv(plan), pending.negotiated.offer, pending.negotiated.index).answer(
                address=self.settings.advertise_ip, port=call.leg.local_port, origin=pending.origin)
            self._answer_2xx(pending, invite, tx, body.encode())
            return
        try:
            negotiated = negotiate(invite.body.decode("utf-8", "replace"), keep_codec=call.plan.codec)
        except SdpError as exc:
            tx.respond(build_response(invite, exc.status, f"Not Acceptable Here ({str(exc)[:100]})"))
            return
        negotiated.plan.local_crypto = _keep_key(call.plan, negotiated.plan)
        self._update_media(pending, negotiated)
        body = negotiated.answer(address=self.settings.advertise_ip, port=call.leg.local_port, origin=pending.origin)
        self._answer_2xx(pending, invite, tx, body.encode())

    def _on_update(self, pending: PendingCall, update: SipRequest, tx: ServerTransaction) -> None:
        call = pending.call
        self._refresh_timer(pending, update)
        if not update.body or call is None:
            tx.respond(build_response(update, 200, headers=self._timer_headers(pending)))
            return
        try:
            negotiated = negotiate(update.body.decode("utf-8", "replace"), keep_codec=call.plan.codec)
        except SdpError as exc:
            tx.respond(build_response(update, exc.status))
            return
        negotiated.plan.local_crypto = _keep_key(call.plan, negotiated.plan)
        self._update_media(pending, negotiated)
        body = negotiated.answer(address=self.settings.advertise_ip, port=call.leg.local_port, origin=pending.origin)
        tx.respond(build_response(update, 200, headers=[("Contact", pending.dialog.local_contact),
                                                        *self._timer_headers(pending)], body=body.encode()))

    def _update_media(self, pending: PendingCall, negotiated: Negotiated) -> None:
        pending.negotiated = negotiated
        if pending.call is not None:
            pending.call.update_media(negotiated.plan)
            log.info("sip call=%s media updated direction=%s remote=%s:%s", pending.call_id,
                     negotiated.plan.direction, negotiated.plan.remote_host, negotiated.plan.remote_port)

    def _on_info(self, pending: PendingCall, info: SipRequest, tx: ServerTransaction) -> None:
        if not info.body:
            tx.respond(build_response(info, 200))
            return
        key = info_key(info.content_type(), info.body)
        if key is None:
            tx.respond(build_response(info, 415, headers=[("Accept", "application/dtmf-relay, application/dtmf")]))
            return
        tx.respond(build_response(info, 200))
        if pending.call is not None:
            pending.call.key_pressed(key)

    def _on_notify(self, pending: PendingCall, notify: SipRequest, tx: ServerTransaction) -> None:
        event = (notify.headers.get("event") or "").split(";", 1)[0].strip().lower()
        if event != "refer":
            tx.respond(build_response(notify, 489, "Bad Event"))
            return
        tx.respond(build_response(notify, 200))
        status = _sipfrag_status(notify.body)
        terminated = (notify.headers.get("subscription-state") or "").lower().startswith("terminated")
        log.info("sip call=%s transfer progress %s%s", pending.call_id, status, " (final)" if terminated else "")
        if status is None or status < 200:
            return
        call = pending.call
        if 200 <= status < 300:
            if call is not None:
                log.info("sip call=%s transferred to %s", pending.call_id, pending.refer_target)
                self._forget(pending, "ended")
                call.hangup("transferred")
        elif call is not None:
            call.engine.send_error(ProtocolError(
                f"The transfer to {pending.refer_target} failed: the far end answered {status}.",
                code="call_transfer_failed", type="server_error"))

    # ---- session timers (RFC 4028) ---------------------------------------------------------------------
    def _timer_headers(self, pending: PendingCall) -> list[tuple[str, str]]:
        if pending.session_interval is None:
            return []
        return [("Session-Expires", f"{pending.session_interval};refresher=uac"), ("Require", "timer")]

    def _refresh_timer(self, pending: PendingCall, request: SipRequest) -> None:
        if pending.session_interval is None:
            return
        value = (request.headers.get("session-expires") or "").split(";", 1)[0].strip()
        if value.isdigit() and int(value) >= MIN_SE:
            pending.session_interval = int(value)
        self._arm_session_timer(pending)

    def _arm_session_timer(self, pending: PendingCall) -> None:
        if pending.session_interval is None:
            return
        if pending.refresh is not None:
            pending.refresh.cancel()
        interval = pending.session_interval
        wait = interval - min(32, interval / 3)  # RFC 4028 §10: BYE before the expiry the refresher missed
        pending.refresh = asyncio.get_running_loop().call_later(wait, self._session_expired, pending)

    def _session_expired(self, pending: PendingCall) -> None:
        if pending.call is not None and pending.state == "accepted":
            log.info("sip call=%s session timer expired without a refresh", pending.call_id)
            call = pending.call
            self._forget(pending, "ended")
            call.hangup("session_timer_expired")

    # ---- answering -----------------------------------------------------------------------------------
    def _answer_2xx(self, pending: PendingCall, invite: SipRequest, tx: ServerTransaction, body: bytes) -> None:
        ok = build_response(invite, 200, to_tag=pending.dialog.local_tag,
                            headers=[("Contact", pending.dialog.local_contact), *self._capabilities(),
                                     *self._timer_headers(pending)], body=body, content_type="application/sdp")
        pending.ok = ok
        tx.respond(ok)
        loop = asyncio.get_running_loop()
        pending.timers.append(loop.call_later(self.settings.timers.timeout, self._no_ack, pending, ok))
        if not tx.peer.reliable:
            pending.timers.append(loop.call_later(self.settings.timers.t1, self._repeat_2xx, pending, ok,
                                                  self.settings.timers.t1))

    def _repeat_2xx(self, pending: PendingCall, ok: SipResponse, interval: float) -> None:
        """RFC 3261 §13.3.1.4: the 2xx again at T1, 2·T1, … (at most T2 apart) until the ACK comes."""
        if pending.ok is not ok:
            return  # ACKed
        self.transports.send(ok, pending.transaction.peer)
        interval = min(2 * interval, self.settings.timers.t2)
        pending.timers.append(asyncio.get_running_loop().call_later(interval, self._repeat_2xx, pending, ok, interval))

    def _no_ack(self, pending: PendingCall, ok: SipResponse) -> None:
        if pending.ok is ok and pending.call is not None:
            log.info("sip call=%s no ACK for the 200 OK: hanging up", pending.call_id)
            call = pending.call
            call.hangup("no_ack")

    # ---- call control (api/sip_calls.py) ---------------------------------------------------------------
    def _control_target(self, call_id: str) -> PendingCall:
        pending = self.calls.get(call_id)
        if pending is None:
            ended = self._ended.get(call_id)
            reason = {"cancelled": " (the caller hung up before it was answered)",
                      "timed_out": " (it was not answered in time)", "rejected": " (it was rejected)"}.get(ended or "",
                                                                                                      "")
            raise CallControlError(404, f"Call '{call_id}' not found{reason or ' (it may have ended already)'}.",
                                   "call_not_found", "call_id")
        return pending

    def is_sip_call(self, call_id: str) -> bool:
        return call_id in self.calls or call_id in self._ended

    async def accept(self, call_id: str, make_engine: EngineMaker) -> None:
        pending = self._control_target(call_id)
        if pending.state in ("accepted", "accepting"):
            return  # idempotent: the SDK retries
        if pending.state != "ringing":
            raise CallControlError(400, f"Call '{call_id}' can no longer be accepted ({pending.state}).",
                                   "call_not_ringing", "call_id")
        pending.state = "accepting"
        set_call_id(call_id)
        plan = pending.negotiated.plan
        call = SipCall(call_id, plan, lambda transport: make_engine(transport, plan),
                       send_bye=lambda: self._send_bye(pending), on_ended=self._call_ended,
                       client=pending.peer.host, created=pending.created, max_duration_s=self.settings.max_duration_s,
                       sip_call_id=pending.dialog.call_id)
        try:
            port = await call.open_media(self.settings.host)
        except OSError as exc:
            log.error("sip call=%s could not open an RTP port: %s", call_id, exc)
            call.engine.close("media_failed")
            if pending.state == "accepting":
                self._final(pending, 500, "ended")
            raise CallControlError(500, "The server could not open an RTP port for this call.", "media_failed") \
                from None
        if pending.state != "accepting":  # cancelled while the port opened
            call.engine.close("cancelled")
            await call.leg.stop()
            raise CallControlError(404, f"Call '{call_id}' not found (the caller hung up before it was answered).",
                                   "call_not_found", "call_id")
        pending.call = call
        pending.state = "accepted"
        pending.cancel_timers()
        if pending.late_offer:
            body = build_offer(address=self.settings.advertise_ip, port=port, origin=pending.origin)
        else:
            body = pending.negotiated.answer(address=self.settings.advertise_ip, port=port, origin=pending.origin)
        self._answer_2xx(pending, pending.invite, pending.transaction, body.encode())
        self._arm_session_timer(pending)
        self.registry.add(call)
        call.start()
        self.counters["accepted"] += 1

    def reject(self, call_id: str, status: int = 603) -> None:
        pending = self._control_target(call_id)
        if pending.state in ("accepted", "accepting"):
            raise CallControlError(400, f"Call '{call_id}' was accepted already: end it with hangup.",
                                   "call_already_accepted", "call_id")
        log.info("sip call=%s rejected by the app: %d", call_id, status)
        self._final(pending, status, "rejected")

    def reject_idempotent(self, call_id: str) -> bool:
        """A repeated reject of a call already rejected: nothing to do (the SDK retries)."""
        return self._ended.get(call_id) == "rejected"

    async def refer(self, call_id: str, target_uri: str) -> None:
        pending = self._control_target(call_id)
        if pending.state != "accepted" or pending.call is None:
            raise CallControlError(400, f"Call '{call_id}' is not answered: only an answered call can be "
                                        "transferred.", "call_not_active", "call_id")
        if pending.refer is not None and pending.refer_target == target_uri:
            await asyncio.shield(pending.refer)  # idempotent: the same transfer in flight or done
            return
        pending.refer_target = target_uri
        loop = asyncio.get_running_loop()
        pending.refer = loop.create_future()
        request = pending.dialog.request("REFER", headers=[("Refer-To", f"<{target_uri}>"),
                                                           ("Referred-By", f"<{_uri_of(pending.dialog.local_uri)}>")])
        transaction = self.layer.request(request, pending.dialog.next_hop())
        response = await transaction.result
        if response is None or response.status >= 300:
            outcome = "no answer" if response is None else f"{response.status} {response.reason}"
            error = CallControlError(400, f"The transfer to {target_uri} was refused by the caller's side ({outcome}).",
                                     "refer_failed", "target_uri")
            pending.refer.set_exception(error)
            pending.refer.exception()  # retrieved: a later retry re-raises it
            pending.refer, pending.refer_target = None, None
            raise error
        log.info("sip call=%s REFER to %s accepted (%d)", call_id, target_uri, response.status)
        pending.refer.set_result(response.status)

    def _send_bye(self, pending: PendingCall) -> None:
        self._forget(pending, "ended")
        request = pending.dialog.request("BYE")
        self.layer.request(request, pending.dialog.next_hop())

    def _call_ended(self, call: SipCall) -> None:
        pending = self.calls.get(call.id)
        if pending is not None:
            self._forget(pending, "ended")
        self.registry.discard(call)


def _set_param(via: str, name: str, value: str) -> str:
    head, *params = via.split(";")
    kept = [p for p in params if p.split("=", 1)[0].strip().lower() != name]
    return ";".join([head, *kept, f"{name}={value}"])


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _short(value: str | None) -> str:
    return (value or "-")[:80]


def _uri_of(name_addr: str) -> str:
    try:
        return parse_name_addr(name_addr).uri
    except SipParseError:
        return "sip:openrealtime@invalid"


def _sipfrag_status(body: bytes) -> int | None:
    line = body.split(b"\n", 1)[0].strip().decode("utf-8", "replace")
    parts = line.split()
    if len(parts) >= 2 and parts[0].upper() == "SIP/2.0" and parts[1].isdigit():
        return int(parts[1])
    return None


def _sendrecv(plan: MediaPlan) -> MediaPlan:
    return replace(plan, direction="sendrecv")


def _keep_key(current: MediaPlan, new: MediaPlan) -> Any:
    """Our SRTP key stays the same across re-INVITEs unless the suite changed."""
    if new.remote_crypto is None:
        return None
    if current.local_crypto is not None and current.local_crypto.suite == new.remote_crypto.suite:
        return current.local_crypto
    return new.local_crypto

