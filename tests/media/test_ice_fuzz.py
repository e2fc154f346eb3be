"""Fuzzing the shared ICE ports: hostile datagrams and TCP streams never crash the server, never get
a reply, never bind an address, and never disturb an established call (real aiortc peers)."""

import asyncio
import secrets
import struct

import pytest
from aioice import stun
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcconfiguration import RTCBundlePolicy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openrealtime.media import aiortc_patches
from openrealtime.media.ice import IceSettings, server_ice
from openrealtime.media.ice_mux import MuxSet
from tests.support import wait_for

LOOP = "127.0.0.1"
HYPOTHESIS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


class Sink(asyncio.DatagramProtocol):
    def __init__(self):
        self.received: list[bytes] = []

    def datagram_received(self, data, addr):
        self.received.append(data)


def request(ufrag: str, pwd: str | None, *, use_candidate: bool = True, remote: str = "peer") -> stun.Message:
    msg = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    msg.attributes["USERNAME"] = f"{ufrag}:{remote}"
    msg.attributes["PRIORITY"] = 1853824767
    msg.attributes["ICE-CONTROLLING"] = secrets.randbits(64)
    if use_candidate:
        msg.attributes["USE-CANDIDATE"] = None
    if pwd is not None:
        msg.add_message_integrity(pwd.encode())
    return msg


def raw_stun(message_type: int, attrs: list[tuple[int, bytes]], txid: bytes = b"\x01" * 12) -> bytes:
    body = b""
    for attr_type, value in attrs:
        body += struct.pack("!HH", attr_type, len(value)) + value + bytes(-len(value) % 4)
    return struct.pack("!HHI12s", message_type, len(body), stun.COOKIE, txid) + body


class Env:
    """One established call (stock aiortc client → our server through the mux) on a private loop."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.errors: list[dict] = []
        self.loop.set_exception_handler(lambda loop, context: self.errors.append(context))
        self.run(self._setup())

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    async def _setup(self):
        aiortc_patches.install()  # what a server does at startup: server_ice needs its ICE agent factory
        self.mux = MuxSet([(LOOP, LOOP)], udp_port=0, tcp_port=0, first_frame_timeout_s=0.2)
        await self.mux.start()
        self.server = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = self.client.createDataChannel("chat")
        self.replies: asyncio.Queue = asyncio.Queue()
        opened = asyncio.Event()

        @self.server.on("datachannel")
        def _dc(ch):
            ch.on("message", lambda message: ch.send("echo:" + message))

        self.channel.on("open", opened.set)
        self.channel.on("message", self.replies.put_nowait)
        await self.client.setLocalDescription(await self.client.createOffer())
        with server_ice(IceSettings(addresses=self.mux.addresses, mux=self.mux)):
            await self.server.setRemoteDescription(self.client.localDescription)
        await self.server.setLocalDescription(await self.server.createAnswer())
        await self.client.setRemoteDescription(self.server.localDescription)
        await asyncio.wait_for(opened.wait(), 10)
        self.conn = self.server.sctp.transport.transport._connection
        self.client_conn = self.client.sctp.transport.transport._connection
        self.ufrag, self.pwd = self.conn.local_username, self.conn.local_password
        self.learned = set(self.mux.learned_addresses(self.conn))
        self.fuzz_transport, self.fuzz = await asyncio.get_running_loop().create_datagram_endpoint(
            Sink, local_addr=(LOOP, 0))
        self.fuzz_addr = self.fuzz_transport.get_extra_info("sockname")
        self.sent = 0

    async def send_udp(self, data: bytes) -> None:
        self.fuzz_transport.sendto(data, (LOOP, self.mux.udp_port))
        self.sent += 1
        await asyncio.sleep(0)

    async def send_from_client(self, data: bytes) -> None:
        """From the client's own (learned) socket, bypassing its ICE agent."""
        pair = self.client_conn._nominated[1]
        pair.protocol.transport.sendto(data, pair.remote_addr)
        await asyncio.sleep(0)

    async def tcp_stream(self, data: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(LOOP, self.mux.tcp_port)
        writer.write(data)
        try:
            got = await asyncio.wait_for(reader.read(), 1)
        except asyncio.TimeoutError:
            got = b"(still open)"
        writer.close()
        return got

    async def assert_healthy(self) -> None:
        await asyncio.sleep(0.2)
        text = f"still there {secrets.token_hex(4)}"
        self.channel.send(text)
        assert await asyncio.wait_for(self.replies.get(), 5) == "echo:" + text
        assert self.server.connectionState == "connected" and self.client.connectionState == "connected"
        assert set(self.mux.learned_addresses(self.conn)) == self.learned  # nothing else bound
        assert self.fuzz.received == []  # never a reply to a hostile packet
        assert self.mux.calls == 1
        assert self.errors == [], self.errors

    def close(self):
        async def _close():
            self.fuzz_transport.close()
            await self.client.close()
            await self.server.close()
            await self.mux.close()
        self.run(_close())
        self.loop.close()


@pytest.fixture(scope="module")
def env():
    e = Env()
    yield e
    e.close()


def _flip(data: bytes, index: int, xor: int) -> bytes:
    index %= len(data)
    return data[:index] + bytes([data[index] ^ xor]) + data[index + 1:]


def hostile_datagrams(ufrag: str, pwd: str):
    valid = bytes(request(ufrag, pwd))
    attr_types = st.sampled_from(list(stun.ATTRIBUTES_BY_TYPE) + [0x0000, 0x7FFF, 0xFFFF])
    return st.one_of(
        st.binary(max_size=1500),
        st.tuples(st.sampled_from([0, 1, 2, 3, 20, 23, 63, 64, 79, 128, 191, 255]), st.binary(max_size=300))
        .map(lambda t: bytes([t[0]]) + t[1]),
        # a valid check for the live call, with one byte changed (MESSAGE-INTEGRITY/FINGERPRINT must fail)
        st.tuples(st.integers(0, len(valid) - 1), st.integers(1, 255)).map(lambda t: _flip(valid, *t)),
        st.integers(0, len(valid) - 1).map(lambda n: valid[:n]),
        st.binary(min_size=1, max_size=64).map(lambda tail: valid + tail),
        # the right ufrag with a wrong password, or no MESSAGE-INTEGRITY at all
        st.text(min_size=1, max_size=40).map(lambda p: bytes(request(ufrag, p + "x" * 22))),
        st.just(bytes(request(ufrag, None))),
        # header-valid STUN with arbitrary attributes (exercises aioice's attribute parsers)
        st.tuples(st.sampled_from([0x0001, 0x0101, 0x0111, 0x0011, 0x0003, 0x3EEF]),
                  st.lists(st.tuples(attr_types, st.binary(max_size=40)), max_size=6),
                  st.binary(min_size=12, max_size=12))
        .map(lambda t: raw_stun(t[0], [(0x0006, f"{ufrag}:peer".encode())] + t[1], t[2])),
        st.tuples(st.lists(st.tuples(attr_types, st.binary(max_size=40)), max_size=6), st.binary(min_size=12, max_size=12))
        .map(lambda t: raw_stun(0x0101, t[0], t[1])),  # unsolicited responses
    )


def test_udp_fuzz_never_crashes_replies_binds_or_disturbs(env):
    before = env.mux.stats.udp_rx

    @HYPOTHESIS
    @given(data=hostile_datagrams(env.ufrag, env.pwd))
    def fuzz(data):
        env.run(env.send_udp(data))

    fuzz()
    env.run(env.assert_healthy())
    assert env.mux.stats.udp_rx - before >= env.sent > 100


def test_garbage_from_the_learned_address_does_not_disturb(env):
    first_bytes = st.sampled_from([0, 1, 2, 3, 20, 21, 22, 23, 63, 128, 144, 191, 64, 255])
    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.one_of(
        st.tuples(first_bytes, st.binary(max_size=400)).map(lambda t: bytes([t[0]]) + t[1]),
        st.tuples(st.sampled_from([20, 21, 22, 23]), st.binary(min_size=10, max_size=400))
        .map(lambda t: bytes([t[0], 0xFE, 0xFD]) + t[1]),  # DTLS 1.2 record headers
    ))
    def fuzz(data):
        env.run(env.send_from_client(data))

    fuzz()
    env.run(env.assert_healthy())


def test_tcp_fuzz_never_crashes_replies_or_disturbs(env):
    valid = bytes(request(env.ufrag, env.pwd))

    def framed(data: bytes) -> bytes:
        return len(data).to_bytes(2, "big") + data

    streams = st.one_of(
        st.binary(max_size=600),
        st.lists(st.binary(max_size=200), min_size=1, max_size=4).map(lambda fs: b"".join(map(framed, fs))),
        st.tuples(st.integers(0, len(valid) - 1), st.integers(1, 255)).map(lambda t: framed(_flip(valid, *t))),
        st.text(min_size=1, max_size=30).map(lambda p: framed(bytes(request(env.ufrag, p + "x" * 22)))),
    )
    before = env.mux.stats.tcp_rejected

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=streams)
    def fuzz(data):
        got = env.run(env.tcp_stream(data))
        assert got == b"", got  # closed without a single byte back

    fuzz()
    env.run(env.assert_healthy())
    assert env.mux.stats.tcp_accepted == 0 and env.mux.stats.tcp_rejected > before
    assert env.mux._pending_streams == 0


def test_wrong_message_integrity_never_binds_an_address(env):
    async def scenario():
        loop = asyncio.get_running_loop()
        transport, sink = await loop.create_datagram_endpoint(Sink, local_addr=(LOOP, 0))
        addr = transport.get_extra_info("sockname")
        mux = (LOOP, env.mux.udp_port)
        bad_before = env.mux.stats.udp_dropped_bad_integrity
        try:
            for _ in range(5):
                transport.sendto(bytes(request(env.ufrag, "not-the-password-1234567")), mux)
            transport.sendto(bytes(request(env.ufrag, None)), mux)
            # the right password but the wrong remote ufrag: aioice would refuse it, so no binding either
            transport.sendto(bytes(request(env.ufrag, env.pwd, remote="someoneelse")), mux)
            await asyncio.sleep(0.2)
            assert sink.received == []
            assert addr not in env.mux.learned_addresses(env.conn)
            assert env.mux.stats.udp_dropped_bad_integrity - bad_before == 7
            # DTLS/SRTP from that address still goes nowhere
            transport.sendto(b"\x17\xfe\xfd" + bytes(60), mux)
            transport.sendto(b"\x80" + bytes(100), mux)
            await asyncio.sleep(0.1)
            # positive control: the right password binds it and gets an authenticated answer
            # (no USE-CANDIDATE: a plain check must not renominate the live pair)
            remote = env.client_conn.local_username
            transport.sendto(bytes(request(env.ufrag, env.pwd, use_candidate=False, remote=remote)), mux)
            await wait_for(lambda: sink.received, 5, interval=0.02, what="an answer to the right password")
            response = stun.parse_message(sink.received[0])
            assert response.message_class == stun.Class.RESPONSE
            assert response.check_message_integrity(env.pwd.encode())
            assert addr in env.mux.learned_addresses(env.conn)
        finally:
            transport.close()
        env.learned = set(env.mux.learned_addresses(env.conn))

    env.run(scenario())
    env.run(env.assert_healthy())
