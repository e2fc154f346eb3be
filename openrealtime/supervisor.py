"""`openrealtime serve --workers N`: N worker processes on one host, each a full node of a cluster.

* **HTTP.** The supervisor binds the one public HTTP socket and every worker accepts on it (an inherited
  listening socket: the kernel hands each connection to one worker, and a restarted worker takes over
  the same socket with nothing lost). Any worker may receive any request; api/cluster_routing.py
  forwards it to the worker that should answer.
* **Internal API.** Each worker also listens on a socket of its own, which other nodes use to reach it
  (its `internal_url`): 127.0.0.1 on a free port without Redis; with `--redis-url`, the HTTP bind
  address on `--internal-url`'s port + i (worker i), or on a free port advertised with the first
  advertised IP.
* **ICE.** Worker i owns UDP port `--udp-port` + i and ICE-TCP port `--tcp-port` + i (0: a free port
  each), advertised in its own SDP answers: media goes straight to the worker that owns the call, with
  no routing between processes.
* **Coordination.** With `--redis-url` the workers join that cluster as nodes `<node-id>-w<i>`. Without
  it, they share a SQLite file (cluster/sqlite_store.py, WAL) in a private directory made for this run
  and removed at exit, and sign node-to-node requests with a secret generated for this run.
* **Restart.** A worker that dies is removed from the cluster store at once (its calls leave the
  registry; their media ended with the process) and started again with the same ports. A worker that
  exits three times in a row without ever loading its models stops the host (exit 1).
* **Signals.** SIGTERM/SIGINT go to every worker (each drains, api/lifecycle.py; a second signal stops
  them at once); the supervisor exits when the last worker has, with the first non-zero exit code.
  Workers are in their own process group (a terminal's Ctrl-C reaches the supervisor alone, which
  forwards it) and get SIGTERM if the supervisor dies.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from multiprocessing.connection import wait
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from .config import Settings

log = logging.getLogger("openrealtime.supervisor")

GIVE_UP_AFTER = 3  # consecutive exits of one worker that never loaded its models
MAX_BACKOFF_S = 30.0
POLL_S = 0.5
DEREGISTER_TIMEOUT_S = 3.0
LISTEN_BACKLOG = 2048
_PR_SET_PDEATHSIG = 1


@dataclass
class _Worker:
    index: int
    settings: Settings
    internal: socket.socket
    process: Any = None  # multiprocessing.Process
    loaded: Any = None  # multiprocessing.Event: set once its models are loaded
    ever_loaded: bool = False
    failures: int = 0  # consecutive exits without having loaded
    restart_at: float | None = None
    exit_codes: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"w{self.index}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()


def _listen(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise SystemExit(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[_Worker] = []
        self.stopping = 0  # signals received
        self.exit_code = 0
        self.public: socket.socket | None = None
        self.directory: Path | None = None  # the SQLite store's private directory (no --redis-url)

    # ---- setup -------------------------------------------------------------------------------
    def _worker_settings(self) -> list[tuple[Settings, socket.socket]]:
        base = self.settings
        n = base.workers
        for flag, port in (("--udp-port", base.udp_port), ("--tcp-port", base.tcp_port)):
            if port and port + n - 1 > 65535:
                raise SystemExit(f"{flag} {port} with --workers {n}: worker i uses {flag} + i, past 65535")
        prefix = base.node_id or f"{socket.gethostname()}-{os.getpid()}"
        secret, db = base.cluster_secret, None
        if not base.redis_url:
            self.directory = Path(tempfile.mkdtemp(prefix="openrealtime-workers-"))
            db = str(self.directory / "cluster.sqlite3")
            secret = secrets.token_urlsafe(32)  # this host's workers only
        out = []
        for i in range(n):
            sock, url = self._internal_socket(i)
            out.append((replace(base, workers=1, node_id=f"{prefix}-w{i}", internal_url=url, cluster_secret=secret,
                                cluster_db=db, udp_port=base.udp_port + i if base.udp_port else 0,
                                tcp_port=base.tcp_port + i if base.tcp_port else 0), sock))
        return out

    def _internal_socket(self, index: int) -> tuple[socket.socket, str]:
        base = self.settings
        if not base.redis_url:  # only this host's workers talk to it
            loopback = "::1" if ":" in base.host else "127.0.0.1"
            sock = _listen(loopback, 0)
            return sock, f"http://{_url_host(loopback)}:{sock.getsockname()[1]}"
        if base.internal_url:
            parts = urlsplit(base.internal_url)
            if parts.port is None:
                raise SystemExit(f"--internal-url {base.internal_url} with --workers: give a port (worker i listens "
                                 "on it + i)")
            sock = _listen(base.host, parts.port + index)
            return sock, f"{parts.scheme}://{_url_host(parts.hostname or base.host)}:{parts.port + index}"
        from .media.ice import default_advertise_ips

        sock = _listen(base.host, 0)
        host = (base.advertise_ips or default_advertise_ips(base.host))[0]
        return sock, f"http://{_url_host(host)}:{sock.getsockname()[1]}"

    # ---- running -----------------------------------------------------------------------------
    def run(self) -> int:
        self.public = _listen(self.settings.host, self.settings.port)
        try:
            self.workers = [_Worker(i, s, sock) for i, (s, sock) in enumerate(self._worker_settings())]
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
            print(f"openrealtime: http://{self.settings.host}:{self.settings.port}/  (engine={self.settings.engine}, "
                  f"{len(self.workers)} workers, {'redis' if self.settings.redis_url else 'host-local'} cluster store)",
                  file=sys.stderr)
            for worker in self.workers:
                self._start(worker)
            self._watch()
        finally:
            self._cleanup()
        return self.exit_code

    def _start(self, worker: _Worker) -> None:
        worker.loaded = self.context.Event()
        worker.process = self.context.Process(
            target=_worker_main, name=f"openrealtime-{worker.name}",
            args=(worker.settings, self.public, worker.internal, worker.loaded, os.getpid()))
        worker.process.start()
        worker.restart_at = None
        log.info("worker started worker=%s pid=%d node=%s udp_port=%s tcp_port=%s internal=%s", worker.name,
                 worker.process.pid, worker.settings.node_id, worker.settings.udp_port, worker.settings.tcp_port,
                 worker.settings.internal_url)

    def _watch(self) -> None:
        while True:
            live = [w.process.sentinel for w in self.workers if w.alive]
            if live:
                wait(live, timeout=POLL_S)
            elif self.stopping:
                return
            else:
                time.sleep(POLL_S)
            for worker in self.workers:
                if worker.loaded is not None and worker.loaded.is_set():
                    worker.ever_loaded, worker.failures = True, 0
                if worker.process is not None and not worker.process.is_alive():
                    self._exited(worker)
                if worker.restart_at is not None and time.monotonic() >= worker.restart_at and not self.stopping:
                    self._start(worker)
            if self.stopping and not any(w.alive for w in self.workers):
                return

    def _exited(self, worker: _Worker) -> None:
        code = worker.process.exitcode
        worker.process.join()
        worker.process = None
        if self.stopping:
            if code and not self.exit_code:
                self.exit_code = code if code > 0 else 1
            log.info("worker stopped worker=%s exit=%s", worker.name, code)
            return
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
        self._deregister(worker)
        if not worker.ever_loaded:
            worker.failures += 1
        if worker.failures >= GIVE_UP_AFTER:
            log.error("worker %s %s %d times without loading its models: stopping the host", worker.name, how,
                      worker.failures)
            self.exit_code = code if code > 0 else 1
            self._stop_all(signal.SIGTERM)
            return
        delay = 0.0 if worker.failures == 0 else min(MAX_BACKOFF_S, 2.0 ** worker.failures)
        log.warning("worker %s (node %s) %s: its calls ended and left the cluster; restarting in %g s",
                    worker.name, worker.settings.node_id, how, delay)
        worker.ever_loaded = False
        worker.restart_at = time.monotonic() + delay

    def _deregister(self, worker: _Worker) -> None:
        """Remove a dead worker's node, calls and leases from the store now instead of at its TTL."""
        from .cluster.store import StoreUnavailable
        from .cluster.stores import open_store

        async def remove() -> None:
            store = open_store(redis_url=self.settings.redis_url, sqlite_path=worker.settings.cluster_db)
            if store is None:
                return
            try:
                await asyncio.wait_for(store.deregister(worker.settings.node_id), DEREGISTER_TIMEOUT_S)
            finally:
                await store.close()

        try:
            asyncio.run(remove())
        except (StoreUnavailable, TimeoutError) as exc:
            log.warning("dead worker %s not removed from the cluster store (its record expires by itself): %s",
                        worker.name, exc)

    # ---- stopping ----------------------------------------------------------------------------
    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self.stopping += 1
        name = signal.Signals(sig).name
        log.info("received %s: %s %d workers", name, "draining" if self.stopping == 1 else "stopping",
                 sum(w.alive for w in self.workers))
        self._stop_all(sig)

    def _stop_all(self, sig: int) -> None:
        self.stopping = max(self.stopping, 1)
        for worker in self.workers:
            worker.restart_at = None
            if worker.alive:
                try:
                    os.kill(worker.process.pid, sig)
                except ProcessLookupError:
                    pass

    def _cleanup(self) -> None:
        for worker in self.workers:
            if worker.alive:  # only after an error in the supervisor itself
                worker.process.kill()
                worker.process.join()
            worker.internal.close()
        if self.public is not None:
            self.public.close()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


def _die_with_parent(parent: int) -> None:
    """SIGTERM this process when the supervisor dies (Linux), so a killed supervisor leaves no workers."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # it died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(settings: Settings, public: socket.socket, internal: socket.socket, loaded: Any, parent: int) -> None:
    from .serving import run_node

    os.setpgid(0, 0)  # a terminal's Ctrl-C reaches the supervisor alone, which forwards it once
    _die_with_parent(parent)
    sys.exit(run_node(settings, sockets=[public, internal], on_loaded=loaded.set))


def supervise(settings: Settings) -> int:
    from .observability.logs import setup_logging

    setup_logging(settings.log_level, settings.log_format, secrets=settings.secret_values)
    return Supervisor(settings).run()
