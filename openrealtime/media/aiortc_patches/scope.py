"""Which aiortc objects are the server's: the ones built inside :func:`server_objects`.

aiortc builds a peer connection's transports, senders and receivers itself (in ``addTransceiver``
and ``setRemoteDescription``). Once :func:`.install` has run, it builds them through factories that
return openrealtime's subclasses while this block is active (a context variable, so a stock aiortc
peer connection in the same process, e.g. a test client, gets aiortc's own classes) and reads
openrealtime's codec table in that block. The objects keep their class for their whole life: what
runs later on their receive loops needs no context.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

_SERVER = contextvars.ContextVar("openrealtime_aiortc_server_objects", default=False)


@contextmanager
def server_objects() -> Iterator[None]:
    """Within this block, aiortc builds the server's variants of its objects (see the module doc)."""
    token = _SERVER.set(True)
    try:
        yield
    finally:
        _SERVER.reset(token)


def building_server_objects() -> bool:
    return _SERVER.get()
