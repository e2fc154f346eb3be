"""aiortc's codec and header-extension tables, with the server's table for the server's objects.

aiortc negotiates from two module-level tables, ``CODECS`` and ``HEADER_EXTENSIONS`` (read by
``RTCPeerConnection.setRemoteDescription`` / ``createOffer`` and by ``get_capabilities``, which
``setCodecPreferences`` checks against). :class:`ScopedTable` stands in for each of them: inside
:func:`.scope.server_objects` it gives the server's table (media/sdp_policy.py: Opus with
transport-cc and in-band FEC, PCMU, PCMA; H.264 only; the header extensions the server implements),
anywhere else aiortc's own lists, untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..sdp_policy import server_codecs, server_header_extensions
from .contract import REPLACED
from .scope import building_server_objects


class ScopedTable(Mapping):
    def __init__(self, stock: dict[str, list[Any]], server: dict[str, list[Any]]) -> None:
        self.stock = stock
        self.server = server
        setattr(self, REPLACED, stock)

    def __getitem__(self, kind: str) -> list[Any]:
        return (self.server if building_server_objects() else self.stock)[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self.stock)

    def __len__(self) -> int:
        return len(self.stock)


def _table(entries: Callable[[str], list[Any]]) -> dict[str, list[Any]]:
    return {kind: entries(kind) for kind in ("audio", "video")}


def scoped_codecs(stock: dict[str, list[Any]]) -> ScopedTable:
    return ScopedTable(stock, _table(server_codecs))


def scoped_header_extensions(stock: dict[str, list[Any]]) -> ScopedTable:
    return ScopedTable(stock, _table(server_header_extensions))
