"""Run the server inside the current event loop (tests, benchmarks, embedding in an app)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any
from contextlib import asynccontextmanager

import uvicorn

from ..config import Settings
from .app import create_app
from ..runtime import Runtime
from .state import ServerState
from ..limits import uvicorn_limits


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class EmbeddedServer:
    def __init__(self, settings: Settings, state: ServerState, server: uvicorn.Server) -> None:
        self.settings = settings
        self.state = state
        self.server = server

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    async def wait_ready(self, timeout: float = 600.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.state.ready:
            if self.state.lifecycle.fatal:
                raise RuntimeError(self.state.lifecycle.fatal)
            if loop.time() > deadline:
                raise TimeoutError("server did not become ready")
            await asyncio.sleep(0.05)


@asynccontextmanager
async def embedded_server(settings: Settings, *, wait_ready: bool = True, models: Any = None,
                          runtime: Runtime | None = None) -> AsyncIterator[EmbeddedServer]:
    """`models`: an already loaded ModelStack to share between servers (tests load it once), with the
    `runtime` whose foreground gate it was loaded with (`load_model_stack(gate=runtime.gate)`)."""
    if not settings.port:
        settings.port = free_port(settings.host)
    state = ServerState.build(settings)
    state.models = models
    if runtime is not None:
        state.runtime, state.owns_runtime = runtime, False
    app = create_app(settings, state=state)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None,
                                           log_level="warning", lifespan="on", **uvicorn_limits()))
    state.lifecycle.attach(server, asyncio.get_running_loop())
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            try:
                task.result()
            except SystemExit as exc:  # uvicorn's way to fail a startup; it would end the embedding program
                raise RuntimeError(f"the server could not start (uvicorn exit status {exc.code}; its log says "
                                   f"why)") from None
            raise RuntimeError("server exited during startup")
        await asyncio.sleep(0.02)
    handle = EmbeddedServer(settings, state, server)
    try:
        if wait_ready:
            await handle.wait_ready()
        yield handle
    finally:
        server.should_exit = True
        await task
