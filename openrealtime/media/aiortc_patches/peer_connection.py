"""The classes ``RTCPeerConnection`` builds its transports, senders and receivers from.

aiortc's peer connection builds them by module-level names (``RTCDtlsTransport(...)``,
``RTCRtpSender(...)``, ``RTCRtpReceiver(...)``, ``RTCSctpTransport(...)`` in
``aiortc.rtcpeerconnection``, looked up at call time). :func:`scoped_class` stands in for each: inside
:func:`.scope.server_objects` it builds openrealtime's subclass, anywhere else aiortc's class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .contract import REPLACED
from .scope import building_server_objects


def scoped_class(server: type) -> Callable[[type], Callable[..., Any]]:
    """What replaces aiortc's ``stock`` class: a factory for ``server`` (a subclass of it) or ``stock``."""

    def replace(stock: type) -> Callable[..., Any]:
        if not issubclass(server, stock):
            raise TypeError(f"{server.__name__} does not derive from {stock.__module__}.{stock.__qualname__}")

        def build(*args: Any, **kwargs: Any) -> Any:
            return (server if building_server_objects() else stock)(*args, **kwargs)

        build.__name__ = build.__qualname__ = stock.__name__
        build.__doc__ = f"{stock.__name__}, or openrealtime's {server.__name__} for the server's objects."
        setattr(build, REPLACED, stock)
        return build

    return replace
