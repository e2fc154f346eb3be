"""A private network namespace joined to the root namespace by a veth pair (tests only).

    root ns  <veth A> 10.200.X.(4k+1)/30  ====  <veth B> 10.200.X.(4k+2)/30  namespace NS

Only addresses we create on our own veth pair are ever used as targets. `block_udp()` installs an
nftables table inside NS that drops every UDP datagram between NS and the root-side address (with
counters), so only TCP crosses the link. Everything is removed by `close()` (idempotent); stale
namespaces of dead test runs (our `ortcp<pid>x…` prefix) are removed by `reap_stale()`.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import subprocess
from pathlib import Path

PREFIX = "ortcp"
_NAME = re.compile(rf"^{PREFIX}(\d+)x[0-9a-f]+$")


class NetnsUnavailable(RuntimeError):
    pass


def _run(*argv: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_stale() -> None:
    """Delete namespaces left behind by earlier test runs whose process is gone."""
    if not shutil.which("ip"):
        return
    out = _run("ip", "netns", "list", check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.strip() else ""
        m = _NAME.match(name)
        if m and not _pid_alive(int(m.group(1))):
            _run("ip", "netns", "del", name, check=False)


def _used_subnets() -> set[str]:
    out = _run("ip", "-4", "-o", "addr", "show", check=False).stdout
    return set(re.findall(r"inet (10\.200\.\d+)\.", out))


class Netns:
    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.name = f"{PREFIX}{os.getpid()}x{tag}"
        self.veth_root = f"orA{tag}"  # ≤ 15 chars (IFNAMSIZ)
        self.veth_ns = f"orB{tag}"
        used = _used_subnets()
        for _ in range(64):
            third = secrets.randbelow(256)
            if f"10.200.{third}" not in used:
                break
        base = 4 * secrets.randbelow(64)
        self.root_ip = f"10.200.{third}.{base + 1}"
        self.ns_ip = f"10.200.{third}.{base + 2}"
        self.table = f"ortest_{tag}"
        self.family = "netdev"
        self._created = False
        self._veth = False

    # lifecycle
    def create(self) -> "Netns":
        missing = [tool for tool in ("ip", "nft") if not shutil.which(tool)]
        if missing:
            raise NetnsUnavailable(f"{', '.join(missing)} not installed: apt-get install iproute2 nftables "
                                   "(.ci/run does)")
        proc = _run("ip", "netns", "add", self.name, check=False)
        if proc.returncode != 0:
            raise NetnsUnavailable(
                f"cannot create a network namespace ({proc.stderr.strip()}): this test needs root or "
                "CAP_NET_ADMIN + CAP_SYS_ADMIN (e.g. docker run --cap-add NET_ADMIN --cap-add SYS_ADMIN)")
        self._created = True
        try:
            _run("ip", "link", "add", self.veth_root, "type", "veth", "peer", "name", self.veth_ns)
            self._veth = True
            _run("ip", "link", "set", self.veth_ns, "netns", self.name)
            _run("ip", "addr", "add", f"{self.root_ip}/30", "dev", self.veth_root)
            _run("ip", "link", "set", self.veth_root, "up")
            _run("ip", "-n", self.name, "addr", "add", f"{self.ns_ip}/30", "dev", self.veth_ns)
            _run("ip", "-n", self.name, "link", "set", self.veth_ns, "up")
            _run("ip", "-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self._veth:
            _run("ip", "link", "del", self.veth_root, check=False)  # also removes the peer in NS
            self._veth = False
        if self._created:
            _run("ip", "netns", "del", self.name, check=False)
            self._created = False

    def __enter__(self) -> "Netns":
        return self.create()

    def __exit__(self, *exc) -> None:
        self.close()

    # inside the namespace
    def exec_argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        return _run(*self.exec_argv(*argv), check=check, input=input)

    def block_udp(self) -> None:
        """Drop all UDP between the namespace and the root-side veth address, both ways, silently.

        netdev egress/ingress hooks on the namespace's veth end (Linux >= 5.16) drop on the wire, the
        way a firewall on the path would: the sender sees no error. Older kernels fall back to
        inet output/input hooks (local senders then get EPERM, which also only leaves TCP).
        """
        netdev = f"""
table netdev {self.table} {{
    chain out {{
        type filter hook egress device "{self.veth_ns}" priority 0; policy accept;
        ip daddr {self.root_ip} ip protocol udp counter drop
    }}
    chain in {{
        type filter hook ingress device "{self.veth_ns}" priority 0; policy accept;
        ip saddr {self.root_ip} ip protocol udp counter drop
    }}
}}
"""
        inet = f"""
table inet {self.table} {{
    chain out {{
        type filter hook output priority 0; policy accept;
        ip daddr {self.root_ip} meta l4proto udp counter drop
    }}
    chain in {{
        type filter hook input priority 0; policy accept;
        ip saddr {self.root_ip} meta l4proto udp counter drop
    }}
}}
"""
        if self.run("nft", "-f", "-", input=netdev, check=False).returncode == 0:
            self.family = "netdev"
        else:
            self.run("nft", "-f", "-", input=inet)
            self.family = "inet"

    def udp_drop_counts(self) -> tuple[int, int]:
        """(packets dropped going out of NS, packets dropped coming in)."""
        out = self.run("nft", "list", "table", self.family, self.table).stdout
        counts = [int(n) for n in re.findall(r"counter packets (\d+)", out)]
        if len(counts) != 2:
            raise RuntimeError(f"unexpected nft listing:\n{out}")
        return counts[0], counts[1]

    def wrapper_script(self, directory: Path, executable: str) -> Path:
        """A script that runs `executable` inside the namespace (for Playwright's executable_path)."""
        path = directory / f"in-{self.name}.sh"
        path.write_text(f"#!/bin/sh\nexec ip netns exec {shlex.quote(self.name)} {shlex.quote(executable)} \"$@\"\n")
        path.chmod(0o755)
        return path
