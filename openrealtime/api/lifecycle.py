"""How the server process ends: graceful drain on the first SIGTERM/SIGINT, at once on the second,
and a non-zero exit when the local models cannot be loaded.

Drain (`Lifecycle.drain`): `/readyz` turns 503 at once and new calls and WebSocket sessions get 503
`server_shutting_down` with `Retry-After` (health.py), while the HTTP API goes on serving hangup,
the sideband, the call list and metrics. Live sessions go on until they end or the drain timeout
(`--drain-timeout`, default `--max-call-duration`) passes; then each one left gets an `error` event
(`server_shutting_down`) and is closed cleanly (WebRTC: the peer connection is closed, DTLS
close_notify; WebSocket: close 1012). The process exits 0 once the last one is gone.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from types import FrameType
from typing import Any, Protocol

import uvicorn

from ..config import Settings
from ..media.registry import CallRegistry
from .health import ServiceHealth

log = logging.getLogger("openrealtime.lifecycle")

CLOSE_GRACE_S = 5.0  # after the drain timeout: how long closed sessions get to say goodbye
POLL_S = 0.1


class Drainable(Protocol):
    """What a drain needs of the server (its `ServerState`, which owns the `Lifecycle`)."""

    settings: Settings
    health: ServiceHealth
    calls: CallRegistry
    ws_sessions: set[Any]

    def live_sessions(self) -> int: ...


class Lifecycle:
    def __init__(self, state: Drainable) -> None:
        self.state = state
        self.server: uvicorn.Server | None = None  # set by whoever runs the app (cli.serve, embedded)
        self.exit_code = 0
        self.fatal: str | None = None  # why the server cannot run (a local model failed to load)
        self._drain: asyncio.Task | None = None
        self._signals = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, server: uvicorn.Server, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.server = server
        self._loop = loop

    # ---- ending ------------------------------------------------------------------------------
    def stop(self, *, force: bool = False) -> None:
        """Ask the HTTP server to stop (after the lifespan's shutdown, which hangs up what is left)."""
        if self.server is not None:
            self.server.should_exit = True
            if force:
                self.server.force_exit = True

    def fail(self, message: str, code: int = 1) -> None:
        """The server cannot serve (e.g. a local model is broken): log why and exit with `code`."""
        self.fatal = message
        self.exit_code = code
        log.error("cannot serve: %s", message)
        self.stop()

    def on_signal(self, sig: int) -> None:
        """First SIGTERM/SIGINT: drain. A second one: stop at once. (Runs in the signal handler.)"""
        self._signals += 1
        loop = self._loop or asyncio.get_event_loop()
        name = signal.Signals(sig).name
        if self._signals == 1:
            log.info("received %s: draining (a second signal stops at once)", name)
            loop.call_soon_threadsafe(self.start_drain)
        else:
            log.warning("received %s again: stopping now, ending %d live sessions", name, self.state.live_sessions())
            loop.call_soon_threadsafe(lambda: self.stop(force=True))

    def start_drain(self) -> asyncio.Task:
        if self._drain is None:
            self._drain = asyncio.get_running_loop().create_task(self.drain(), name="drain")
        return self._drain

    async def drain(self) -> None:
        state = self.state
        state.health.draining = True
        timeout = state.settings.drain_timeout_s
        if timeout is None:
            timeout = state.settings.max_call_duration_s
        loop = asyncio.get_running_loop()
        log.info("draining calls=%d websocket_sessions=%d timeout_s=%g", len(state.calls), len(state.ws_sessions),
                 timeout)
        deadline = loop.time() + timeout
        while state.live_sessions() and loop.time() < deadline:
            await asyncio.sleep(POLL_S)
        left = state.live_sessions()
        if left:
            log.warning("drain timeout after %g s: closing %d live sessions", timeout, left)
            for engine in [call.engine for call in state.calls.all()] + list(state.ws_sessions):
                engine.shut_down()
            deadline = loop.time() + CLOSE_GRACE_S
            while state.live_sessions() and loop.time() < deadline:
                await asyncio.sleep(POLL_S)
            await state.calls.close_all("server_shutting_down")
        log.info("drained: stopping")
        self.stop()


class DrainingServer(uvicorn.Server):
    """uvicorn's server, with SIGTERM/SIGINT handled by `Lifecycle` (drain first) instead of closing
    the listening socket at once. The signal is not re-raised at exit: a drained server exits 0."""

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle) -> None:
        super().__init__(config)
        self.lifecycle = lifecycle

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:  # uvicorn's signal handler
        self.lifecycle.on_signal(sig)

    async def serve(self, sockets: Any = None) -> None:
        self.lifecycle.attach(self, asyncio.get_running_loop())
        await super().serve(sockets)
