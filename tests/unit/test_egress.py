"""The MCP egress policy against real local listeners: internal addresses in every spelling are
refused before any connection is opened; the operator's allow-list (host or CIDR) lets chosen ones
through; the connection goes to the address that was checked (no DNS rebinding); redirects are
checked hop by hop."""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import threading
from collections.abc import Iterator

import httpx
import pytest

from openrealtime.config import Settings
from openrealtime.engines.egress import ALLOW_HINT, EgressPolicy, parse_allow_list
from openrealtime.engines.mcp_client import McpClient, McpError
from tests.support import serving


class Listener:
    """A TCP listener that records every connection and request head it gets, and answers 404."""

    def __init__(self, sock: socket.socket, tls: ssl.SSLContext | None = None) -> None:
        self.sock = sock
        self.tls = tls
        self.server_names: list[str | None] = []  # TLS SNI
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
        self.port = sock.getsockname()[1]
        self.requests: list[str] = []
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _peer = self.sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(5)
                head = b""
                with contextlib.suppress(OSError):
                    if self.tls is not None:
                        conn = self.tls.wrap_socket(conn, server_side=True)
                    while b"\r\n\r\n" not in head:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        head += chunk
                    self.requests.append(head.decode("latin-1"))
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@contextlib.contextmanager
def listening(address: str = "::", port: int = 0, tls: ssl.SSLContext | None = None) -> Iterator[Listener]:
    """`::` listens on every local address of both families (IPv4 through mapped addresses)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind((address, port))
    sock.listen(16)
    listener = Listener(sock, tls)
    try:
        yield listener
    finally:
        listener.close()


@pytest.fixture
def listener():
    with listening() as it:
        yield it


async def refusal(url: str, policy: EgressPolicy) -> McpError:
    async with McpClient(url, egress=policy, timeout_s=5) as client:
        with pytest.raises(McpError) as failed:
            await client.list_tools()
    return failed.value


# Each of these reaches a listener on this machine without a policy (checked: allowed, it does).
REACHING = [
    ("127.0.0.1", "loopback"), ("localhost", "loopback"), ("0.0.0.0", "unspecified"), ("127.1", "loopback"),
    ("2130706433", "loopback"), ("017700000001", "loopback"), ("0177.0.1", "loopback"),
    ("0x7f.0.0.1", "loopback"), ("0x7f.1", "loopback"), ("0x7f000001", "loopback"), ("127.0.0.2", "loopback"),
    ("[::1]", "loopback"),
    ("[::ffff:127.0.0.1]", "loopback (IPv4-mapped)"), ("[::ffff:7f00:1]", "loopback (IPv4-mapped)"),
    ("[::]", "unspecified"),
]


@pytest.mark.parametrize("host, kind", REACHING)
async def test_local_addresses_in_every_spelling_are_refused_before_connecting(listener, host, kind):
    error = await refusal(f"http://{host}:{listener.port}/mcp", EgressPolicy())
    assert error.refused and error.kind == "http_error"
    assert f"a {kind} address" in error.message or f"an {kind} address" in error.message, error.message
    assert ALLOW_HINT in error.message
    assert listener.connections == 0 and listener.requests == []


@pytest.mark.parametrize("host, kind", REACHING)
async def test_the_same_spellings_reach_the_listener_when_allowed(listener, host, kind):
    """The control for the test above: the listener does get these URLs once the policy allows them."""
    policy = EgressPolicy(["127.0.0.0/8", "::1", "0.0.0.0", "::"])
    async with McpClient(f"http://{host}:{listener.port}/mcp", egress=policy, timeout_s=5) as client:
        with pytest.raises(McpError) as failed:
            await client.list_tools()
    assert failed.value.code == 404 and not failed.value.refused
    assert listener.connections >= 1


@pytest.mark.parametrize("host, kind", [
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("100.64.0.1", "private"),
    ("[fc00::1]", "private"), ("[fd12:3456::1]", "private"),
    ("169.254.169.254", "link-local (cloud metadata)"), ("169.254.1.1", "link-local"), ("[fe80::1]", "link-local"),
    ("224.0.0.1", "multicast"), ("[ff02::1]", "multicast"), ("255.255.255.255", "broadcast"),
    ("240.0.0.1", "reserved"), ("192.0.2.10", "reserved"),
    ("[::127.0.0.1]", "loopback (IPv4-compatible)"), ("[2002:7f00:1::]", "loopback (6to4)"),
    ("[64:ff9b::7f00:1]", "loopback (NAT64)"), ("[64:ff9b::a00:1]", "private (NAT64)"),
    ("[::ffff:169.254.169.254]", "link-local (cloud metadata) (IPv4-mapped)"),
    ("[::ffff:10.0.0.1]", "private (IPv4-mapped)"),
])
async def test_internal_ranges_are_refused(listener, host, kind):
    error = await refusal(f"http://{host}:{listener.port}/mcp", EgressPolicy())
    assert error.refused and f" {kind} address;" in error.message, error.message
    assert listener.connections == 0


async def test_a_name_is_refused_if_any_of_its_addresses_is_internal(listener):
    async def resolver(host: str, port: int) -> list[str]:
        return {"metadata.test": ["169.254.169.254"], "mixed.test": ["93.184.215.14", "127.0.0.1"]}[host]

    policy = EgressPolicy(resolver=resolver)
    error = await refusal(f"http://metadata.test:{listener.port}/", policy)
    assert "metadata.test resolves to 169.254.169.254, a link-local (cloud metadata) address" in error.message
    error = await refusal(f"http://mixed.test:{listener.port}/", policy)
    assert "mixed.test resolves to 127.0.0.1, a loopback address" in error.message
    assert listener.connections == 0


async def test_allowing_by_host_name_matches_the_urls_host_exactly(listener):
    policy = EgressPolicy(["LocalHost."])
    async with McpClient(f"http://localhost:{listener.port}/mcp", egress=policy, timeout_s=5) as client:
        with pytest.raises(McpError) as failed:
            await client.list_tools()
    assert failed.value.code == 404
    assert f"host: localhost:{listener.port}" in listener.requests[0].lower()
    seen = listener.connections
    error = await refusal(f"http://127.0.0.1:{listener.port}/mcp", policy)  # same address, another host
    assert error.refused and "127.0.0.1 is a loopback address" in error.message
    assert listener.connections == seen


async def test_allowing_by_cidr_matches_the_resolved_addresses(listener):
    policy = EgressPolicy(["127.0.0.1/32"])
    for host in ("127.0.0.1", "127.1", "[::ffff:127.0.0.1]"):
        async with McpClient(f"http://{host}:{listener.port}/mcp", egress=policy, timeout_s=5) as client:
            with pytest.raises(McpError) as failed:
                await client.list_tools()
        assert failed.value.code == 404, host
    seen = listener.connections
    for host in ("127.0.0.2", "[::1]"):
        assert (await refusal(f"http://{host}:{listener.port}/mcp", policy)).refused
    assert listener.connections == seen


def test_the_allow_list_takes_hosts_and_cidrs_and_names_a_bad_entry():
    hosts, networks = parse_allow_list(["mcp.internal", " 10.0.0.0/8 ", "[fd00::1]", "192.168.1.7", ""])
    assert hosts == {"mcp.internal"}
    assert [str(n) for n in networks] == ["10.0.0.0/8", "fd00::1/128", "192.168.1.7/32"]
    for bad in ("http://mcp.internal", "mcp.internal:8080", "10.0.0.0/33x"):
        with pytest.raises(ValueError, match="--mcp-allow"):
            parse_allow_list([bad])
    with pytest.raises(SystemExit, match="--mcp-allow 'mcp.internal:8080'"):
        Settings(mcp_allow=["mcp.internal:8080"]).check()


def test_the_flag_and_the_environment_fill_the_settings(monkeypatch):
    from openrealtime.cli import build_parser, settings_from_args

    args = build_parser().parse_args(["serve", "--mcp-allow", "mcp.internal", "--mcp-allow", "10.0.0.0/8"])
    assert settings_from_args(args).mcp_allow == ["mcp.internal", "10.0.0.0/8"]
    monkeypatch.setenv("OPENREALTIME_MCP_ALLOW", "a.internal, 172.16.0.0/12")
    assert settings_from_args(build_parser().parse_args(["serve"])).mcp_allow == ["a.internal", "172.16.0.0/12"]


async def test_the_connection_goes_to_the_checked_address_whatever_dns_answers_later():
    """DNS rebinding: the first answer passes the check (127.0.0.2 is allowed: it stands in for a
    public address, one a test can reach), later answers say 127.0.0.1. The request reaches the
    checked address; no answer given after the check is ever connected to without its own check."""
    with listening("127.0.0.2") as checked, listening("127.0.0.1", checked.port) as forbidden:
        answers: list[str] = []

        async def rebinding(host: str, port: int) -> list[str]:
            answers.append("127.0.0.2" if not answers else "127.0.0.1")
            return [answers[-1]]

        policy = EgressPolicy(["127.0.0.2"], resolver=rebinding)
        error = await refusal(f"http://rebind.test:{checked.port}/mcp", policy)
        assert checked.connections == 1 and checked.requests[0].lower().count(f"host: rebind.test:{checked.port}") == 1
        # the 404 sends the client to the HTTP+SSE transport: a new connection, resolved and checked again
        assert answers == ["127.0.0.2", "127.0.0.1"]
        assert error.refused and "rebind.test resolves to 127.0.0.1, a loopback address" in error.message
        assert forbidden.connections == 0


def redirecting_app(location: str):
    seen: list[str] = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        seen.append(scope["method"])
        await send({"type": "http.response.start", "status": 307, "headers": [(b"location", location.encode())]})
        await send({"type": "http.response.body", "body": b""})

    return app, seen


@pytest.mark.parametrize("allow, start, target", [
    (["localhost"], "localhost", "127.0.0.1"),
    (["127.0.0.1/32"], "127.0.0.1", "[::1]"),
    (["127.0.0.1/32"], "127.0.0.1", "169.254.169.254"),
])
async def test_a_redirect_to_an_internal_address_is_refused(listener, allow, start, target):
    app, seen = redirecting_app(f"http://{target}:{listener.port}/mcp")
    with serving(app) as url:
        url = url.replace("127.0.0.1", start)
        error = await refusal(url, EgressPolicy(allow))
    assert seen and seen[0] == "POST"  # the allowed server was asked; its redirect was not followed
    assert error.refused and f"{target.strip('[]')} is a" in error.message, error.message
    assert listener.connections == 0


async def test_without_a_policy_a_client_refuses_internal_addresses(listener):
    async with McpClient(f"http://127.0.0.1:{listener.port}/mcp", timeout_s=5) as client:
        with pytest.raises(McpError) as failed:
            await client.call_tool("anything", {})
    assert failed.value.refused and failed.value.as_item_error()["type"] == "http_error"
    assert listener.connections == 0


def tls_contexts(tmp_path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A test CA and a certificate for `name`: (server context, client context trusting the CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    span = (now - datetime.timedelta(hours=1), now + datetime.timedelta(hours=1))

    def certificate(subject: str, key, issuer: str, issuer_key, ca: bool, san: str | None):
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(span[0]).not_valid_after(span[1])
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("egress test CA", ca_key, "egress test CA", ca_key, True, None)
    leaf = certificate(name, leaf_key, "egress test CA", ca_key, False, name)
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.key").write_bytes(leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return server, client


async def test_tls_to_the_checked_address_keeps_the_urls_name_for_sni_and_the_certificate(tmp_path):
    server_tls, client_tls = tls_contexts(tmp_path, "mcp.test")

    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    with listening("127.0.0.1", tls=server_tls) as tls_listener:
        policy = EgressPolicy(["mcp.test", "127.0.0.1"], resolver=resolver)
        async with httpx.AsyncClient(transport=policy.transport(verify=client_tls)) as client:
            response = await client.get(f"https://mcp.test:{tls_listener.port}/mcp")
            assert response.status_code == 404  # the handshake verified mcp.test's certificate
            assert tls_listener.server_names == ["mcp.test"]
            assert f"host: mcp.test:{tls_listener.port}" in tls_listener.requests[0].lower()
            with pytest.raises(httpx.ConnectError, match="certificate"):  # the address is not the name
                await client.get(f"https://127.0.0.1:{tls_listener.port}/mcp")


async def test_the_servers_flag_reaches_its_sessions(listener):
    """--mcp-allow, through Settings and the server state, is the policy of a WebSocket session."""
    import asyncio
    import json

    from websockets.asyncio.client import connect

    from openrealtime.api.embedded import embedded_server
    from tests.support import server_settings
    from tests.support import fake_stack

    settings = server_settings(engine="local", api_keys=["sk-egress"], mcp_allow=["127.0.0.2"])
    async with embedded_server(settings, models=fake_stack()) as server:
        url = server.url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"
        async with connect(url, additional_headers={"Authorization": "Bearer sk-egress"}) as ws:
            await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "tools": [
                {"type": "mcp", "server_label": "refused", "server_url": f"http://127.0.0.1:{listener.port}/mcp"},
                {"type": "mcp", "server_label": "allowed", "server_url": f"http://127.0.0.2:{listener.port}/mcp"},
            ]}}))
            errors: list[str] = []
            async with asyncio.timeout(20):
                while len(errors) < 2:
                    event = json.loads(await ws.recv())
                    if event["type"] == "error":
                        errors.append(event["error"]["message"])
    refused = next(m for m in errors if "'refused'" in m)
    allowed = next(m for m in errors if "'allowed'" in m)
    assert "127.0.0.1 is a loopback address" in refused and "--mcp-allow" in refused
    assert "HTTP 404" in allowed  # it reached the listener (which answers 404 to everything)
    assert listener.connections >= 1
    assert all("host: 127.0.0.2" in r.lower() for r in listener.requests)
