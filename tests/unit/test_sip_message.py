"""The SIP parser and builder (openrealtime/sip/message.py): RFC 3261 syntax, compact forms, folding, and
every limit refused with SipParseError (the fuzz test in tests/sip checks nothing else is ever raised)."""

import pytest

from openrealtime.sip.message import (MAX_BODY_BYTES, MAX_HEADERS, MAX_MESSAGE_BYTES, SipParseError, SipRequest,
                                      build_response, parse_message, parse_name_addr, parse_uri, parse_via,
                                      split_list)

INVITE = (
    "INVITE sip:proj_1@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds;rport\r\n"
    "v: SIP/2.0/TCP proxy.example.com;branch=z9hG4bKabc, SIP/2.0/UDP 10.0.0.9\r\n"
    "Max-Forwards: 70\r\n"
    "To: <sip:proj_1@example.com>\r\n"
    'f: "Alice, the caller" <sip:+14155550100@carrier.example>;tag=1928301774\r\n'
    "i: a84b4c76e66710@pc33.example.com\r\n"
    "CSeq: 314159 INVITE\r\n"
    "Contact: <sip:alice@10.0.0.1:5060>\r\n"
    "Subject: a folded\r\n"
    "  header value\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 4\r\n"
    "\r\n"
    "v=0\n"
)


def test_request_with_compact_forms_folding_and_lists():
    msg = parse_message(INVITE.encode())
    assert isinstance(msg, SipRequest)
    assert (msg.method, msg.uri) == ("INVITE", "sip:proj_1@example.com")
    assert msg.call_id == "a84b4c76e66710@pc33.example.com"
    assert msg.cseq == (314159, "INVITE")
    assert msg.headers.get("subject") == "a folded header value"
    assert len(msg.headers.values("via")) == 3  # two lines, one of them a comma list
    assert msg.top_via().branch == "z9hG4bK776asdhds"
    assert parse_name_addr(msg.headers.get("from")).tag == "1928301774"
    assert parse_name_addr(msg.headers.get("from")).display == "Alice, the caller"
    assert msg.body == b"v=0\n"
    # names keep their spelling and order (the webhook reports them as sent)
    assert [n for n, _ in msg.headers.items][:3] == ["Via", "v", "Max-Forwards"]


def test_response_round_trip():
    request = parse_message(INVITE.encode())
    response = build_response(request, 180, to_tag="abc", headers=[("Contact", "<sip:x@1.2.3.4>")])
    again = parse_message(response.encode())
    assert again.status == 180 and again.reason == "Ringing"
    assert parse_name_addr(again.headers.get("to")).tag == "abc"
    assert again.headers.get_all("via") == request.headers.get_all("via")
    assert again.headers.get("content-length") == "0"
    trying = build_response(request, 100, to_tag="abc")
    assert "tag" not in parse_name_addr(trying.headers.get("to")).params  # no tag on 100


@pytest.mark.parametrize("data, why", [
    (b"INVITE sip:x SIP/2.0\r\nCSeq: 1 INVITE\r\n", "no blank line"),
    (b"INVITE  SIP/2.0\r\n\r\n", "empty Request-URI"),
    (b"INVITE sip:x SIP/3.0\r\n\r\n", "version"),
    (b"SIP/2.0 99 Odd\r\n\r\n", "status"),
    (b"INVITE sip:x SIP/2.0\r\nBad Header\r\n\r\n", "header without colon"),
    (b"INVITE sip:x SIP/2.0\r\nX: a\x00b\r\n\r\n", "control character"),
    (b"INVITE sip:x SIP/2.0\r\nCSeq: one INVITE\r\n\r\n", "CSeq"),
    (b"INVITE sip:x SIP/2.0\r\nContent-Length: 10\r\n\r\nabc", "short body"),
    (b"INVITE sip:x SIP/2.0\r\nContent-Length: 1\r\nl: 1\r\n\r\na", "two lengths"),
    (b"INVITE sip:x SIP/2.0\r\nX: \xff\r\n\r\n", "not UTF-8"),
    (b"INVITE sip:x SIP/2.0\r\n folded-first\r\n\r\n", "continuation first"),
])
def test_malformed_messages_are_refused(data, why):
    with pytest.raises(SipParseError):
        parse_message(data)


def test_limits():
    with pytest.raises(SipParseError, match="over"):
        parse_message(b"INVITE sip:x SIP/2.0\r\n\r\n" + b"a" * MAX_MESSAGE_BYTES)
    many = "".join(f"X-{i}: {i}\r\n" for i in range(MAX_HEADERS + 1))
    with pytest.raises(SipParseError, match="header fields"):
        parse_message(f"OPTIONS sip:x SIP/2.0\r\n{many}\r\n".encode())
    with pytest.raises(SipParseError, match="body"):
        parse_message(b"INVITE sip:x SIP/2.0\r\n\r\n" + b"a" * (MAX_BODY_BYTES + 1))
    with pytest.raises(SipParseError, match="too long"):
        parse_message(b"OPTIONS sip:x SIP/2.0\r\nX: " + b"a" * 9000 + b"\r\n\r\n")


def test_stream_framing_needs_an_exact_content_length():
    head = b"OPTIONS sip:x SIP/2.0\r\nCSeq: 1 OPTIONS\r\n"
    assert parse_message(head + b"Content-Length: 0\r\n\r\n", stream=True).body == b""
    with pytest.raises(SipParseError):
        parse_message(head + b"\r\n", stream=True)  # no Content-Length on TCP
    assert parse_message(head + b"\r\nabc").body == b"abc"  # UDP: the rest of the datagram


def test_a_partial_request_is_kept_for_a_400():
    with pytest.raises(SipParseError) as info:
        parse_message(b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: x INVITE\r\n\r\n")
    assert info.value.partial is not None and info.value.partial.method == "INVITE"


def test_header_helpers():
    via = parse_via("SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKx;received=1.2.3.4")
    assert (via.transport, via.host, via.port, via.branch) == ("TCP", "2001:db8::1", 5070, "z9hG4bKx")
    uri = parse_uri("sip:+1415@carrier.example:5080;transport=tcp;user=phone")
    assert (uri.user, uri.host, uri.port, uri.transport) == ("+1415", "carrier.example", 5080, "TCP")
    assert parse_uri("sips:alice:secret@[::1]").host == "::1"
    assert split_list('"a, b" <sip:x>;p=1, <sip:y,z>') == ['"a, b" <sip:x>;p=1', "<sip:y,z>"]
    addr = parse_name_addr("sip:bob@example.com;tag=xyz")  # addr-spec form: parameters belong to the header
    assert (addr.uri, addr.tag) == ("sip:bob@example.com", "xyz")
    for bad in ("SIP/2.0/UDP", "SIP/2.0/UDP host:99999", "HTTP/1.1 host"):
        with pytest.raises(SipParseError):
            parse_via(bad)
    with pytest.raises(SipParseError):
        parse_uri("http://example.com")
