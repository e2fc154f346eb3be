"""Node-to-node request authentication: an HMAC-SHA256 of the request under `--cluster-secret`.

The signer adds three headers to a request it forwards; the receiver recomputes the MAC over the
same canonical text and compares in constant time:

    X-Openrealtime-Node: <sending node id>
    X-Openrealtime-Timestamp: <unix seconds>
    X-Openrealtime-Signature: v1=<hex HMAC-SHA256 of the canonical text>

canonical text = "openrealtime-node-v1", METHOD, path?query (as sent), node id, timestamp and the
SHA-256 (hex) of the body, joined by newlines. A timestamp outside ± `WINDOW_S` of the receiver's
clock is refused, so a captured request can be replayed only within that window (the internal port
is for the cluster's private network; TLS or a private link is still the operator's job).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping

NODE_HEADER = "X-Openrealtime-Node"
TIMESTAMP_HEADER = "X-Openrealtime-Timestamp"
SIGNATURE_HEADER = "X-Openrealtime-Signature"
WINDOW_S = 30.0
_VERSION = "v1"


class NodeAuthError(Exception):
    """A node-to-node request that is unsigned, stale or signed with another secret."""


def _mac(secret: str, method: str, target: str, node_id: str, timestamp: str, body: bytes) -> str:
    text = "\n".join(("openrealtime-node-v1", method.upper(), target, node_id, timestamp,
                      hashlib.sha256(body).hexdigest()))
    return hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


class NodeSigner:
    """Signs this node's requests to other nodes."""

    def __init__(self, secret: str, node_id: str, clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("a cluster secret is required to sign node-to-node requests")
        self._secret = secret
        self.node_id = node_id
        self._clock = clock

    def headers(self, method: str, target: str, body: bytes = b"") -> dict[str, str]:
        """The headers to add to `METHOD target` (path plus query, exactly as sent) with `body`."""
        timestamp = str(int(self._clock()))
        mac = _mac(self._secret, method, target, self.node_id, timestamp, body)
        return {NODE_HEADER: self.node_id, TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: f"{_VERSION}={mac}"}


class NodeVerifier:
    """Checks requests that claim to come from another node of this cluster."""

    def __init__(self, secret: str, *, window_s: float = WINDOW_S, clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("a cluster secret is required to verify node-to-node requests")
        self._secret = secret
        self.window_s = window_s
        self._clock = clock

    def verify(self, method: str, target: str, headers: Mapping[str, str], body: bytes = b"") -> str:
        """The sending node's id, or `NodeAuthError` saying what is wrong (never which part of the MAC)."""
        lowered = {k.lower(): v for k, v in headers.items()}
        node_id = lowered.get(NODE_HEADER.lower(), "")
        timestamp = lowered.get(TIMESTAMP_HEADER.lower(), "")
        signature = lowered.get(SIGNATURE_HEADER.lower(), "")
        if not (node_id and timestamp and signature):
            raise NodeAuthError("not a signed node-to-node request")
        try:
            sent = int(timestamp)
        except ValueError:
            raise NodeAuthError("malformed node request timestamp") from None
        if abs(self._clock() - sent) > self.window_s:
            raise NodeAuthError(f"node request timestamp outside the ±{self.window_s:g} s window "
                                "(are the nodes' clocks in sync?)")
        version, _, mac = signature.partition("=")
        expected = _mac(self._secret, method, target, node_id, timestamp, body)
        if not (hmac.compare_digest(version.encode(), _VERSION.encode())
                & hmac.compare_digest(mac.encode("ascii", "replace"), expected.encode())):
            raise NodeAuthError("bad node request signature")
        return node_id
