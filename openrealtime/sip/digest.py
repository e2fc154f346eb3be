"""SIP digest authentication of incoming INVITEs (RFC 3261 §22, RFC 2617 digest with MD5 and qop=auth).

Each trunk has an account (`--sip-auth user:password`, repeatable). An INVITE without valid credentials is
answered `401 Unauthorized` with `WWW-Authenticate: Digest realm=…, nonce=…, opaque=…, qop="auth",
algorithm=MD5`; the caller re-sends it with `Authorization`. Nonces are stateless: the time they were made
and an HMAC of it under a key of this process, so a nonce is valid only from this server and only for
`nonce_ttl_s`; an expired one that is otherwise right is answered with a fresh challenge marked
`stale=true` (the caller retries without asking its user again). Passwords are compared through the
digest only (constant time) and never logged: they are among the server's secret values.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable

_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]+)\s*(?:,|$)')


def parse_credentials(text: str) -> dict[str, str] | None:
    """The parameters of a `Digest …` Authorization header value (lower-case names), or None."""
    scheme, _, rest = text.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    params: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        match = _PARAM.match(rest, position)
        if match is None or match.end() == position:
            return None
        value = match.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[match.group(1).lower()] = value
        position = match.end()
    return params


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def digest_response(*, username: str, realm: str, password: str, method: str, uri: str, nonce: str,
                    qop: str | None = None, nc: str = "", cnonce: str = "") -> str:
    """The `response` value a client computes (RFC 2617 §3.2.2.1, MD5; without qop the RFC 2069 form)."""
    ha1 = _md5(f"{username}:{realm}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    if qop:
        return _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _md5(f"{ha1}:{nonce}:{ha2}")


class DigestAuth:
    def __init__(self, accounts: dict[str, str], *, realm: str = "openrealtime", nonce_ttl_s: float = 300.0,
                 clock: Callable[[], float] = time.time) -> None:
        if not accounts:
            raise ValueError("digest authentication needs at least one account")
        self.accounts = dict(accounts)
        self.realm = realm
        self.nonce_ttl_s = nonce_ttl_s
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self.opaque = secrets.token_hex(8)

    @classmethod
    def from_specs(cls, specs: list[str], **kw) -> "DigestAuth | None":
        """From `user:password` strings (None when there are none)."""
        if not specs:
            return None
        return cls(dict(spec.split(":", 1) for spec in specs), **kw)

    def nonce(self) -> str:
        stamp = str(int(self._clock())).encode()
        mac = hmac.new(self._key, stamp, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(stamp + b"." + mac).decode().rstrip("=")

    def _nonce_state(self, nonce: str) -> str:
        """"fresh", "stale" (ours but expired) or "bad"."""
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except ValueError:
            return "bad"
        stamp, _, mac = raw.partition(b".")
        if not stamp.isdigit():
            return "bad"
        if not hmac.compare_digest(mac, hmac.new(self._key, stamp, hashlib.sha256).digest()[:16]):
            return "bad"
        age = self._clock() - int(stamp)
        return "fresh" if -5 <= age <= self.nonce_ttl_s else "stale"

    def challenge(self, *, stale: bool = False) -> str:
        value = (f'Digest realm="{self.realm}", nonce="{self.nonce()}", opaque="{self.opaque}", '
                 f'algorithm=MD5, qop="auth"')
        return value + (", stale=true" if stale else "")

    def check(self, method: str, authorization: list[str]) -> tuple[str, str | None]:
        """("ok", user), ("stale", user) or ("missing" | "bad", user or None) for a request's Authorization
        header values."""
        outcome: tuple[str, str | None] = ("missing", None)
        for value in authorization:
            params = parse_credentials(value)
            if params is None or params.get("realm") != self.realm:
                continue
            user = params.get("username", "")
            result = self._verify(method, params)
            if result in ("ok", "stale"):
                return result, user
            outcome = ("bad", user)
        return outcome

    def _verify(self, method: str, params: dict[str, str]) -> str:
        password = self.accounts.get(params.get("username", ""))
        if password is None or params.get("algorithm", "MD5").upper() != "MD5":
            return "bad"
        qop = params.get("qop")
        if qop is not None and qop != "auth":
            return "bad"
        if qop and not (params.get("nc") and params.get("cnonce")):
            return "bad"
        nonce, uri, response = params.get("nonce", ""), params.get("uri", ""), params.get("response", "")
        expected = digest_response(username=params["username"], realm=self.realm, password=password,
                                   method=method, uri=uri, nonce=nonce, qop=qop,
                                   nc=params.get("nc", ""), cnonce=params.get("cnonce", ""))
        if not hmac.compare_digest(expected, response.lower()):
            return "bad"
        state = self._nonce_state(nonce)
        return "ok" if state == "fresh" else ("stale" if state == "stale" else "bad")
