"""A server under benchmark, run as a subprocess: start, wait until it is ready (GET /readyz 200; a server
without /readyz: /healthz 200), read its RSS, threads, open fds and CPU time from /proc, stop (SIGTERM,
then SIGKILL). Dies with the bench (PR_SET_PDEATHSIG)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def die_with_parent() -> None:
    """preexec_fn: the kernel sends SIGTERM to this child if the bench itself dies (Linux)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class ServerProcess:
    name: str
    argv: list[str]
    port: int
    proc: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, logdir: Path, env: dict[str, str] | None = None) -> None:
        """Start it, with `env` added to this process's environment."""
        self.log = logdir / f"{self.name}.log"
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"),
                                     start_new_session=True, preexec_fn=die_with_parent,
                                     env={**os.environ, **(env or {})})

    async def wait_ready(self, timeout: float = 90.0) -> None:
        """Until GET /readyz answers 200 (/healthz is liveness: 200 while still loading). Servers
        without a /readyz route (the plain aiortc baseline: 404) are ready when /healthz is 200."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited ({self.proc.returncode}); see {self.log}")
                with contextlib.suppress(httpx.HTTPError):
                    ready = await http.get(self.url + "/readyz")
                    if ready.status_code == 404:
                        ready = await http.get(self.url + "/healthz")
                    if ready.status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready in {timeout}s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def _status(self, key: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return -1

    def rss_kib(self) -> int:
        return self._status("VmRSS")

    def threads(self) -> int:
        return self._status("Threads")

    def fds(self) -> int:
        """Open file descriptors (sockets, pipes, files) of the server process."""
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_mb() -> float:
    """This process's resident memory in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_bounded(name: str, run, deadline: float):
    """asyncio.run(run(logdir)) with a fresh log directory, aborted (exit 2) after `deadline` s."""
    logdir = Path(tempfile.mkdtemp(prefix=f"{name}_"))
    try:
        return asyncio.run(asyncio.wait_for(run(logdir), deadline))
    except asyncio.TimeoutError:
        print(f"{name}: aborted after {deadline:.0f}s (logs in {logdir})", file=sys.stderr)
        sys.exit(2)
