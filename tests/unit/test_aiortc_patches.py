"""aiortc_patches.install() / uninstall(): explicit, idempotent, exactly reversible, refused when aiortc
changed; and a call cannot be built without it."""

from __future__ import annotations

import importlib

import aioice
import pytest

from openrealtime.media import aiortc_patches
from openrealtime.media.aiortc_patches import contract

MODULES = ("aiortc.rtcpeerconnection", "aiortc.codecs", "aiortc.rtcicetransport", "aiortc.rtcdtlstransport",
           "aiortc.rtcrtpsender", "aiortc.rtcrtpreceiver", "aiortc.rtcsctptransport", "aiortc.rtp",
           "aiortc.jitterbuffer", "aioice.ice")


def snapshot() -> dict[tuple[str, str], object]:
    """Every module-level name of the aiortc modules openrealtime deals with, and every attribute of their
    classes (identity is what counts)."""
    out = {}
    for name in MODULES:
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            out[(name, attr)] = value
            if isinstance(value, type) and value.__module__ == name:
                for key, member in vars(value).items():
                    out[(f"{name}.{attr}", key)] = member
    return out


@pytest.fixture
def uninstalled():
    """aiortc as imported, whatever an earlier test in this process did; put back as found afterwards."""
    was = aiortc_patches.installed()
    aiortc_patches.uninstall()
    yield
    aiortc_patches.uninstall()
    if was:
        aiortc_patches.install()


def test_install_then_uninstall_restores_every_original(uninstalled):
    from aiortc import codecs, rtcicetransport, rtcpeerconnection
    from aiortc.rtcdtlstransport import RTCDtlsTransport
    from aiortc.rtcrtpreceiver import RTCRtpReceiver
    from aiortc.rtcrtpsender import RTCRtpSender
    from aiortc.rtcsctptransport import RTCSctpTransport

    stock = snapshot()
    # what aiortc has when nothing is installed: its own classes and one table object
    assert rtcpeerconnection.RTCDtlsTransport is RTCDtlsTransport
    assert rtcpeerconnection.RTCRtpSender is RTCRtpSender and rtcpeerconnection.RTCRtpReceiver is RTCRtpReceiver
    assert rtcpeerconnection.RTCSctpTransport is RTCSctpTransport
    assert rtcpeerconnection.CODECS is codecs.CODECS and type(codecs.CODECS) is dict
    assert rtcpeerconnection.HEADER_EXTENSIONS is codecs.HEADER_EXTENSIONS
    assert rtcicetransport.Connection is aioice.Connection

    aiortc_patches.install()
    assert aiortc_patches.installed()
    installed = snapshot()
    changed = {key for key in stock if installed[key] is not stock[key]}
    assert changed == {(r.module, r.name) for r in aiortc_patches.REPLACEMENTS}, "only the listed names change"
    assert installed.keys() == stock.keys(), "nothing added to aiortc"
    for r in aiortc_patches.REPLACEMENTS:
        assert getattr(r.current(), contract.REPLACED) is stock[(r.module, r.name)], "each records what it replaced"

    aiortc_patches.install()  # idempotent: the same objects stay
    assert all(snapshot()[key] is installed[key] for key in changed)

    aiortc_patches.uninstall()
    assert not aiortc_patches.installed()
    after = snapshot()
    assert after.keys() == stock.keys() and all(after[key] is stock[key] for key in stock)
    aiortc_patches.uninstall()  # idempotent
    assert all(snapshot()[key] is stock[key] for key in stock)


def test_install_refuses_a_changed_aiortc_and_names_the_attribute(uninstalled, monkeypatch):
    from aiortc.rtcrtpreceiver import RTCRtpReceiver

    monkeypatch.delattr(RTCRtpReceiver, "_send_rtcp_pli")
    with pytest.raises(aiortc_patches.AiortcMismatch) as raised:
        aiortc_patches.install()
    assert "aiortc.rtcrtpreceiver.RTCRtpReceiver._send_rtcp_pli: gone" in str(raised.value)
    assert not any(r.applied() for r in aiortc_patches.REPLACEMENTS), "nothing was replaced"


def test_a_call_or_server_ice_without_the_install_fails_at_once(uninstalled):
    from openrealtime.media.call import CallOptions, RealtimeCall
    from openrealtime.media.ice import IceSettings, server_ice

    ice = IceSettings(addresses=(("127.0.0.1", "127.0.0.1"),))
    with pytest.raises(RuntimeError, match=r"aiortc_patches\.install\(\)"):
        RealtimeCall("rtc_test", CallOptions(ice=ice), lambda transport: None)
    with pytest.raises(RuntimeError, match=r"aiortc_patches\.install\(\)"):
        with server_ice(ice):
            pass


async def test_outside_server_objects_aiortc_builds_its_own_classes(uninstalled):
    from aiortc import RTCPeerConnection
    from aiortc.codecs import get_capabilities
    from aiortc.rtcrtpreceiver import RTCRtpReceiver
    from aiortc.rtcrtpsender import RTCRtpSender

    stock_codecs = [c.mimeType for c in get_capabilities("audio").codecs]
    aiortc_patches.install()
    stock = RTCPeerConnection()
    transceiver = stock.addTransceiver("audio")
    assert type(transceiver.sender) is RTCRtpSender and type(transceiver.receiver) is RTCRtpReceiver
    assert [c.mimeType for c in get_capabilities("audio").codecs] == stock_codecs
    with aiortc_patches.server_objects():
        server = RTCPeerConnection()
        ours = server.addTransceiver("audio")
        assert [c.mimeType for c in get_capabilities("audio").codecs] == ["audio/opus", "audio/PCMU", "audio/PCMA"]
    assert type(ours.sender).__name__ == "ServerRtpSender" and type(ours.receiver).__name__ == "ServerRtpReceiver"
    assert type(ours.receiver.transport).__name__ == "ServerDtlsTransport"
    await server.close()
    await stock.close()
