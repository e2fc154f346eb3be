"""Waiting in tests: the one polling helper, and the next event of a type on a Realtime WebSocket."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable
from typing import Any


async def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1,
                   what: str | Callable[[], str] = "condition") -> Any:
    """Poll `predicate` (a plain or an async callable) until it returns something truthy, which is
    returned; after `timeout` s fail with `what` (a string, or a callable for a message built at
    failure time) and the last value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        last = predicate()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        if loop.time() >= deadline:
            break
        await asyncio.sleep(interval)
    message = what() if callable(what) else what
    raise AssertionError(f"{message} not met within {timeout} s (last: {last!r})")


async def ws_event(ws, type_: str, timeout: float = 10.0) -> dict:
    """The next server event of `type_` on a Realtime WebSocket (skipping others), or fail after `timeout`."""
    async with asyncio.timeout(timeout):
        while True:
            event = json.loads(await ws.recv())
            if event["type"] == type_:
                return event
