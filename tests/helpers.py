"""Assertions shared by the test modules."""

import httpx


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


def server_settings(**overrides):
    """Server settings for an in-process test server: free HTTP, UDP and TCP (ICE) ports."""
    import socket

    from openrealtime.api.embedded import free_port
    from openrealtime.config import Settings

    values = {"port": 0, "udp_port": free_port(kind=socket.SOCK_DGRAM), "tcp_port": free_port()}
    values.update(overrides)
    return Settings(**values)


async def wait_for(predicate, timeout=20.0, interval=0.1, what="condition"):
    """Poll an async predicate until it returns something truthy (returned), or fail after `timeout`."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = None
    while loop.time() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout} s (last: {last!r})")


def speechlike(seconds: float, *, rate: int = 48000, seed: int = 0, noise: float = 0.02):
    """Voiced harmonics with a syllable-rate envelope and a little noise (Opus SILK/hybrid
    territory), as int16 samples at `rate`."""
    import numpy as np

    t = np.arange(int(rate * seconds)) / rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 3.5 * t)
    hiss = np.random.default_rng(seed).normal(0, noise, t.size) if noise else 0.0
    return (9000 * (voice * env / 2 + hiss)).astype("<i2")


async def ws_event(ws, type_: str, timeout: float = 10.0) -> dict:
    """The next server event of `type_` on a Realtime WebSocket (skipping others), or fail after `timeout`."""
    import asyncio
    import json

    async with asyncio.timeout(timeout):
        while True:
            event = json.loads(await ws.recv())
            if event["type"] == type_:
                return event
