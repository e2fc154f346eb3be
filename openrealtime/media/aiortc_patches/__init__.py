"""openrealtime's changes to aiortc 1.16 / aioice 0.13, in one place, installed explicitly.

The server runs its calls on subclasses of aiortc's objects (one module each, named for what it
changes): :mod:`.dtls_transport` (transport-cc both ways, bad packets dropped), :mod:`.rtp_sender`
(transport-wide sequence numbers, FEC Opus, a cheap audio level), :mod:`.rtp_receiver` (Opus
FEC/PLC, a video jitter buffer that gives up, lazy decoder threads), :mod:`.sctp_transport`
(malformed SCTP dropped, reassembly bounded); its ICE agent is media/ice.py's ``ServerIceConnection``
and its codec table media/sdp_policy.py's.

aiortc builds those objects itself, by module-level names it looks up at call time. :func:`install`
(run once at startup by ``ServerState.build``, so by ``openrealtime serve`` and ``embedded_server``)
puts a factory or table in place of each (:data:`REPLACEMENTS`; each records what it replaced) after
checking every aiortc / aioice internal openrealtime touches (:mod:`.contract`). The factories build
the server's variants only inside :func:`server_objects` (media/call.py wraps a call's negotiation
in it) or, for the ICE agent, ``media.ice.server_ice``; anywhere else they build aiortc's own classes,
so an aiortc client in the same process (the tests' and benches' callers) runs stock aiortc.
:func:`uninstall` puts back exactly what was there. A call built before :func:`install` fails at once
(``RealtimeCall`` calls :func:`require_installed`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import contract
from .codec_tables import scoped_codecs, scoped_header_extensions
from .contract import REPLACED
from .dtls_transport import ServerDtlsTransport
from .ice_agent import connection_factory
from .peer_connection import scoped_class
from .rtp_receiver import ServerRtpReceiver
from .rtp_sender import ServerRtpSender
from .scope import building_server_objects, server_objects
from .sctp_transport import ServerSctpTransport

__all__ = ["AiortcMismatch", "REPLACEMENTS", "install", "installed", "require_installed", "server_objects",
           "building_server_objects", "uninstall"]


class AiortcMismatch(RuntimeError):
    """The installed aiortc / aioice is not what openrealtime's patches were written for."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("openrealtime does not fit the installed aiortc/aioice (it needs aiortc==1.16.*, "
                         "aioice==0.13.*; see openrealtime/media/aiortc_patches/contract.py): "
                         + "; ".join(problems))


@dataclass(frozen=True)
class Replacement:
    """A module-level name of aiortc's and what stands in for it (``make(original)``, which records the
    original under ``contract.REPLACED``)."""

    module: str
    name: str
    make: Callable[[Any], Any]

    def current(self) -> Any:
        return getattr(importlib.import_module(self.module), self.name)

    def applied(self) -> bool:
        return hasattr(self.current(), REPLACED) and not isinstance(self.current(), type)

    def apply(self) -> None:
        if not self.applied():
            setattr(importlib.import_module(self.module), self.name, self.make(self.current()))

    def restore(self) -> None:
        if self.applied():
            setattr(importlib.import_module(self.module), self.name, getattr(self.current(), REPLACED))


REPLACEMENTS: tuple[Replacement, ...] = (
    Replacement("aiortc.rtcpeerconnection", "RTCDtlsTransport", scoped_class(ServerDtlsTransport)),
    Replacement("aiortc.rtcpeerconnection", "RTCRtpSender", scoped_class(ServerRtpSender)),
    Replacement("aiortc.rtcpeerconnection", "RTCRtpReceiver", scoped_class(ServerRtpReceiver)),
    Replacement("aiortc.rtcpeerconnection", "RTCSctpTransport", scoped_class(ServerSctpTransport)),
    Replacement("aiortc.rtcpeerconnection", "CODECS", scoped_codecs),
    Replacement("aiortc.rtcpeerconnection", "HEADER_EXTENSIONS", scoped_header_extensions),
    Replacement("aiortc.codecs", "CODECS", scoped_codecs),
    Replacement("aiortc.codecs", "HEADER_EXTENSIONS", scoped_header_extensions),
    Replacement("aiortc.rtcicetransport", "Connection", connection_factory),
)


def installed() -> bool:
    return all(r.applied() for r in REPLACEMENTS)


def install() -> None:
    """Put the factories and tables in place (idempotent). Raises :class:`AiortcMismatch`, naming each
    internal that changed, when aiortc or aioice is not what they were written for; then nothing is
    replaced."""
    if installed():
        return
    problems = contract.problems()
    if problems:
        raise AiortcMismatch(problems)
    for replacement in REPLACEMENTS:
        replacement.apply()


def uninstall() -> None:
    """Put back exactly what :func:`install` replaced (idempotent)."""
    for replacement in REPLACEMENTS:
        replacement.restore()


def require_installed(what: str) -> None:
    if not installed():
        raise RuntimeError(f"{what} needs openrealtime's aiortc patches: call "
                           "openrealtime.media.aiortc_patches.install() at startup (ServerState.build does, "
                           "so openrealtime serve and embedded_server have them)")
