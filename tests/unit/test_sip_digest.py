"""SIP digest authentication (openrealtime/sip/digest.py): challenge, a client's answer checked, stale and forged
nonces, wrong passwords and users; the passwords among the server's secret values."""

import re

from openrealtime.config import Settings
from openrealtime.sip.digest import DigestAuth, digest_response, parse_credentials


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def answer(challenge: str, *, user: str = "trunk", password: str = "pw", qop: bool = True,
           nonce: str | None = None) -> str:
    """What a client sends back (RFC 2617), built independently of the server's parser."""
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
    nonce = nonce or fields["nonce"]
    uri = "sip:proj@127.0.0.1:5060"
    extra = {"qop": "auth", "nc": "00000001", "cnonce": "0a4f113b"} if qop else {}
    response = digest_response(username=user, realm=fields["realm"], password=password, method="INVITE", uri=uri,
                               nonce=nonce, qop=extra.get("qop"), nc=extra.get("nc", ""),
                               cnonce=extra.get("cnonce", ""))
    parts = [f'username="{user}"', f'realm="{fields["realm"]}"', f'nonce="{nonce}"', f'uri="{uri}"',
             f'response="{response}"', "algorithm=MD5", f'opaque="{fields["opaque"]}"']
    if qop:
        parts += ["qop=auth", "nc=00000001", 'cnonce="0a4f113b"']
    return "Digest " + ", ".join(parts)


def test_a_challenge_answered_right_and_wrong():
    clock = Clock()
    auth = DigestAuth({"trunk": "pw", "other": "x"}, clock=clock, nonce_ttl_s=300)
    challenge = auth.challenge()
    assert challenge.startswith('Digest realm="openrealtime", nonce="') and 'qop="auth"' in challenge
    assert "algorithm=MD5" in challenge and "stale" not in challenge
    assert auth.check("INVITE", []) == ("missing", None)
    assert auth.check("INVITE", [answer(challenge)]) == ("ok", "trunk")
    assert auth.check("INVITE", [answer(challenge, qop=False)]) == ("ok", "trunk")  # RFC 2069 clients
    assert auth.check("INVITE", [answer(challenge, password="nope")]) == ("bad", "trunk")
    assert auth.check("INVITE", [answer(challenge, user="nobody")]) == ("bad", "nobody")
    assert auth.check("BYE", [answer(challenge)]) == ("bad", "trunk")  # the answer covers the method
    assert auth.check("INVITE", ["Basic dHJ1bms6cHc="]) == ("missing", None)
    forged = auth.nonce()[:-2] + "AA"
    assert auth.check("INVITE", [answer(challenge, nonce=forged)]) == ("bad", "trunk")
    clock.now += 301
    assert auth.check("INVITE", [answer(challenge)]) == ("stale", "trunk")  # right, but its nonce expired
    assert "stale=true" in auth.challenge(stale=True)
    other_server = DigestAuth({"trunk": "pw"}, clock=clock)
    assert other_server.check("INVITE", [answer(auth.challenge())]) == ("bad", "trunk")  # nonces are per server


def test_parse_credentials():
    assert parse_credentials('Digest username="a\\"b", nc=00000001, qop=auth') == {
        "username": 'a"b', "nc": "00000001", "qop": "auth"}
    assert parse_credentials("Digest garbage") is None
    assert parse_credentials('Bearer x="y"') is None


def test_passwords_are_secret_values():
    settings = Settings(sip_auth=["trunk:s3cret:with-colon"])
    assert "s3cret:with-colon" in settings.secret_values
    assert DigestAuth.from_specs(settings.sip_auth).accounts == {"trunk": "s3cret:with-colon"}
    assert DigestAuth.from_specs([]) is None
