"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from ..config import Settings
from .admission import admission_refusal
from .calls import router as calls_router
from .client_secrets import router as secrets_router
from .cluster_node import install as install_cluster_node
from .errors import install_error_handlers
from .health import BackendWatch
from .live import router as live_router
from .operator import install as install_operator
from .pool_admission import install as install_pool_admission
from .request_limits import RequestLimits
from .sip_calls import install as install_sip_calls
from .state import ServerState
from .translations import router as translations_router
from .web import router as web_router
from .websocket import router as websocket_router

log = logging.getLogger("openrealtime.server")


def size_pools(runtime: Any, models: Any) -> None:
    """Each stage's worker pool as wide as its engine takes requests at once (engines/base.py `concurrency`);
    "warm", the LLM's prefills while users speak, as wide as the LLM."""
    from ..engines.base import concurrency

    for stage, engine in (("asr", models.stt), ("llm", models.llm), ("warm", models.llm), ("tts", models.tts),
                          ("denoise", getattr(models, "denoise", None))):  # noise reduction: streams at once
        runtime.configure(stage, concurrency(engine))


async def _load_models(state: ServerState) -> BackendWatch | None:
    """Load and warm the model stack in a worker thread, then mark it loaded; remote stages are
    connected by a `BackendWatch` (retrying until they answer). A local model that cannot be loaded
    stops the server with a non-zero exit: waiting cannot repair it."""
    from ..engines.base import concurrency
    from ..engines.echo import EchoStack
    from ..engines.stack import configured_stack, load_model_stack
    from ..runtime import run_in_model_thread

    settings, runtime = state.settings, state.runtime
    watch = None
    if settings.engine == "echo" and state.models is None:
        state.models = EchoStack(loopback_delay_s=settings.echo_delay_s)
    if settings.engine == "local" and state.models is None:
        def progress(stage: str, message: str) -> None:
            log.info("models stage=%s %s", stage, message)

        try:
            state.models = await run_in_model_thread(lambda: load_model_stack(
                **configured_stack(settings), defer_remote=True, gate=state.runtime.gate, progress=progress))
        except Exception as exc:  # noqa: BLE001 - a model that cannot load: nothing else will fix it
            state.lifecycle.fail(str(exc))
            return None
        state.owns_models = True
        size_pools(runtime, state.models)
        if state.models.remote:
            pools = {"stt": "asr", "llm": "llm", "tts": "tts"}
            watch = BackendWatch(state.health, state.models, on_connected=lambda stage, engine: runtime.configure(
                pools[stage], concurrency(engine)))
            watch.start()
    elif settings.engine == "local" and state.models is not None:
        size_pools(runtime, state.models)  # a stack loaded beforehand (embedded servers, benches)
    state.health.loaded = True
    log.info("models loaded engine=%s advertise=%s", settings.engine,
             ",".join(a for _, a in state.ice.addresses))
    return watch


def create_app(settings: Settings, *, state: ServerState | None = None) -> FastAPI:
    state = state or ServerState.build(settings)
    state.health.capacity = lambda: admission_refusal(state)  # --max-conversations (admission.py)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if state.mux is not None:
            try:
                await state.mux.start()  # the shared ICE ports, before anything can be answered
            except OSError as exc:
                log.error("%s", exc)
                raise
        loader = asyncio.create_task(_load_models(state))
        try:
            yield
        finally:
            loader.cancel()
            watch = None if loader.cancelled() or not loader.done() or loader.exception() else loader.result()
            if watch is not None:
                await watch.close()
            await state.calls.close_all()
            if state.mux is not None:
                await state.mux.close()
            if state.models is not None and state.owns_models:
                state.models.close()
            if state.owns_runtime:
                state.runtime.close()

    app = FastAPI(title="openrealtime", version="0.1.0", lifespan=lifespan)
    app.state.server = state
    install_error_handlers(app)
    # header count/size and declared body size on every route (limits.py); inside CORS, so browsers can read
    # the error
    app.add_middleware(RequestLimits, max_body_bytes=settings.max_body_bytes)
    # Browsers call the API directly with ephemeral keys, like api.openai.com allows.
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"],
                       expose_headers=["Location"])
    app.include_router(calls_router)
    app.include_router(secrets_router)
    app.include_router(web_router)
    app.include_router(websocket_router)  # WS /v1/realtime (sessions, sideband), POST /v1/realtime (beta SDP)
    app.include_router(translations_router)  # WS /v1/realtime/translations, POST …/translations/client_secrets
    app.include_router(live_router)  # Live API: WS + POST /v1/live/sessions, …/{id}/attach, …/{id}/hangup
    install_operator(app, state)  # GET /metrics, GET /v1/realtime/calls[/{id}]
    install_sip_calls(app, state)  # POST /v1/realtime/calls/{id}/accept|reject|refer; with --sip-port the SIP server
    install_pool_admission(app, state)  # --llm-max-sessions …: the shared model pools' leases (admission.py)
    install_cluster_node(app, state)  # with --redis-url: heartbeats and the call map in the cluster store

    @app.get("/healthz")
    async def healthz(request: Request) -> Any:
        """Liveness: 200 while the process serves, with what it can do (health.py)."""
        return {"status": state.health.status()}

    @app.get("/readyz")
    async def readyz(request: Request) -> Any:
        """Readiness: 200 only when sessions can be served here now; else 503 saying why."""
        reason = state.health.reason()
        if reason is None:
            return {"status": "ready"}
        return JSONResponse({"status": state.health.status(), "reason": reason}, status_code=503)

    return app
