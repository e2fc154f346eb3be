"""Single-port ICE: every call on one UDP port and one ICE-TCP port (real aiortc/aioice peers, loopback)."""

import asyncio
import dataclasses
import re
import secrets
import socket
from pathlib import Path

import httpx
import pytest
from aioice import stun
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcconfiguration import RTCBundlePolicy

from openrealtime.api.embedded import embedded_server, free_port
from openrealtime.client.rtc import RealtimeRtcClient
from openrealtime.config import Settings
from openrealtime.media import aiortc_patches
from openrealtime.media.ice import IceSettings, ServerIceConnection, new_ufrag, server_ice
from openrealtime.media.ice_mux import (
    TCP_PRIORITY,
    UDP_PRIORITY,
    MuxBindError,
    MuxSet,
    MuxStunProtocol,
    _bind_error,
    address_pairs,
)
from tests.support import wait_for

OFFER = (Path(__file__).parent.parent / "fixtures" / "chromium-156-offer.sdp").read_text()
LOOP = "127.0.0.1"


# ---- helpers -------------------------------------------------------------------------------------


@pytest.fixture
async def mux():
    m = MuxSet([(LOOP, LOOP)], udp_port=0, tcp_port=0)  # 0: free ports, never 3478/443 in tests
    await m.start()
    yield m
    await m.close()


def ice_settings(m: MuxSet) -> IceSettings:
    return IceSettings(addresses=m.addresses, mux=m)


def ice_connection(pc: RTCPeerConnection):
    """The aioice Connection under a BUNDLEd PC (data channel or first transceiver)."""
    if pc.sctp is not None:
        return pc.sctp.transport.transport._connection
    return pc.getTransceivers()[0].receiver.transport.transport._connection


async def echo_call(settings: IceSettings):
    """A stock aiortc client calling an aiortc answerer built with our ICE; the server echoes."""
    aiortc_patches.install()  # what a server does at startup: server_ice needs its ICE agent factory
    server = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    channel = client.createDataChannel("chat")
    received: asyncio.Queue = asyncio.Queue()
    opened = asyncio.Event()

    @server.on("datachannel")
    def _dc(ch):
        @ch.on("message")
        def _msg(message):
            ch.send("echo:" + message)

    channel.on("open", opened.set)
    channel.on("message", received.put_nowait)
    await client.setLocalDescription(await client.createOffer())
    with server_ice(settings):
        await server.setRemoteDescription(client.localDescription)
    await server.setLocalDescription(await server.createAnswer())
    await client.setRemoteDescription(server.localDescription)
    await asyncio.wait_for(opened.wait(), 10)
    return client, server, channel, received


async def roundtrip(channel, received, text: str, timeout: float = 5) -> None:
    channel.send(text)
    assert await asyncio.wait_for(received.get(), timeout) == "echo:" + text


def binding_request(ufrag: str, pwd: str, remote_ufrag: str = "cli1", *, use_candidate: bool = False,
                    controlling: bool = True) -> stun.Message:
    msg = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    msg.attributes["USERNAME"] = f"{ufrag}:{remote_ufrag}"
    msg.attributes["PRIORITY"] = 1853824767
    if controlling:
        msg.attributes["ICE-CONTROLLING"] = secrets.randbits(64)
        if use_candidate:
            msg.attributes["USE-CANDIDATE"] = None
    else:
        msg.attributes["ICE-CONTROLLED"] = secrets.randbits(64)
    msg.add_message_integrity(pwd.encode())
    return msg


def frame(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


async def read_frame(reader: asyncio.StreamReader, timeout: float = 3) -> bytes:
    head = await asyncio.wait_for(reader.readexactly(2), timeout)
    return await asyncio.wait_for(reader.readexactly(int.from_bytes(head, "big")), timeout)


class UdpPeer(asyncio.DatagramProtocol):
    def __init__(self):
        self.queue: asyncio.Queue = asyncio.Queue()

    def datagram_received(self, data, addr):
        self.queue.put_nowait((data, addr))


async def udp_peer():
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(UdpPeer, local_addr=(LOOP, 0))
    return transport, peer


async def gathered_connection(m: MuxSet) -> ServerIceConnection:
    conn = ServerIceConnection(ice_settings(m), ice_controlling=False)
    await conn.gather_candidates()
    return conn


# ---- (1) contract: the answer carries exactly the configured candidates --------------------------


CANDIDATE = re.compile(r"^a=candidate:(\S+) (\d) (udp|tcp) (\d+) (\S+) (\d+) typ host( tcptype passive)?$")


def candidate_lines(sdp: str) -> list[str]:
    return [ln for ln in sdp.split("\r\n") if ln.startswith("a=candidate:")]


async def test_answer_carries_exactly_the_configured_candidates():
    udp_port, tcp_port = 0, free_port(LOOP)
    settings = Settings(port=0, engine="echo", udp_port=udp_port, tcp_port=tcp_port,
                        advertise_ips=[LOOP, "203.0.113.7"], bind_ips=[LOOP])
    async with embedded_server(settings) as server:
        mux = server.state.mux
        assert mux is not None and mux.started
        async with httpx.AsyncClient() as http:
            resp = await http.post(server.url + "/v1/realtime/calls", content=OFFER,
                                   headers={"Authorization": "Bearer x", "Content-Type": "application/sdp"})
        assert resp.status_code == 201, resp.text
        sdp = resp.text
        assert "a=end-of-candidates" not in sdp
        got = [CANDIDATE.match(ln).groups()[1:] for ln in candidate_lines(sdp)]
        per_section = [
            ("1", "udp", str(UDP_PRIORITY), LOOP, str(mux.udp_port), None),
            ("1", "tcp", str(TCP_PRIORITY), LOOP, str(tcp_port), " tcptype passive"),
            ("1", "udp", str(UDP_PRIORITY), "203.0.113.7", str(mux.udp_port), None),
            ("1", "tcp", str(TCP_PRIORITY), "203.0.113.7", str(tcp_port), " tcptype passive"),
        ]
        sections = sdp.count("\r\nm=")
        assert got == per_section * sections  # UDP first, no component 2, nothing else
        for m_line in re.findall(r"^m=\S+ (\d+) ", sdp, re.M):
            assert m_line == str(mux.udp_port)
        assert f"c=IN IP4 {LOOP}" in sdp
        ufrag = re.search(r"a=ice-ufrag:(\S+)", sdp).group(1)
        assert len(ufrag) >= 16 and mux.has_ufrag(ufrag)
        (call,) = server.state.calls.all()
        conn = ice_connection(call.pc)
        assert isinstance(conn, ServerIceConnection)
        # no per-call sockets: every protocol is a virtual one on the shared ports
        assert conn._protocols and all(isinstance(p, MuxStunProtocol) for p in conn._protocols)
        await call.hangup("test")
        assert not mux.has_ufrag(ufrag) and mux.calls == 0


async def test_tcp_port_zero_disables_ice_tcp_and_ports_come_from_settings():
    udp_port = free_port(LOOP, socket.SOCK_DGRAM)
    async with embedded_server(Settings(port=0, engine="echo", udp_port=udp_port, tcp_port=0)) as server:
        assert server.state.mux.udp_port == udp_port and server.state.mux.tcp_port is None
        async with httpx.AsyncClient() as http:
            resp = await http.post(server.url + "/v1/realtime/calls", content=OFFER,
                                   headers={"Authorization": "Bearer x", "Content-Type": "application/sdp"})
        assert resp.status_code == 201, resp.text
        lines = candidate_lines(resp.text)
        assert lines and all(CANDIDATE.match(ln).group(3) == "udp" for ln in lines)
        assert all(f" {udp_port} typ host" in ln for ln in lines)
    assert server.state.mux.calls == 0 and not server.state.mux.started


def test_address_pairs_nat_and_errors():
    assert address_pairs([], [LOOP]) == ((LOOP, LOOP),)
    assert address_pairs([], ["203.0.113.7"]) == (("0.0.0.0", "203.0.113.7"),)  # NAT 1:1: not local
    assert address_pairs(["10.0.0.5"], ["203.0.113.7", "198.51.100.2"]) == (
        ("10.0.0.5", "203.0.113.7"), ("10.0.0.5", "198.51.100.2"))
    assert address_pairs(["10.0.0.5", "10.0.0.6"], ["203.0.113.7", "198.51.100.2"]) == (
        ("10.0.0.5", "203.0.113.7"), ("10.0.0.6", "198.51.100.2"))
    with pytest.raises(ValueError, match="--bind-ip"):
        address_pairs(["10.0.0.5", "10.0.0.6"], ["203.0.113.7"])


def test_privileged_port_error_says_how_to_fix():
    err = _bind_error(PermissionError(13, "Permission denied"), "TCP", "0.0.0.0", 443)
    assert isinstance(err, MuxBindError)
    text = str(err)
    assert "--tcp-port" in text and "setcap 'cap_net_bind_service=+ep'" in text and "forward" in text


async def test_port_in_use_fails_at_start(mux):
    other = MuxSet([(LOOP, LOOP)], udp_port=mux.udp_port, tcp_port=None)
    with pytest.raises(MuxBindError, match="in use"):
        await other.start()
    assert not other.started


def test_ufrags_are_long_unique_and_prefixable():
    taken = {"x"}
    first = new_ufrag("w7")
    assert first.startswith("w7") and len(first) >= 18 and re.fullmatch(r"[A-Za-z0-9]+", first)
    assert len(new_ufrag("a" * 20)) == 36  # the prefix never eats the >= 16 random characters
    seen = [new_ufrag("", taken.__contains__) for _ in range(200)]
    assert len(set(seen)) == 200
    with pytest.raises(ValueError):
        new_ufrag("bad:prefix")


# ---- (2) many calls, one UDP port ----------------------------------------------------------------


async def test_five_concurrent_calls_share_one_udp_port(mux):
    calls = await asyncio.gather(*(echo_call(ice_settings(mux)) for _ in range(5)))
    try:
        assert mux.calls == 5
        ufrags = set()
        for client, server, channel, received in calls:
            pair = ice_connection(client)._nominated[1]
            assert pair.remote_candidate.port == mux.udp_port  # the client talks to the mux port
            server_conn = ice_connection(server)
            assert isinstance(server_conn._nominated[1].protocol, MuxStunProtocol)
            ufrags.add(server_conn.local_username)
        assert len(ufrags) == 5
        await asyncio.gather(*(roundtrip(ch, q, f"hello {i}") for i, (_, _, ch, q) in enumerate(calls)))
        for i in range(20):  # interleaved traffic stays with its own call
            for n, (_, _, ch, q) in enumerate(calls):
                await roundtrip(ch, q, f"{n}/{i}")
        assert mux.address_count >= 5
    finally:
        for client, server, _, _ in calls:
            await client.close()
            await server.close()
    assert mux.calls == 0 and mux.address_count == 0 and not mux._transactions


async def test_app_calls_connect_through_the_mux_port():
    settings = Settings(port=0, engine="echo", udp_port=0, tcp_port=free_port(LOOP))
    async with embedded_server(settings) as server:
        clients = [RealtimeRtcClient(server.url, session={"type": "realtime"}) for _ in range(3)]
        try:
            for resp in await asyncio.gather(*(c.connect() for c in clients)):
                assert resp.status_code == 201, resp.text
            for c in clients:
                assert (await c.next_event("session.created", timeout=10))["type"] == "session.created"
                assert ice_connection(c.pc)._nominated[1].remote_candidate.port == server.state.mux.udp_port
        finally:
            for c in clients:
                await c.close()
        await wait_for(lambda: server.state.mux.calls == 0, 5, interval=0.05, what="no calls left on the mux")


async def test_without_a_mux_each_call_keeps_its_own_socket():
    settings = IceSettings(addresses=((LOOP, LOOP),))
    client, server, channel, received = await echo_call(settings)
    try:
        await roundtrip(channel, received, "fallback")
        conn = ice_connection(server)
        assert isinstance(conn, ServerIceConnection)
        assert not any(isinstance(p, MuxStunProtocol) for p in conn._protocols)
    finally:
        await client.close()
        await server.close()


# ---- UDP demux rules -----------------------------------------------------------------------------


async def test_udp_learns_only_authenticated_sources_and_bounds_them(mux):
    conn = await gathered_connection(mux)
    server = (LOOP, mux.udp_port)
    peers = [await udp_peer() for _ in range(10)]
    try:
        # unknown ufrag and non-STUN from an unknown address: dropped, no reply
        t0, p0 = peers[0]
        t0.sendto(bytes(binding_request("nosuchufrag12345", conn.local_password)), server)
        t0.sendto(b"\x17\xfe\xfd" + bytes(40), server)
        await asyncio.sleep(0.1)
        assert p0.queue.empty() and mux.address_count == 0
        # valid checks from 10 sources: each answered, at most 8 remembered (least recent evicted)
        for transport, peer in peers:
            request = binding_request(conn.local_username, conn.local_password)
            transport.sendto(bytes(request), server)
            data, _ = await asyncio.wait_for(peer.queue.get(), 2)
            response = stun.parse_message(data)
            assert response.message_class == stun.Class.RESPONSE
            assert response.transaction_id == request.transaction_id
            assert response.attributes["XOR-MAPPED-ADDRESS"] == transport.get_extra_info("sockname")
            assert response.check_message_integrity(conn.local_password.encode())
        learned = mux.learned_addresses(conn)
        assert len(learned) == 8 == mux.address_count
        assert learned == [t.get_extra_info("sockname") for t, _ in peers[2:]]
        # another call never takes over a learned address
        other = await gathered_connection(mux)
        t9, p9 = peers[9]
        t9.sendto(bytes(binding_request(other.local_username, other.local_password)), server)
        await asyncio.sleep(0.1)
        assert p9.queue.empty() and mux.learned_addresses(other) == []
        await other.close()
    finally:
        for transport, _ in peers:
            transport.close()
        await conn.close()
    assert mux.calls == 0 and mux.address_count == 0


# ---- (3) ICE-TCP ---------------------------------------------------------------------------------


async def test_tcp_binding_request_gets_a_framed_success_response(mux):
    conn = await gathered_connection(mux)
    try:
        reader, writer = await asyncio.open_connection(LOOP, mux.tcp_port)
        request = binding_request(conn.local_username, conn.local_password)
        writer.write(frame(bytes(request)))
        response = stun.parse_message(await read_frame(reader))
        assert response.message_class == stun.Class.RESPONSE
        assert response.transaction_id == request.transaction_id
        assert response.attributes["XOR-MAPPED-ADDRESS"] == writer.get_extra_info("sockname")[:2]
        assert response.check_message_integrity(conn.local_password.encode())
        assert mux.stats.tcp_accepted == 1
        # a second check on the same stream (split across two writes) is answered too
        request2 = binding_request(conn.local_username, conn.local_password)
        data = frame(bytes(request2))
        writer.write(data[:7])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(data[7:])
        assert stun.parse_message(await read_frame(reader)).transaction_id == request2.transaction_id
        writer.close()
    finally:
        await conn.close()
    assert mux.calls == 0


@pytest.mark.parametrize("first", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # length 0x4745: never completes → timeout
    frame(b"\x16\xfe\xfd" + bytes(30)),  # DTLS-looking frame
    frame(bytes(binding_request("nosuchufrag12345", "x" * 22))),  # unknown ufrag
    None,  # wrong MESSAGE-INTEGRITY for a known ufrag
    b"",  # nothing at all → first-frame timeout
])
async def test_tcp_bad_or_missing_first_frame_closes_the_stream(first):
    m = MuxSet([(LOOP, LOOP)], udp_port=0, tcp_port=0, first_frame_timeout_s=0.3)
    await m.start()
    conn = await gathered_connection(m)
    try:
        if first is None:
            first = frame(bytes(binding_request(conn.local_username, "wrong-password-123456")))
        reader, writer = await asyncio.open_connection(LOOP, m.tcp_port)
        writer.write(first)
        assert await asyncio.wait_for(reader.read(), 30) == b""  # closed, no reply
        writer.close()
        assert m.stats.tcp_rejected == 1 and m.stats.tcp_accepted == 0 and m._pending_streams == 0
    finally:
        await conn.close()
        await m.close()


async def tcp_nominate(m: MuxSet, conn: ServerIceConnection):
    """Play a controlling ICE-TCP peer by hand until the server's connect() completes."""
    client_ufrag, client_pwd = "tcpclient", "tcpclientpassword12345"
    conn.remote_username, conn.remote_password = client_ufrag, client_pwd
    connect = asyncio.create_task(conn.connect())
    reader, writer = await asyncio.open_connection(LOOP, m.tcp_port)
    request = binding_request(conn.local_username, conn.local_password, client_ufrag, use_candidate=True)
    writer.write(frame(bytes(request)))
    while not connect.done():
        try:
            message = stun.parse_message(await read_frame(reader, timeout=5))
        except asyncio.TimeoutError:
            break
        if message.message_class == stun.Class.REQUEST:  # the server's triggered check
            assert message.attributes["USERNAME"] == f"{client_ufrag}:{conn.local_username}"
            assert message.check_message_integrity(client_pwd.encode())
            response = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.RESPONSE,
                                    transaction_id=message.transaction_id)
            response.attributes["XOR-MAPPED-ADDRESS"] = (LOOP, m.tcp_port)
            response.add_message_integrity(client_pwd.encode())
            writer.write(frame(bytes(response)))
            await asyncio.wait_for(asyncio.shield(connect), 3)
    await connect
    return reader, writer


async def test_tcp_data_flows_and_losing_the_nominated_stream_ends_ice_promptly(mux):
    conn = await gathered_connection(mux)
    try:
        reader, writer = await tcp_nominate(mux, conn)
        pair = conn._nominated[1]
        assert pair.protocol.kind == "tcp" and pair.remote_addr == writer.get_extra_info("sockname")[:2]
        # DTLS/SRTP-class frames are delivered as data, and sent back framed
        writer.write(frame(b"\x17" + b"x" * 99))
        assert await asyncio.wait_for(conn.recv(), 2) == b"\x17" + b"x" * 99
        await conn.send(b"\x80" + b"y" * 159)
        assert await read_frame(reader) == b"\x80" + b"y" * 159
        events = asyncio.create_task(conn.get_event())
        writer.transport.abort()  # the peer's TCP connection is gone
        await asyncio.wait_for(events, 30)
        # ended by the lost stream itself (not by consent expiry, which would leave tcp_nominated_lost at 0)
        assert conn._closed and mux.calls == 0 and mux.stats.tcp_nominated_lost == 1
    finally:
        await conn.close()


async def test_tcp_writes_are_dropped_above_the_high_water_mark():
    m = MuxSet([(LOOP, LOOP)], udp_port=0, tcp_port=0, tcp_high_water=64 << 10)
    await m.start()
    conn = await gathered_connection(m)
    try:
        reader, writer = await tcp_nominate(m, conn)
        writer.transport.pause_reading()  # a stalled peer
        for _ in range(20000):
            await conn.send(b"\x80" + bytes(1199))
        assert m.stats.tcp_tx_dropped > 0
        (stream,) = m._calls[conn.local_username].streams
        assert stream.transport.get_write_buffer_size() <= (64 << 10) + 1202
        writer.close()
    finally:
        await conn.close()
        await m.close()


# ---- consent freshness (RFC 7675, ice.ServerIceConnection.query_consent) --------------------------


async def test_a_vanished_peer_ends_the_call_by_consent_expiry():
    """Consent is checked every consent_interval_s and expires consent_timeout_s after the last answered
    check (5 s / 30 s in production; shortened here so the test takes a few seconds)."""
    settings = Settings(port=0, engine="echo", udp_port=0, tcp_port=0)
    async with embedded_server(settings) as server:
        server.state.ice = dataclasses.replace(server.state.ice, consent_interval_s=0.2, consent_timeout_s=1.0)
        client = RealtimeRtcClient(server.url, session={"type": "realtime"})
        try:
            assert (await client.connect()).status_code == 201
            await client.next_event("session.created", timeout=10)
            (call,) = server.state.calls.all()
            # the peer vanishes: its sockets close without a word to the server
            for protocol in ice_connection(client.pc)._protocols:
                protocol.transport.close()
            await asyncio.wait_for(call.closed.wait(), 15)
            # our ICE agent closes → aiortc reports ICE "failed" or a closed PC; the reason says why
            assert call.stats.end_reason == "consent_expired"
            assert server.state.mux.calls == 0 and server.state.mux.address_count == 0
        finally:
            await client.close()


async def test_idle_calls_address_moves_to_a_new_call_live_one_does_not(mux):
    """Port reuse: a new client on the 5-tuple of a call that went quiet is not stalled;
    the address of a call that is still receiving is never taken over."""
    from openrealtime.media import ice_mux

    first = await gathered_connection(mux)
    second = await gathered_connection(mux)
    server = (LOOP, mux.udp_port)
    transport, peer = await udp_peer()
    try:
        transport.sendto(bytes(binding_request(first.local_username, first.local_password)), server)
        await asyncio.wait_for(peer.queue.get(), 2)
        addr = transport.get_extra_info("sockname")
        assert mux.learned_addresses(first) == [addr]
        # the first call is live (it just received): the second call's check is dropped
        transport.sendto(bytes(binding_request(second.local_username, second.local_password)), server)
        await asyncio.sleep(0.1)
        assert peer.queue.empty() and mux.learned_addresses(second) == []
        # once the first call has been quiet from there, the address moves
        await asyncio.sleep(ice_mux.ADDRESS_TAKEOVER_IDLE_S)
        transport.sendto(bytes(binding_request(second.local_username, second.local_password)), server)
        data, _ = await asyncio.wait_for(peer.queue.get(), 2)
        assert stun.parse_message(data).message_class == stun.Class.RESPONSE
        assert mux.learned_addresses(second) == [addr] and mux.learned_addresses(first) == []
        assert mux.address_count == 1 and mux.stats.addrs_taken_over == 1
    finally:
        transport.close()
        await first.close()
        await second.close()
    assert mux.address_count == 0


# ---- reading the shared UDP socket -----------------------------------------------------------------


async def test_udp_reads_every_queued_datagram_in_a_few_loop_iterations():
    """asyncio's selector loop hands a datagram protocol one datagram per loop iteration. Every call's
    packets come in on the one mux socket, so it reads on while more are queued: else a busy loop (two
    dozen calls) falls seconds behind its socket, the kernel drops, and setups stall on lost DTLS/SCTP."""
    m = MuxSet([(LOOP, LOOP)], udp_port=0, tcp_port=None)
    await m.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for seq in range(100):  # SRTP-like datagrams from an unknown address: read, counted, dropped
                sender.sendto(bytes([0x80, 0x6F]) + seq.to_bytes(2, "big") + bytes(60), (LOOP, m.udp_port))
            for _ in range(3):  # three loop iterations
                await asyncio.sleep(0)
        assert m.stats.udp_rx == 100
        assert m.stats.udp_dropped_unknown == 100
    finally:
        await m.close()
