"""A real MCP server (the `mcp` package's FastMCP, Streamable HTTP) on a free local port, and other
ASGI apps served the same way, for tests."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

import uvicorn

from openrealtime.api.embedded import free_port
from openrealtime.engines.egress import EgressPolicy

# The servers below listen on 127.0.0.1, an address the egress policy refuses by default: tests allow
# it as an operator would (`--mcp-allow 127.0.0.1`).
LOCAL_ALLOW = ["127.0.0.1"]


def local_egress() -> EgressPolicy:
    return EgressPolicy(LOCAL_ALLOW)


def build_server(json_response: bool = False):
    from mcp.server.fastmcp import FastMCP

    mcp = FastMCP("weather", json_response=json_response)

    @mcp.tool(description="Current weather in a city.")
    def get_weather(city: str) -> str:
        return f"It is 21 degrees and sunny in {city}."

    @mcp.tool(description="Adds two numbers.", annotations={"readOnlyHint": True})
    def add(a: int, b: int) -> str:
        return str(a + b)

    @mcp.tool(description="Always fails.")
    def broken() -> str:
        raise RuntimeError("the sensor is offline")

    return mcp


@contextlib.contextmanager
def serving(app, path: str = "/mcp") -> Iterator[str]:
    """Serve an ASGI app in a thread of its own on a free port; yields its URL (+ path)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                                          timeout_graceful_shutdown=1))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        threading.Event().wait(0.02)
    try:
        yield f"http://127.0.0.1:{port}{path}"
    finally:
        server.should_exit = True
        thread.join(5)


def running_mcp_server(json_response: bool = False, legacy_sse: bool = False):
    """The FastMCP server above; yields its URL (…/mcp, or …/sse for the older HTTP+SSE transport)."""
    if legacy_sse:
        return serving(build_server().sse_app(), path="/sse")
    return serving(build_server(json_response).streamable_http_app())


def lingering_stream_app(linger_s: float = 30.0):
    """A minimal MCP endpoint that answers every request on an event stream and then keeps the
    stream open (as a server sending notifications may), to check clients stop at the answer."""
    import json

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        message = json.loads(body)
        if "id" not in message:
            await send({"type": "http.response.start", "status": 202, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        result = {"tools": [{"name": "ping", "inputSchema": {"type": "object"}}]} \
            if message["method"] == "tools/list" else {"protocolVersion": "2025-06-18", "capabilities": {}}
        answer = json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result})
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": f"event: message\ndata: {answer}\n\n".encode(),
                    "more_body": True})
        await asyncio.sleep(linger_s)
        await send({"type": "http.response.body", "body": b""})

    return app
