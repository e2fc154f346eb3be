"""Node-to-node HMAC: a signed request verifies; any change, another secret or a stale clock does not."""

from __future__ import annotations

import pytest

from openrealtime.cluster.auth import SIGNATURE_HEADER, TIMESTAMP_HEADER, NodeAuthError, NodeSigner, NodeVerifier

SECRET = "cluster-secret-for-tests"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def signed(method="POST", target="/internal/v1/calls?model=x", body=b"v=0\r\n", clock=None):
    return NodeSigner(SECRET, "node-a", clock=clock or Clock()).headers(method, target, body)


def test_a_signed_request_verifies_and_names_its_node():
    clock = Clock()
    headers = signed(clock=clock)
    assert NodeVerifier(SECRET, clock=clock).verify("post", "/internal/v1/calls?model=x", headers, b"v=0\r\n") == \
        "node-a"
    lowered = {k.lower(): v for k, v in headers.items()}  # header names are case-insensitive
    assert NodeVerifier(SECRET, clock=clock).verify("POST", "/internal/v1/calls?model=x", lowered, b"v=0\r\n")


@pytest.mark.parametrize("method,target,body", [
    ("GET", "/internal/v1/calls?model=x", b"v=0\r\n"),
    ("POST", "/internal/v1/calls?model=y", b"v=0\r\n"),
    ("POST", "/internal/v1/calls?model=x", b"v=1\r\n"),
])
def test_any_change_to_the_request_is_refused(method, target, body):
    clock = Clock()
    with pytest.raises(NodeAuthError, match="bad node request signature"):
        NodeVerifier(SECRET, clock=clock).verify(method, target, signed(clock=clock), body)


def test_another_secret_a_tampered_signature_or_no_headers_are_refused():
    clock = Clock()
    verify = NodeVerifier(SECRET, clock=clock).verify
    with pytest.raises(NodeAuthError, match="signature"):
        NodeVerifier("another-secret", clock=clock).verify("POST", "/internal/v1/calls?model=x", signed(clock=clock),
                                                           b"v=0\r\n")
    headers = signed(clock=clock)
    headers[SIGNATURE_HEADER] = headers[SIGNATURE_HEADER][:-1] + "0"
    with pytest.raises(NodeAuthError, match="signature"):
        verify("POST", "/internal/v1/calls?model=x", headers, b"v=0\r\n")
    with pytest.raises(NodeAuthError, match="not a signed"):
        verify("POST", "/internal/v1/calls?model=x", {}, b"v=0\r\n")


def test_a_timestamp_outside_the_window_is_refused():
    clock = Clock()
    headers = signed(clock=clock)
    clock.now += 31
    with pytest.raises(NodeAuthError, match="window"):
        NodeVerifier(SECRET, clock=clock).verify("POST", "/internal/v1/calls?model=x", headers, b"v=0\r\n")
    headers[TIMESTAMP_HEADER] = "soon"
    with pytest.raises(NodeAuthError, match="malformed"):
        NodeVerifier(SECRET, clock=clock).verify("POST", "/internal/v1/calls?model=x", headers, b"v=0\r\n")


def test_an_empty_secret_is_refused():
    with pytest.raises(ValueError):
        NodeSigner("", "node-a")
    with pytest.raises(ValueError):
        NodeVerifier("")
