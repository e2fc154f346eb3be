"""The few ASGI steps the tests' small HTTP apps (webhook endpoints) share: the lifespan handshake, reading
a request's whole body, and a plain answer."""

from __future__ import annotations


async def lifespan(receive, send) -> None:
    """Answer uvicorn's lifespan startup and shutdown (an app with nothing to start)."""
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


async def read_body(receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def respond(send, status: int, body: bytes = b"") -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})
