"""Fixtures for the Live API tests: a server on scripted models (tests/support/fakes.py) that requires an API
key, the stock openai-python client pointed at it, and a reader that validates every frame strictly as the
SDK's own `openai.types.live.ServerEvent` (nested `response.event`s as `ResponseStreamEvent`s) and feeds the
transcript deltas through the SDK's transcript grouper (`openai.lib.live`), which must never raise."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from openai import AsyncOpenAI
from openai.lib.live import AsyncTranscriptGrouper
from openai.types.live import ConnectServerEvent, ServerEvent
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from openrealtime.api.embedded import embedded_server
from tests.support import fake_stack, server_settings

KEY = "sk-live-test"
SERVER_EVENT = TypeAdapter(ServerEvent)
SIDEBAND_EVENT = TypeAdapter(ConnectServerEvent)
RESPONSES_EVENT = TypeAdapter(ResponseStreamEvent)
FRAME = 2400  # 50 ms of PCM16 24 kHz
START = {"model": "gpt-live-1", "audio": {"format": {"type": "audio/pcm", "rate": 24000}}}


@asynccontextmanager
async def live_server(llm: Any = None, **settings: Any) -> AsyncIterator[Any]:
    """An in-process server on scripted models: `llm` answers (ScriptedLlm or any LanguageModel)."""
    async with embedded_server(server_settings(engine="local", api_keys=[KEY], **settings),
                               models=fake_stack(llm=llm)) as server:
        yield server


@pytest.fixture
async def server():
    async with live_server() as srv:
        yield srv


def client_for(server: Any, key: str = KEY) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0,
                       websocket_base_url=server.url.replace("http://", "ws://") + "/v1")


def validated(event: Any, adapter: TypeAdapter = SERVER_EVENT) -> dict[str, Any]:
    """The event as sent, checked strictly against the SDK's types (nested Responses events too)."""
    data = json.loads(event.to_json()) if hasattr(event, "to_json") else event
    adapter.validate_python(data, strict=True)
    if data["type"] == "response.event":
        RESPONSES_EVENT.validate_python(data["event"], strict=True)
    return data


class Reader:
    """Reads one Live connection: every event validated, kept, and its transcripts grouped."""

    def __init__(self, conn: Any, adapter: TypeAdapter = SERVER_EVENT) -> None:
        self.conn = conn
        self.adapter = adapter
        self.seen: list[dict[str, Any]] = []
        self.grouper = AsyncTranscriptGrouper()
        self.segments: list[Any] = []
        self.grouper.on("segment.closed", lambda closed: self.segments.append(closed.segment))

    async def next(self, type_: str | Callable[[dict[str, Any]], bool], *, timeout: float = 20.0) -> dict[str, Any]:
        """Events until one of `type_` (or one the predicate accepts); returns it."""
        want = (lambda e: e["type"] == type_) if isinstance(type_, str) else type_
        async with asyncio.timeout(timeout):
            while True:
                event = await self.conn.recv()
                data = validated(event, self.adapter)
                self.seen.append(data)
                await self.grouper.push(event)
                if want(data):
                    return data

    async def drain(self, seconds: float) -> None:
        """Read whatever arrives for `seconds`."""
        try:
            await self.next(lambda e: False, timeout=seconds)
        except TimeoutError:
            pass

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.seen if e["type"] == type_]

    def text(self, type_: str) -> str:
        return "".join(e["delta"] for e in self.of(type_))


async def send_pcm(conn: Any, pcm: bytes) -> None:
    """PCM16 24 kHz as 50 ms `session.input_audio.append` frames, as fast as the socket takes them."""
    for i in range(0, len(pcm), FRAME):
        await conn.session.input_audio.append(audio=base64.b64encode(pcm[i:i + FRAME]).decode())
