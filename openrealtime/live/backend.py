"""Responses delegation on the local language model: the backend a Live session hands tasks to.

A session with `delegation: {type: "responses", responses: {model, instructions, tools, ...}}` gives the
voice model one `delegate(task)` function; each call starts a backend response here. The backend keeps
its own conversation (system prompt: `responses.instructions`; then the delegated tasks, its answers,
its function calls and their outputs), separate from the voice side's, and streams each response as
Responses-API streaming events (`response.created`, `response.in_progress`, `response.output_item.added`,
`response.content_part.added`, `response.output_text.delta`/`.done`, `response.function_call_arguments.
delta`/`.done`, `response.output_item.done`, `response.completed`/`.incomplete`/`.failed`), numbered by
`sequence_number`, which the session wraps in `response.event`. Snapshots of the response carry no
input, instructions, tools or output, as on the service.

A response that calls the application's functions waits: the application sends
`response.item.create {function_call_output}` and then `response.create`. A response that ends in text
is the answer: the session speaks it (`answered`). Any `responses.model` name is served by the server's
one language model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import ids
from ..engines.base import ChatRequest, Finished, SessionAware, TextDelta, ToolCallDelta
from ..protocol.errors import ProtocolError
from ..protocol.live import LiveFunctionTool, ResponsesConfig
from ..runtime import ModelRuntime

log = logging.getLogger(__name__)

DEFAULT_INSTRUCTIONS = ("You are the backend assistant of a voice agent. Complete the task you are given, calling "
                        "the functions you have where they help, then state the result in one or two plain "
                        "sentences that the voice agent can read out.")
DEFAULT_MAX_TOKENS = 1024

Emit = Callable[[dict[str, Any]], None]  # one Responses streaming event (without its sequence_number)


def chat_tools(config: ResponsesConfig) -> tuple[list[dict[str, Any]], Any]:
    """The chat-completions tools and tool_choice for the backend's function tools."""
    tools = [t for t in config.tools or [] if isinstance(t, LiveFunctionTool)]
    choice: Any = config.tool_choice or "auto"
    if isinstance(choice, dict):
        if choice.get("type") == "function":
            choice = {"type": "function", "function": {"name": choice.get("name")}}
        elif choice.get("type") == "allowed_tools":
            names = {t.get("name") for t in choice.get("tools") or [] if isinstance(t, dict)}
            tools = [t for t in tools if t.name in names]
            choice = choice.get("mode") or "auto"
        else:
            choice = "auto"
    return [{"type": "function", "function": {"name": t.name, "description": t.description or "",
                                              "parameters": t.parameters or {"type": "object", "properties": {}}}}
            for t in tools], choice


def function_call_output(item: dict[str, Any], pending: Any) -> tuple[str, str]:
    """(call_id, output) of a `function_call_output` item for one of the `pending` call ids."""
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or call_id not in pending:
        raise ProtocolError(f"No function call with call_id '{call_id}' is awaiting an output.",
                            code="invalid_value", param="item.call_id")
    return call_id, _text_of(item.get("output"), "item.output", "input_text parts")


def message_of(item: dict[str, Any]) -> tuple[str, str]:
    """(role, text) of a `message` item."""
    role = item.get("role")
    if role not in ("user", "developer", "system", "assistant"):
        raise ProtocolError(f"Invalid 'item.role': {role!r}.", code="invalid_value", param="item.role")
    return role, _text_of(item.get("content"), "item.content", "text parts")


def _text_of(value: Any, param: str, parts: str) -> str:
    """A string, or the text of a list of text parts."""
    if isinstance(value, list):
        value = "".join(p.get("text", "") for p in value if isinstance(p, dict))
    if not isinstance(value, str):
        raise ProtocolError(f"Invalid '{param}': expected a string or a list of {parts}.", code="invalid_type",
                            param=param)
    return value


class ResponsesBackend:
    def __init__(self, config: ResponsesConfig, *, models: Any, runtime: ModelRuntime, emit: Callable[[dict[str, Any],
                 str | None], None], answered: Callable[[str], None], session_key: str) -> None:
        self.config = config
        self.models = models
        self.runtime = runtime
        self._emit = emit  # (event, delegation_id)
        self._answered = answered
        self._session_key = session_key
        self._history: list[dict[str, Any]] = []  # chat messages after the system prompt
        self._pending_calls: dict[str, str] = {}  # call_id -> function name, awaiting its output
        self._delegation_id: str | None = None  # the delegation the next events belong to
        self._task: asyncio.Task | None = None
        self._cancel = threading.Event()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def delegate(self, delegation_id: str, response_id: str, task: str) -> None:
        """A task from the voice model: a new backend response (`response_id` is the delegation's)."""
        self._history.append({"role": "user", "content": task or "(the voice agent gave no task text)"})
        self._start(delegation_id, response_id)

    def add_item(self, item: dict[str, Any]) -> None:
        """`response.item.create`: a function call's output, or a message, for the next response."""
        kind = item.get("type", "message")
        if kind == "function_call_output":
            call_id, output = function_call_output(item, self._pending_calls)
            del self._pending_calls[call_id]
            self._history.append({"role": "tool", "tool_call_id": call_id, "content": output})
        elif kind == "message":
            role, content = message_of(item)
            self._history.append({"role": "system" if role == "developer" else role, "content": content})
        else:
            raise ProtocolError(f"Items of type '{kind}' are not supported here: send a function_call_output or a "
                                "message.", code="unsupported_item", param="item.type")

    def create(self) -> None:
        """`response.create`: the backend answers what it has now."""
        if self.running:
            raise ProtocolError("A backend response is already in progress; wait for response.completed.",
                                code="response_in_progress")
        if self._pending_calls:
            missing = ", ".join(sorted(self._pending_calls))
            raise ProtocolError(f"Function calls are still awaiting their output (response.item.create with a "
                                f"function_call_output): {missing}.", code="function_call_output_missing")
        self._start(self._delegation_id, ids.response_id())

    def close(self) -> None:
        self._cancel.set()
        if self._task is not None:
            self._task.cancel()
        llm = getattr(self.models, "llm", None)
        if isinstance(llm, SessionAware):  # the local LLM keeps the backend conversation's prompt state
            try:
                llm.forget_session(self._session_key)
            except Exception:  # the session is closing either way
                log.exception("live backend %s could not drop its LLM prompt state", self._session_key)

    # ---- one response ------------------------------------------------------------------------
    def _start(self, delegation_id: str | None, response_id: str) -> None:
        self._delegation_id = delegation_id
        self._task = self.runtime.spawn(self._run(response_id, delegation_id), name=f"live-backend-{response_id}")

    async def _run(self, response_id: str, delegation_id: str | None) -> None:
        sequence = 0

        def emit(event: dict[str, Any]) -> None:
            nonlocal sequence
            self._emit({**event, "sequence_number": sequence}, delegation_id)
            sequence += 1

        snapshot = response_snapshot(self.config, response_id)
        emit({"type": "response.created", "response": snapshot})
        emit({"type": "response.in_progress", "response": snapshot})
        stream = OutputStream(emit)
        try:
            finished = await self._generate(stream)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the backend failed: say so on its stream
            log.warning("live backend response %s failed: %s", response_id, exc)
            emit({"type": "response.failed", "response": {**snapshot, "status": "failed", "error": {
                "code": "server_error", "message": f"The backend model failed: {exc}"}}})
            return
        stream.finish()
        usage = responses_usage(finished.input_tokens, finished.output_tokens, finished.cached_tokens)
        if stream.calls:
            self._history.append({"role": "assistant", "content": stream.text or None, "tool_calls": [
                {"id": c["call_id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in stream.calls]})
            self._pending_calls.update({c["call_id"]: c["name"] for c in stream.calls})
        elif stream.text:
            self._history.append({"role": "assistant", "content": stream.text})
        if finished.reason == "length":
            emit({"type": "response.incomplete", "response": {
                **snapshot, "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
                "usage": usage}})
        else:
            emit({"type": "response.completed", "response": {**snapshot, "status": "completed", "usage": usage}})
        if not stream.calls and stream.text.strip():
            self._answered(stream.text.strip())

    async def _generate(self, stream: "OutputStream") -> Finished:
        llm = self.models.llm
        tools, choice = chat_tools(self.config)
        request = ChatRequest(
            messages=[{"role": "system", "content": self.config.instructions or DEFAULT_INSTRUCTIONS}, *self._history],
            tools=tools, tool_choice=choice if tools else "auto",
            max_tokens=self.config.max_output_tokens or DEFAULT_MAX_TOKENS, session_key=self._session_key,
            parallel_tool_calls=self.config.parallel_tool_calls if tools else None)
        finished = Finished("stop")
        async for delta in self.runtime.stream("llm", lambda: llm.stream_chat(request, self._cancel), self._cancel):
            if isinstance(delta, TextDelta):
                stream.text_delta(delta.text)
            elif isinstance(delta, ToolCallDelta):
                stream.call_delta(delta)
            elif isinstance(delta, Finished):
                finished = delta
        return finished


def response_snapshot(config: ResponsesConfig, response_id: str) -> dict[str, Any]:
    """A Responses `response` object as streaming events carry it: no input, instructions, tools or output."""
    return {"id": response_id, "object": "response", "created_at": int(time.time()), "model": config.model,
            "status": "in_progress", "output": [], "tools": [], "tool_choice": "auto",
            "parallel_tool_calls": config.parallel_tool_calls is not False, "error": None,
            "incomplete_details": None, "metadata": {}, "max_output_tokens": config.max_output_tokens}


def responses_usage(input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> dict[str, Any]:
    return {"input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": input_tokens + output_tokens,
            "input_tokens_details": {"cached_tokens": cached_tokens, "cache_write_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0}}


class OutputStream:
    """The output items of one response as Responses streaming events: a message (its one output_text part)
    and function calls, each announced when it starts and closed at the end."""

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self._next_index = 0
        self._message: dict[str, Any] | None = None  # {"id", "output_index"}
        self.text = ""
        self.calls: list[dict[str, Any]] = []  # {"id", "output_index", "call_id", "name", "arguments"}
        self._by_index: dict[int, dict[str, Any]] = {}
        self.tool_items: dict[str, dict[str, Any]] = {}  # item id -> {"output_index", "item"}: MCP calls, approvals

    def _index(self) -> int:
        self._next_index += 1
        return self._next_index - 1

    def text_delta(self, text: str) -> None:
        if not text:
            return
        if self._message is None:
            self._message = {"id": ids.item_id(), "output_index": self._index()}
            self._emit({"type": "response.output_item.added", "output_index": self._message["output_index"],
                        "item": self._message_item("in_progress", [])})
            self._emit({"type": "response.content_part.added", "item_id": self._message["id"],
                        "output_index": self._message["output_index"], "content_index": 0,
                        "part": {"type": "output_text", "text": "", "annotations": []}})
        self.text += text
        self._emit({"type": "response.output_text.delta", "item_id": self._message["id"],
                    "output_index": self._message["output_index"], "content_index": 0, "delta": text, "logprobs": []})

    def call_delta(self, delta: ToolCallDelta) -> None:
        call = self._by_index.get(delta.index)
        if call is None:
            call = {"id": ids.item_id(), "output_index": self._index(), "call_id": delta.call_id or ids.call_tool_id(),
                    "name": delta.name or "", "arguments": ""}
            self._by_index[delta.index] = call
            self.calls.append(call)
            self._emit({"type": "response.output_item.added", "output_index": call["output_index"],
                        "item": self._call_item(call, "in_progress")})
        if delta.arguments:
            call["arguments"] += delta.arguments
            self._emit({"type": "response.function_call_arguments.delta", "item_id": call["id"],
                        "output_index": call["output_index"], "delta": delta.arguments})

    def tool_item_added(self, item: dict[str, Any]) -> None:
        """A server-run tool's item (an MCP call, an approval request), as a Responses output item."""
        index = self._index()
        self.tool_items[item["id"]] = {"output_index": index, "item": item}
        self._emit({"type": "response.output_item.added", "output_index": index, "item": item})
        if item["type"] == "mcp_call":
            self._emit({"type": "response.mcp_call.in_progress", "item_id": item["id"], "output_index": index})

    def tool_item_done(self, item: dict[str, Any]) -> None:
        if item["id"] not in self.tool_items:
            self.tool_item_added({**item, "status": "in_progress"} if item["type"] == "mcp_call" else item)
        entry = self.tool_items[item["id"]]
        entry["item"] = item
        index = entry["output_index"]
        if item["type"] == "mcp_call":
            self._emit({"type": "response.mcp_call_arguments.done", "item_id": item["id"], "output_index": index,
                        "arguments": item["arguments"]})
            self._emit({"type": "response.mcp_call.failed" if item.get("error") else "response.mcp_call.completed",
                        "item_id": item["id"], "output_index": index})
        self._emit({"type": "response.output_item.done", "output_index": index, "item": item})

    def finish(self) -> None:
        if self._message is not None:
            index, item_id = self._message["output_index"], self._message["id"]
            part = {"type": "output_text", "text": self.text, "annotations": []}
            self._emit({"type": "response.output_text.done", "item_id": item_id, "output_index": index,
                        "content_index": 0, "text": self.text, "logprobs": []})
            self._emit({"type": "response.content_part.done", "item_id": item_id, "output_index": index,
                        "content_index": 0, "part": part})
            self._emit({"type": "response.output_item.done", "output_index": index,
                        "item": self._message_item("completed", [part])})
        for call in self.calls:
            self._emit({"type": "response.function_call_arguments.done", "item_id": call["id"],
                        "output_index": call["output_index"], "name": call["name"], "arguments": call["arguments"]})
            self._emit({"type": "response.output_item.done", "output_index": call["output_index"],
                        "item": self._call_item(call, "completed")})

    def _message_item(self, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
        assert self._message is not None
        return {"type": "message", "id": self._message["id"], "role": "assistant", "status": status,
                "content": content}

    @staticmethod
    def _call_item(call: dict[str, Any], status: str) -> dict[str, Any]:
        return {"type": "function_call", "id": call["id"], "call_id": call["call_id"], "name": call["name"],
                "arguments": call["arguments"] if status == "completed" else "", "status": status}


def task_of(arguments: str) -> str:
    """The task text of a `delegate` call's JSON arguments (the raw text when they are not JSON)."""
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments.strip()
    if isinstance(parsed, dict):
        return str(parsed.get("task") or "").strip()
    return str(parsed).strip()
