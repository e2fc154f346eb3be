"""A real MCP server (the `mcp` package's FastMCP, Streamable HTTP) on a free local port, for tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator

import uvicorn


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
def running_mcp_server(json_response: bool = False) -> Iterator[str]:
    """Serve it in a thread of its own; yields the URL (…/mcp)."""
    port = _free_port()
    app = build_server(json_response).streamable_http_app()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        threading.Event().wait(0.02)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        thread.join(5)
