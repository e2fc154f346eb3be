"""An OpenAI-compatible model server that can be told to misbehave (the reliability tests' backend).

It speaks real HTTP/1.1 on a real socket, written at the socket level so that each fault is exactly
what a broken server does on the wire:

* `GET /v1/models`, `POST /v1/chat/completions` (SSE stream of a fixed reply, usage, `[DONE]`),
  `POST /v1/audio/transcriptions` (JSON `{"text": ...}`), `POST /v1/audio/speech` (streamed 24 kHz PCM).
* `modes[stage]` (stage: "models" | "llm" | "stt" | "tts") picks the behaviour of the next requests:
  `ok`; `error` (500 in OpenAI's error shape); `hang` (reads the request, never answers); `drop`
  (answers 200, sends part of the body, closes the connection); `stall` (sends part of the body, then
  nothing while the connection stays open); `keepalive` (SSE comments only, never a token);
  `garbage` (200 with a body that is not what the route should send).
* `stop()` closes the listening socket (connections refused); `start()` listens again on the same port.
* `requests` lists (stage, body) of each request; `disconnects[stage]` counts requests whose client
  went away before the answer was complete (a cancelled or abandoned request).

It runs in its own thread and event loop, so both blocking and async tests can use it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter

import numpy as np

from openrealtime.api.embedded import free_port

REPLY = ["Hello", " there", ", friend", "."]


class FaultBackend:
    def __init__(self) -> None:
        self.modes: dict[str, str] = {"models": "ok", "llm": "ok", "stt": "ok", "tts": "ok"}
        self.requests: list[tuple[str, bytes]] = []
        self.disconnects: Counter[str] = Counter()
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-backend", daemon=True)
        self._thread.start()
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def set(self, **modes: str) -> None:
        self.modes.update(modes)

    def count(self, stage: str) -> int:
        return sum(1 for s, _ in self.requests if s == stage)

    # ---- lifecycle ---------------------------------------------------------------------------
    def _call(self, coro) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def start(self) -> None:
        async def listen() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        self._call(listen())

    def stop(self) -> None:
        """Stop listening and cut every open connection (the server process died)."""
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                self._server = None
            for writer in list(self._writers):
                writer.transport.abort()
        self._call(close())

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # ---- HTTP --------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in
                           (line.split(":", 1) for line in lines[1:] if ":" in line)}
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                if not await self._route(method, path.split("?")[0], body, reader, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _route(self, method: str, path: str, body: bytes, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> bool:
        stage = {"/v1/models": "models", "/v1/chat/completions": "llm", "/v1/audio/transcriptions": "stt",
                 "/v1/audio/speech": "tts"}.get(path)
        if stage is None:
            await _respond(writer, 404, b'{"error": {"message": "not found", "type": "invalid_request_error"}}')
            return True
        self.requests.append((stage, body))
        mode = self.modes[stage]
        if mode == "error":
            await _respond(writer, 500, json.dumps({"error": {"message": f"{stage} exploded", "type": "server_error",
                                                              "param": None, "code": None}}).encode())
            return True
        if mode == "hang":
            await self._wait_for_disconnect(stage, reader)
            return False
        if stage == "models":
            await _respond(writer, 200, json.dumps({"object": "list", "data": [
                {"id": "fault-llm", "object": "model"}, {"id": "whisper-1", "object": "model"},
                {"id": "tts-1", "object": "model"}]}).encode())
            return True
        if stage == "stt":
            if mode == "garbage":
                await _respond(writer, 200, b"<html>not json</html>", "text/html")
            else:
                await _respond(writer, 200, json.dumps({"text": "hello from the fault backend"}).encode())
            return True
        chunks = _sse_chunks() if stage == "llm" else _pcm_chunks()
        ctype = "text/event-stream" if stage == "llm" else "application/octet-stream"
        writer.write(f"HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ntransfer-encoding: chunked\r\n\r\n".encode())
        if mode == "garbage":
            chunks = [b"this is not a stream the client can read\n\n"] * 3 if stage == "llm" else [b"\x01"]
        elif mode == "keepalive":
            chunks = [b": ping\n\n"] * 1000
        for i, chunk in enumerate(chunks):
            if mode in ("drop", "stall") and i == 2:
                if mode == "drop":
                    writer.transport.abort()
                    return False
                await self._wait_for_disconnect(stage, reader)
                return False
            try:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
            except ConnectionError:
                self.disconnects[stage] += 1
                return False
            await asyncio.sleep(0.2 if mode == "keepalive" else 0.02)
            if reader.at_eof():
                self.disconnects[stage] += 1
                return False
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async def _wait_for_disconnect(self, stage: str, reader: asyncio.StreamReader) -> None:
        """Say nothing until the client goes away (it gave up or cancelled)."""
        try:
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
        self.disconnects[stage] += 1


async def _respond(writer: asyncio.StreamWriter, status: int, body: bytes, ctype: str = "application/json") -> None:
    writer.write(f"HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
                 + body)
    await writer.drain()


def _sse_chunks() -> list[bytes]:
    out = []
    for text in REPLY:
        out.append(b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}).encode() + b"\n\n")
    out.append(b"data: " + json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                                       "usage": {"prompt_tokens": 12, "completion_tokens": 4}}).encode() + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return out


def _pcm_chunks() -> list[bytes]:
    """0.6 s of a 220 Hz tone as 24 kHz s16le, in 0.1 s chunks."""
    t = np.arange(24_000 * 6 // 10) / 24_000
    pcm = (np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2").tobytes()
    return [pcm[i:i + 4800] for i in range(0, len(pcm), 4800)]
