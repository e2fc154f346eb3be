"""A dialog as the answering side sees it (RFC 3261 §12): built from the INVITE, then used to build the
requests we send in it (BYE, REFER) and to recognise the caller's (re-INVITE, BYE, NOTIFY, INFO).

Requests we send go to the first Record-Route entry if there is one (loose routing, Route headers in
order), else back to where the INVITE came from (the same connection on TCP/TLS): a caller behind NAT
reaches us from an address its Contact does not name.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from .message import SipParseError, SipRequest, parse_name_addr, parse_uri
from .transport import Peer


def new_tag() -> str:
    return secrets.token_hex(8)


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(10)


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # the To of the INVITE, without its tag
    remote_uri: str  # the From of the INVITE, as sent (with its tag)
    remote_target: str  # the caller's Contact URI
    route_set: list[str]
    peer: Peer  # where the INVITE came from
    local_contact: str
    via_host: str
    remote_cseq: int
    local_cseq: int = field(default_factory=lambda: secrets.randbelow(2 ** 20) + 1)
    confirmed: bool = False

    @classmethod
    def from_invite(cls, invite: SipRequest, peer: Peer, *, local_tag: str, local_contact: str,
                    via_host: str) -> "Dialog":
        contacts = invite.headers.values("contact")
        if not contacts:
            raise SipParseError("an INVITE without a Contact")
        target = parse_name_addr(contacts[0]).uri
        parse_uri(target)
        return cls(call_id=invite.call_id, local_tag=local_tag,
                   remote_tag=parse_name_addr(invite.headers.get("from") or "").tag,
                   local_uri=invite.headers.get("to") or "", remote_uri=invite.headers.get("from") or "",
                   remote_target=target, route_set=invite.headers.values("record-route"), peer=peer,
                   local_contact=local_contact, via_host=via_host, remote_cseq=invite.cseq[0])

    def matches(self, request: SipRequest) -> bool:
        """An in-dialog request of the caller: same Call-ID, their tag in From, ours in To."""
        try:
            return (request.call_id == self.call_id
                    and parse_name_addr(request.headers.get("from") or "").tag == self.remote_tag
                    and parse_name_addr(request.headers.get("to") or "").tag == self.local_tag)
        except SipParseError:
            return False

    def next_hop(self) -> Peer:
        if self.route_set:
            try:
                uri = parse_uri(parse_name_addr(self.route_set[0]).uri)
            except SipParseError:
                return self.peer
            transport = uri.transport or ("TLS" if uri.scheme == "sips" else self.peer.transport)
            default = 5061 if transport == "TLS" else 5060
            return Peer(transport, uri.host, uri.port or default)
        return self.peer

    def request(self, method: str, *, headers: list[tuple[str, str]] | None = None, body: bytes = b"",
                content_type: str | None = None) -> SipRequest:
        self.local_cseq += 1
        hop = self.next_hop()
        request = SipRequest(method=method, uri=self.remote_target)
        h = request.headers
        h.add("Via", f"SIP/2.0/{hop.transport} {self.via_host};branch={new_branch()};rport")
        h.add("Max-Forwards", "70")
        for route in self.route_set:
            h.add("Route", route)
        h.add("From", f"{self.local_uri};tag={self.local_tag}")
        h.add("To", self.remote_uri)
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{self.local_cseq} {method}")
        h.add("Contact", self.local_contact)
        h.add("User-Agent", "openrealtime")
        for name, value in headers or []:
            h.add(name, value)
        if body:
            h.add("Content-Type", content_type or "application/sdp")
        request.body = body
        return request
