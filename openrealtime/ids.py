"""Identifier formats used on the wire (see spec §10)."""

from __future__ import annotations

import secrets
import string

_B62 = string.ascii_letters + string.digits


def _b62(n: int) -> str:
    raw = secrets.token_bytes(n * 2)  # one draw; modulo bias of 256 % 62 is irrelevant for ids
    return "".join(_B62[b % 62] for b in raw[:n])


def event_id() -> str:
    return "event_" + _b62(21)


def item_id() -> str:
    return "item_" + _b62(21)


def response_id() -> str:
    return "resp_" + _b62(21)


def conversation_id() -> str:
    return "conv_" + _b62(21)


def session_id() -> str:
    return "sess_" + _b62(21)


def call_tool_id() -> str:
    return "call_" + _b62(16)


def client_secret() -> str:
    return "ek_" + secrets.token_hex(16)


def rtc_call_id() -> str:
    return "rtc_" + secrets.token_hex(16)


def live_session_id() -> str:
    """A Live API session (`client.live`): opaque, `live_` prefixed (clients keep the prefix)."""
    return "live_" + _b62(24)


def delegation_id() -> str:
    """A Live session's delegation (`session.delegation.created`)."""
    return "deleg_" + _b62(21)
