"""Responses delegation in one pass: the voice model itself calls the backend's tools.

The low-latency alternative to live/backend.py (a second language-model pass per delegated task): a
session whose `delegation.responses.model` is the session's own `model` gives the voice model the
backend's function tools and MCP tools directly, so one local pass both talks and calls tools. The
wire stays that of responses delegation: a response of the voice engine that calls a tool becomes a
delegation (`session.delegation.created {target: responses, response_id}`) whose Responses streaming
events (`response.created` … `response.completed`) are synthesized from the engine's own events and
ride `response.event`:

| voice engine (Realtime) | Responses event in `response.event` |
|---|---|
| `response.output_item.added` of a function_call / mcp_call / mcp_approval_request | `response.created`, `response.in_progress` (first tool of the response), `response.output_item.added` |
| `response.function_call_arguments.delta` | `response.function_call_arguments.delta` |
| `response.output_audio_transcript.delta` (of a mirrored response) | `response.output_text.delta` |
| `response.output_item.done` of an MCP item | `response.mcp_call_arguments.done`, `response.mcp_call.completed`/`.failed`, `response.output_item.done` |
| `response.done` | the closing events, then `response.completed` (status `cancelled` for a response cut by barge-in) / `.incomplete` / `.failed` |

The application answers function calls as with the separate backend: `response.item.create
{function_call_output}` then `response.create`, which become the engine's `conversation.item.create` and
(when no response is in progress) `response.create`; that answer is spoken and mirrored as the next
response of the delegation. MCP tools are listed and run by the voice engine (session/mcp_tools.py's
SessionMcp, through the server's egress policy); after a response whose MCP calls ran, the answer follows
on its own. An approval request (`require_approval`) is answered with `response.item.create
{mcp_approval_response}` then `response.create`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import ids
from ..engines.base import ToolCallDelta
from ..protocol.errors import ProtocolError
from ..protocol.live import ResponsesConfig
from .backend import OutputStream, function_call_output, message_of, response_snapshot, responses_usage

TOOL_ITEMS = ("function_call", "mcp_call", "mcp_approval_request")


def _mcp_item(item: Any, status: str) -> dict[str, Any]:
    """An engine MCP item as a Responses output item."""
    if item.type == "mcp_approval_request":
        return {"type": "mcp_approval_request", "id": item.id, "server_label": item.server_label,
                "name": item.name, "arguments": item.arguments}
    error = getattr(item.error, "message", None) if item.error is not None else None
    return {"type": "mcp_call", "id": item.id, "server_label": item.server_label, "name": item.name,
            "arguments": item.arguments, "output": item.output, "error": error,
            "approval_request_id": item.approval_request_id,
            "status": "in_progress" if status == "in_progress" else "failed" if error else "completed"}


class _Mirror:
    """One engine response seen as a Responses response of a delegation."""

    def __init__(self, response_id: str, delegation_id: str, emit: Callable[[dict[str, Any], str | None], None],
                 config: ResponsesConfig) -> None:
        self.response_id = response_id
        self.delegation_id = delegation_id
        self.sequence = 0
        self._emit = emit
        self.snapshot = response_snapshot(config, response_id)
        self.stream = OutputStream(self.emit)
        self.call_index: dict[str, int] = {}  # engine item id -> the stream's call index
        self.emit({"type": "response.created", "response": self.snapshot})
        self.emit({"type": "response.in_progress", "response": self.snapshot})

    def emit(self, event: dict[str, Any]) -> None:
        self._emit({**event, "sequence_number": self.sequence}, self.delegation_id)
        self.sequence += 1


class OnePassBackend:
    """The Responses side of a one-pass session: mirrors the voice engine's tool-calling responses and takes
    the application's `response.item.create` / `response.create`."""

    def __init__(self, config: ResponsesConfig, *, emit: Callable[[dict[str, Any], str | None], None],
                 delegated: Callable[[str, str], None], engine_send: Callable[..., None],
                 speak: Callable[[], None]) -> None:
        self.config = config
        self._emit = emit  # (Responses event, delegation_id)
        self._delegated = delegated  # (delegation_id, response_id): session.delegation.created
        self._engine_send = engine_send
        self._speak = speak  # the engine answers once no response is in progress
        self._mirrors: dict[str, _Mirror] = {}  # engine response id -> its mirror
        self._delegation_id: str | None = None  # the delegation a follow-up answer belongs to
        self._follow = False  # the next engine response continues the delegation
        self._pending_calls: set[str] = set()  # call ids awaiting the application's output
        self._approvals: set[str] = set()  # approval request ids awaiting an answer

    @property
    def running(self) -> bool:
        return bool(self._mirrors)

    # ---- the voice engine's events ---------------------------------------------------------------
    def on_engine_event(self, event: Any) -> None:
        kind = event.type
        if kind == "response.created":
            if self._follow:  # the application's response.create (or an MCP result) asked for this one
                self._follow = False
                announce = self._delegation_id is None
                self._start(event.response.id, self._delegation_id or ids.delegation_id(), announce=announce)
            return
        response_id = getattr(event, "response_id", None)
        if kind == "response.done":
            response_id = event.response.id
        mirror = self._mirrors.get(response_id) if response_id else None
        if kind == "response.output_item.added" and event.item.type in TOOL_ITEMS:
            if mirror is None:
                delegation_id = ids.delegation_id()
                mirror = self._start(event.response_id, delegation_id, announce=True)
            self._item_added(mirror, event.item)
        elif mirror is None:
            return
        elif kind == "response.function_call_arguments.delta" and event.item_id in mirror.call_index:
            mirror.stream.call_delta(ToolCallDelta(index=mirror.call_index[event.item_id], arguments=event.delta))
        elif kind == "response.output_audio_transcript.delta" and event.delta:
            mirror.stream.text_delta(event.delta)
        elif kind == "response.output_item.done" and event.item.type in ("mcp_call", "mcp_approval_request"):
            mirror.stream.tool_item_done(_mcp_item(event.item, "completed"))
            if event.item.type == "mcp_approval_request":
                self._approvals.add(event.item.id)
        elif kind == "response.done":
            self._finish(mirror, event.response)

    def _start(self, engine_response_id: str, delegation_id: str, *, announce: bool = False) -> _Mirror:
        response_id = ids.response_id()
        if announce:
            self._delegated(delegation_id, response_id)
        self._delegation_id = delegation_id
        mirror = self._mirrors[engine_response_id] = _Mirror(response_id, delegation_id, self._emit, self.config)
        return mirror

    def _item_added(self, mirror: _Mirror, item: Any) -> None:
        if item.type == "function_call":
            index = mirror.call_index[item.id] = len(mirror.call_index)
            mirror.stream.call_delta(ToolCallDelta(index=index, call_id=item.call_id, name=item.name,
                                                   arguments=item.arguments or ""))
        else:
            mirror.stream.tool_item_added(_mcp_item(item, "in_progress"))

    def _finish(self, mirror: _Mirror, response: Any) -> None:
        del self._mirrors[response.id]
        mirror.stream.finish()
        usage = response.usage
        tokens = responses_usage(usage.input_tokens, usage.output_tokens,
                                 usage.input_token_details.cached_tokens) if usage is not None else None
        status = response.status
        final = {**mirror.snapshot, "status": status, "usage": tokens}
        if status == "incomplete":
            mirror.emit({"type": "response.incomplete", "response": {
                **final, "incomplete_details": {"reason": "max_output_tokens"}}})
        elif status == "failed":
            mirror.emit({"type": "response.failed", "response": {**final, "error": {
                "code": "server_error", "message": "The voice model's response failed."}}})
        else:  # completed, or cancelled by a barge-in
            mirror.emit({"type": "response.completed", "response": final})
        calls = mirror.stream.calls
        self._pending_calls.update(c["call_id"] for c in calls)
        ran_mcp = any(e["item"]["type"] == "mcp_call" for e in mirror.stream.tool_items.values())
        if status == "completed" and not calls and ran_mcp and not self._approvals:
            self.create()  # the MCP results are in: the answer follows
        elif not calls and not mirror.stream.tool_items:
            self._delegation_id = None  # the answer was spoken: the delegation is over

    # ---- the application's commands --------------------------------------------------------------
    def add_item(self, item: dict[str, Any]) -> None:
        """`response.item.create`: a function call's output, an approval, or a message for the voice model."""
        kind = item.get("type", "message")
        if kind == "function_call_output":
            call_id, output = function_call_output(item, self._pending_calls)
            self._pending_calls.discard(call_id)
            self._engine_send("conversation.item.create", item={"type": "function_call_output", "call_id": call_id,
                                                                 "output": output})
        elif kind == "mcp_approval_response":
            request_id = item.get("approval_request_id")
            if request_id not in self._approvals or not isinstance(item.get("approve"), bool):
                raise ProtocolError(f"No MCP approval request '{request_id}' is awaiting an answer (approve: "
                                    "true|false).", code="invalid_value", param="item.approval_request_id")
            self._approvals.discard(request_id)
            self._engine_send("conversation.item.create", item={"type": "mcp_approval_response",
                                                                 "approval_request_id": request_id,
                                                                 "approve": item["approve"]})
        elif kind == "message":
            role, content = message_of(item)
            part = "output_text" if role == "assistant" else "input_text"
            self._engine_send("conversation.item.create", item={
                "type": "message", "role": "system" if role == "developer" else role,
                "content": [{"type": part, "text": content}]})
        else:
            raise ProtocolError(f"Items of type '{kind}' are not supported here: send a function_call_output, an "
                                "mcp_approval_response or a message.", code="unsupported_item", param="item.type")

    def create(self) -> None:
        """`response.create`: the voice model answers (and may call tools again), as the delegation's next
        response."""
        if self._pending_calls:
            missing = ", ".join(sorted(self._pending_calls))
            raise ProtocolError(f"Function calls are still awaiting their output (response.item.create with a "
                                f"function_call_output): {missing}.", code="function_call_output_missing")
        self._follow = True
        self._speak()

    def close(self) -> None:
        self._mirrors.clear()
        self._pending_calls.clear()
