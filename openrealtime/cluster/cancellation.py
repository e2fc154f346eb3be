"""Loops that talk to the cluster store end when cancelled, even when the Redis client swallowed it.

redis-py can turn a cancellation that lands inside a command into a connection error (redis-py#2028 and
its kin): a loop that catches store errors and goes on would then never end, and whoever awaits it (a
node's shutdown, the event loop's close) waits forever. Python 3.11 keeps the request on the task
(`Task.cancelling()`), so each such loop calls `raise_if_cancelled()` after its store calls.
"""

from __future__ import annotations

import asyncio


def raise_if_cancelled() -> None:
    """Raise CancelledError if the current task was asked to stop (whatever swallowed the request)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()
