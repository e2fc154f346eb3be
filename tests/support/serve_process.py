"""`openrealtime serve` as a real process on free ports, for tests that need real signals, exits and logs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from openrealtime.api.embedded import free_port
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


class ServeProcess:
    """`openrealtime serve --api-key KEY ARGS…` on free HTTP, UDP and TCP ports; stderr (the log) goes to a
    temporary file, read with `log()`."""

    def __init__(self, *args: str, api_key: str = "sk-test", env: dict | None = None, host: str = "127.0.0.1",
                 wrapper: tuple[str, ...] = ()) -> None:
        """`host`: the address it serves and advertises (its own namespace's, with `wrapper`); `wrapper`: a
        command it runs under, e.g. `ip netns exec NS` (tests/net/lan.py)."""
        self.port = free_port()
        self.argv = [*wrapper, sys.executable, "-m", "openrealtime", "serve", "--port", str(self.port),
                     "--udp-port", str(free_port(kind=socket.SOCK_DGRAM)), "--tcp-port", str(free_port()),
                     "--api-key", api_key, *(("--host", host, "--advertise-ip", host) if host != "127.0.0.1" else ()),
                     *args]
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self._stderr,
                                     env={**os.environ, **(env or {})})
        self.url = f"http://{host}:{self.port}"
        self.ws_url = self.url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"

    def log(self) -> str:
        """Everything the process wrote to stderr so far."""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    async def ready(self, timeout: float = 60) -> None:
        async with httpx.AsyncClient() as http:
            async def up():
                if self.proc.poll() is not None:
                    raise AssertionError(f"server exited: {self.log()[-2000:]}")
                try:
                    return (await http.get(self.url + "/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False
            await wait_for(up, timeout=timeout, what="server ready")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    async def exit_code(self, timeout: float = 30) -> int:
        async def ended():
            return self.proc.poll() is not None
        await wait_for(ended, timeout=timeout, what="server exit")
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._stderr.close()
