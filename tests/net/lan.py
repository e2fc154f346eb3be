"""A private LAN of network namespaces for tests: hosts with their own addresses on one bridge.

    namespace LAN: bridge br0 ── veth ── root namespace   10.201.X.1/24  (the test process, Redis)
                              ── veth ── namespace host 1 10.201.X.11/24
                              ── veth ── namespace host 2 10.201.X.12/24 …

The bridge lives in a namespace of its own, so the root namespace's firewall and its bridge netfilter
settings never see the LAN's frames, and nothing is routed or forwarded anywhere. `LanHost.cut()`
drops every frame to and from a host on its own link (nftables netdev hooks inside its namespace, as
a pulled cable or a partition would: the host and its peers see silence, no error); `restore()`
undoes it. Namespace names use tests/net/netns.py's prefix, so `reap_stale()` removes those of a dead
run; `close()` removes everything (idempotent).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil

from tests.net.netns import PREFIX, NetnsUnavailable, _run


def _free_subnet() -> str:
    used = set(re.findall(r"inet (10\.201\.\d+)\.", _run("ip", "-4", "-o", "addr", "show", check=False).stdout))
    for _ in range(64):
        subnet = f"10.201.{secrets.randbelow(256)}"
        if subnet not in used:
            return subnet
    raise NetnsUnavailable("no free 10.201.X.0/24 subnet for a test LAN")


class LanHost:
    def __init__(self, lan: "Lan", index: int) -> None:
        self.lan = lan
        self.name = f"{PREFIX}{os.getpid()}x{lan.tag}a{index}"  # hex after the pid: reap_stale() knows it
        self.ip = f"{lan.subnet}.{10 + index}"
        self.veth = f"orH{lan.tag}{index}"  # its end, inside its namespace (≤ 15 chars)
        self.table = f"orcut_{lan.tag}{index}"
        self.is_cut = False

    def exec_argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def cut(self) -> None:
        """Drop every frame on the host's link, both ways, silently."""
        rules = f"""
table netdev {self.table} {{
    chain out {{ type filter hook egress device "{self.veth}" priority 0; policy drop; }}
    chain in {{ type filter hook ingress device "{self.veth}" priority 0; policy drop; }}
}}
"""
        _run("ip", "netns", "exec", self.name, "nft", "-f", "-", input=rules)
        self.is_cut = True

    def restore(self) -> None:
        if self.is_cut:
            _run("ip", "netns", "exec", self.name, "nft", "delete", "table", "netdev", self.table)
            self.is_cut = False


class Lan:
    def __init__(self) -> None:
        self.tag = secrets.token_hex(2)
        self.name = f"{PREFIX}{os.getpid()}x{self.tag}f0"
        self.subnet = _free_subnet()
        self.root_ip = f"{self.subnet}.1"
        self.root_veth = f"orR{self.tag}"
        self.hosts: list[LanHost] = []
        self._namespaces: list[str] = []

    def _netns(self, name: str) -> None:
        proc = _run("ip", "netns", "add", name, check=False)
        if proc.returncode != 0:
            raise NetnsUnavailable(f"cannot create a network namespace ({proc.stderr.strip()}): this test needs "
                                   "root or CAP_NET_ADMIN + CAP_SYS_ADMIN")
        self._namespaces.append(name)
        _run("ip", "-n", name, "link", "set", "lo", "up")

    def _plug(self, veth: str, peer_ns: str | None) -> None:
        """A veth pair: `veth` (moved into `peer_ns`, or left in the root namespace) and its other end on
        the bridge."""
        port = veth + "b"
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", port)
        _run("ip", "link", "set", port, "netns", self.name)
        _run("ip", "-n", self.name, "link", "set", port, "master", "br0", "up")
        if peer_ns is not None:
            _run("ip", "link", "set", veth, "netns", peer_ns)

    def create(self) -> "Lan":
        if not all(shutil.which(tool) for tool in ("ip", "nft")):
            raise NetnsUnavailable("ip and nft are needed: apt-get install iproute2 nftables (.ci/run does)")
        try:
            self._netns(self.name)
            _run("ip", "-n", self.name, "link", "add", "br0", "type", "bridge")
            _run("ip", "-n", self.name, "link", "set", "br0", "up")
            self._plug(self.root_veth, None)
            _run("ip", "addr", "add", f"{self.root_ip}/24", "dev", self.root_veth)
            _run("ip", "link", "set", self.root_veth, "up")
        except BaseException:
            self.close()
            raise
        return self

    def add_host(self) -> LanHost:
        host = LanHost(self, len(self.hosts) + 1)
        self._netns(host.name)
        self.hosts.append(host)
        self._plug(host.veth, host.name)
        _run("ip", "-n", host.name, "addr", "add", f"{host.ip}/24", "dev", host.veth)
        _run("ip", "-n", host.name, "link", "set", host.veth, "up")
        return host

    def close(self) -> None:
        _run("ip", "link", "del", self.root_veth, check=False)
        for name in reversed(self._namespaces):  # a namespace's veth ends go with it
            _run("ip", "netns", "del", name, check=False)
        self._namespaces.clear()

    def __enter__(self) -> "Lan":
        return self.create()

    def __exit__(self, *exc) -> None:
        self.close()
