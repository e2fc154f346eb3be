"""The narrow interface a session's parts (a response, the MCP tools) see of their session.

`ResponseRun` (response.py) and `SessionMcp` (mcp_tools.py) are given a `SessionContext`, not the
engine: they publish events, add items to the conversation (which announces them), run model work
through the runtime, play speech and report back when a response ends. The engine implements it;
a test can implement it with a few lines.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol

from ..engines.base import ModelStack
from ..protocol.errors import ProtocolError
from ..protocol.responses import RealtimeResponse
from ..protocol.server_events import ServerEventBase
from ..runtime import ModelRuntime
from .conversation import Conversation


class Speaking(Protocol):
    """What the session needs to know of a response whose speech it plays."""

    response: RealtimeResponse
    in_conversation: bool

    @property
    def id(self) -> str: ...


class SessionContext(Protocol):
    runtime: ModelRuntime  # model worker pools, the foreground gate, the clock, task spawning
    models: ModelStack | Any
    conversation: Conversation  # the default conversation (it announces its own changes)
    stats: dict[str, int]  # the session's counters (answers_adopted, speech_adopted, ...)

    @property
    def speech_speed(self) -> float: ...

    def emit(self, event: ServerEventBase) -> None:
        """Publish a server event (nothing after the session closed)."""

    def send_error(self, exc: ProtocolError) -> None:
        """Publish an `error` event."""

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        """A task the session owns: cancelled when it closes, a failure logged."""

    def play_audio(self, pcm: bytes, run: Speaking, item_id: str, output_index: int) -> None:
        """Speech (canonical PCM) of a response item: played out on WebRTC, delta events on WebSocket."""

    def end_audio(self, run: Speaking, item_id: str) -> None:
        """A response's speech is complete (playout drains, then `output_audio_buffer.stopped`)."""

    def response_finished(self, run: Any) -> None:
        """A response has ended (its `response.done` was published)."""
