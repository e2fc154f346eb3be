"""In-process test servers: their settings, and the OpenAI error shape their replies must have."""

from __future__ import annotations

import socket

import httpx

from openrealtime.api.embedded import free_port
from openrealtime.config import Settings


def server_settings(**overrides) -> Settings:
    """Server settings for an in-process test server: free HTTP, UDP and TCP (ICE) ports."""
    values = {"port": 0, "udp_port": free_port(kind=socket.SOCK_DGRAM), "tcp_port": free_port()}
    values.update(overrides)
    return Settings(**values)


def assert_openai_error(resp: httpx.Response, status: int, code: str | None = None, param: str | None = None):
    """The reply is `status` with exactly OpenAI's error shape; returns the inner error."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    if param is not None:
        assert body["error"]["param"] == param, body
    return body["error"]
