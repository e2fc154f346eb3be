"""ICE-TCP fallback with a real browser: Chromium in a network namespace where UDP is dropped.

    root namespace: our server (echo engine), HTTP + ICE UDP + ICE-TCP on the veth address
    namespace NS:   headless Chromium (launched through `ip netns exec`), nftables drops UDP

The only path is TCP, so the call must select the server's `tcptype passive` candidate on the
shared ICE-TCP port and carry DTLS, SCTP and SRTP over RFC 4571 framing.
"""

import asyncio
import socket
import sys
from pathlib import Path

import pytest

from openrealtime.api.embedded import embedded_server
from tests.browser.conftest import CHROMIUM, open_seed_page
from tests.support import server_settings, spoken_wav, wait_for

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required",
]


PROBE = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(3):
    try:
        s.sendto(b"probe", ("{ip}", {port}))
    except OSError:  # EPERM where the fallback (inet output) rules drop it
        pass
"""


def assert_udp_really_blocked(ns) -> None:
    """A datagram from NS to the root side never arrives, and the nftables rule counts it."""
    before = ns.udp_drop_counts()[0]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind((ns.root_ip, 0))
        rx.settimeout(0.5)
        port = rx.getsockname()[1]
        ns.run(sys.executable, "-c", PROBE.format(ip=ns.root_ip, port=port))
        with pytest.raises(socket.timeout):
            rx.recvfrom(100)
    assert ns.udp_drop_counts()[0] >= before + 3


async def test_chromium_falls_back_to_ice_tcp_when_udp_is_blocked(udp_blocked_netns, tmp_path):
    from playwright.async_api import async_playwright

    ns = udp_blocked_netns
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install chromium (.ci/run does)")
    assert_udp_really_blocked(ns)
    wav = spoken_wav(tmp_path / "question.wav", "What is the capital of France?", pad_before_s=0.5, pad_after_s=30.0)
    settings = server_settings(engine="echo", echo_delay_s=0.2, host=ns.root_ip, advertise_ips=[ns.root_ip],
                               api_keys=["test"])
    async with embedded_server(settings) as server:
        mux = server.state.mux
        assert mux.tcp_port, "ICE-TCP must be enabled"
        async with async_playwright() as p:
            context = await p.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=str(ns.wrapper_script(tmp_path, CHROMIUM)),
                headless=True, args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}",
                                     # getUserMedia needs a secure context; plain HTTP on a
                                     # non-loopback address is one only when declared so
                                     f"--unsafely-treat-insecure-origin-as-secure={server.url}"])
            try:
                page = context.pages[0] if context.pages else await context.new_page()
                page.on("console", lambda msg: print("[browser]", msg.text))
                await open_seed_page(page, server.url)  # HTTP over the veth: TCP passes
                call_id = await page.evaluate("([u, s]) => startCall(u, 'test', s, false)",
                                              [server.url, {"type": "realtime", "instructions": "tcp only"}])

                async def created():
                    events = await page.evaluate("window.events")
                    return next((e for e in events if e["type"] == "session.created"), None)

                session = await wait_for(created, timeout=45, what="session.created over ICE-TCP")
                assert session["session"]["instructions"] == "tcp only"

                pair = await wait_for(lambda: page.evaluate("selectedPair()"), what="a selected pair")
                assert pair["protocol"] == "tcp", pair
                assert pair["remotePort"] == mux.tcp_port, (pair, mux.tcp_port)
                assert pair["remoteAddress"] == ns.root_ip, pair

                call = server.state.calls.get(call_id)
                assert call is not None

                async def server_hears_voice():
                    return call.inbound is not None and call.inbound.voiced_frames > 10

                await wait_for(server_hears_voice, what="server hears the browser's voice over TCP")

                async def browser_hears_echo():
                    stats = await page.evaluate("inboundAudio()")
                    return stats and stats["totalAudioEnergy"] > 0.001 and stats["packetsReceived"] > 10 and stats

                await wait_for(browser_hears_echo, what="echoed audio energy over TCP")

                assert mux.stats.tcp_accepted >= 1
                assert mux.udp[0].by_addr == {}, "no UDP address may be learned: UDP is blocked"
                dropped_out, _ = ns.udp_drop_counts()
                assert dropped_out > 3, "Chromium should have tried (and lost) UDP checks first"

                await page.evaluate("window.pc.close()")
                await asyncio.wait_for(call.closed.wait(), 40)
                assert server.state.calls.get(call_id) is None
            finally:
                await context.close()
