"""One serving process: the app on uvicorn, drained on SIGTERM/SIGINT (api/lifecycle.py).

`openrealtime serve` runs it directly, or once per worker under the supervisor (supervisor.py), which
hands each worker the host's listening HTTP socket and the worker's own internal one.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Callable
from contextlib import asynccontextmanager

from .config import Settings

LOADED_POLL_S = 0.1


def run_node(settings: Settings, *, sockets: list[socket.socket] | None = None,
             on_loaded: Callable[[], None] | None = None) -> int:
    """Serve until drained or stopped; returns the exit code. `sockets`: listening sockets to serve on
    instead of binding `settings.host:port`; `on_loaded`: called once the models are loaded."""
    import uvicorn

    from .api.app import create_app
    from .api.gc_policy import freeze_startup_heap
    from .api.lifecycle import DrainingServer
    from .limits import uvicorn_limits
    from .observability.logs import setup_logging

    setup_logging(settings.log_level, settings.log_format, secrets=settings.secret_values)
    app = create_app(settings)
    state = app.state.server
    if on_loaded is not None:
        _call_when_loaded(app, lambda: state.health.loaded, on_loaded)
    freeze_startup_heap()  # this process's startup heap: out of every later collection (api/gc_policy.py)
    if sockets is None:
        print(f"openrealtime: http://{settings.host}:{settings.port}/  (engine={settings.engine})", file=sys.stderr)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None,
                            log_level=settings.log_level, **uvicorn_limits())
    DrainingServer(config, state.lifecycle).run(sockets=sockets)  # SIGTERM/SIGINT: drain first
    if state.lifecycle.fatal:
        print(f"openrealtime: {state.lifecycle.fatal}", file=sys.stderr)
    return state.lifecycle.exit_code


def _call_when_loaded(app, loaded: Callable[[], bool], callback: Callable[[], None]) -> None:
    inner = app.router.lifespan_context

    async def watch() -> None:
        while not loaded():
            await asyncio.sleep(LOADED_POLL_S)
        callback()

    @asynccontextmanager
    async def lifespan(app_):
        task = asyncio.get_running_loop().create_task(watch())
        try:
            async with inner(app_) as maybe_state:
                yield maybe_state
        finally:
            task.cancel()

    app.router.lifespan_context = lifespan
