"""The ICE agent aiortc builds: the server's :class:`..ice.ServerIceConnection` during a call's setup.

aiortc builds its ICE agent with ``aiortc.rtcicetransport.Connection(...)``, a module-level name
looked up at call time. :func:`connection_factory` stands in for it: while a call is being set up
(``media.ice.server_ice``, a context variable carrying the call's ICE settings) it builds a
``ServerIceConnection`` (or the settings' ``connection_class``), anywhere else a stock
``aioice.Connection`` (aiortc clients in the same process, e.g. tests and benchmarks, are unaffected).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..ice import ServerIceConnection, current_ice_settings
from .contract import REPLACED


def connection_factory(stock: type) -> Callable[..., Any]:
    def build(*args: Any, **kwargs: Any) -> Any:
        settings = current_ice_settings()
        if settings is None:
            return stock(*args, **kwargs)
        cls = settings.extra.get("connection_class", ServerIceConnection)
        return cls(settings, *args, **kwargs)

    build.__name__ = build.__qualname__ = stock.__name__
    setattr(build, REPLACED, stock)
    return build
