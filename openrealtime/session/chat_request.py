"""What a response asks the language model: a pure function of the session's configuration, the
response's parameters, the items in its context and their transcripts.

Nothing here reads the session: the caller passes the items, the transcripts known at the moment
the request is built, and the context window that keeps the truncation point between turns
(conversation.py's `ContextWindow`, the one piece of state a request updates).
"""

from __future__ import annotations

from typing import Any

from ..engines.base import ChatRequest
from ..protocol.items import AnyItem, InputImageContent, MessageItem
from ..protocol.responses import ResponseCreateParams
from ..protocol.session import FunctionTool, RealtimeSessionConfig, RetentionRatioTruncation
from .conversation import AUTO_RETENTION, ContextWindow, message_chars, to_chat_messages
from .mcp_tools import McpServer, SessionMcp

CONTEXT_CHARS = 12_000  # the context budget: recent conversation that fits the local model
# truncation.token_limits.post_instructions is in tokens; the budget is measured in characters
# (model-independent, no tokenizer call per item): English text runs ≈ 4 characters per token.
CHARS_PER_TOKEN = 4
MAX_TOKENS_WHEN_INF = 1024
NO_VISION_NOTE = (" (Images the user shared are not visible to you: no vision model is configured on this "
                  "server.)")


def build_chat_request(config: RealtimeSessionConfig, params: ResponseCreateParams, context: list[AnyItem], *,
                       transcripts: dict[str, str], window: ContextWindow,
                       mcp_offered: dict[str, McpServer] | None = None, with_images: bool,
                       session_key: str | None) -> ChatRequest:
    """The chat request for a response over `context` (the conversation, or the response's own input).

    `transcripts`: item id -> the text of its input audio as known now ("" while unknown).
    `window`: the conversation's context window (a fresh one for a response with its own input).
    `mcp_offered`: MCP tool name -> its server, for the MCP tools this response may call."""
    instructions = params.instructions if params.instructions is not None else config.instructions
    max_tokens = params.max_output_tokens if params.max_output_tokens is not None else config.max_output_tokens
    tools, choice = _tools(config, params, mcp_offered or {})
    budget, retention = _context_budget(config)

    def size_of(item: AnyItem) -> int:
        return sum(message_chars(m) for m in to_chat_messages([item], transcripts, with_images=with_images)[0])

    kept = window.select(context, size_of, budget, retention)
    messages, _ = to_chat_messages(kept, transcripts, with_images=with_images)
    notes = "" if with_images or not _has_images(context) else NO_VISION_NOTE
    system = {"role": "system", "content": instructions + notes}
    reasoning = params.reasoning if params.reasoning is not None else config.reasoning
    parallel = params.parallel_tool_calls if params.parallel_tool_calls is not None else config.parallel_tool_calls
    return ChatRequest(messages=[system, *messages], tools=tools, tool_choice=choice,
                       max_tokens=MAX_TOKENS_WHEN_INF if max_tokens == "inf" else int(max_tokens),
                       session_key=session_key, reasoning_effort=reasoning.effort if reasoning else None,
                       parallel_tool_calls=parallel if tools else None)


def _tools(config: RealtimeSessionConfig, params: ResponseCreateParams,
           mcp_offered: dict[str, McpServer]) -> tuple[list[dict[str, Any]], Any]:
    """The chat-completions tools and tool_choice for the response's tools and choice."""
    tools = params.tools if params.tools is not None else config.tools
    tool_choice = params.tool_choice if params.tool_choice is not None else config.tool_choice
    chat_tools = [{"type": "function", "function": {"name": t.name, "description": t.description or "",
                                                    "parameters": t.parameters or {"type": "object",
                                                                                   "properties": {}}}}
                  for t in tools if isinstance(t, FunctionTool)]
    offered = mcp_offered
    kind = getattr(tool_choice, "type", None)
    if kind == "mcp":  # one of that server's tools: only they are offered
        chat_tools = []
        offered = {name: server for name, server in offered.items() if server.label == tool_choice.server_label}
    chat_tools += SessionMcp.chat_tools(offered)
    if isinstance(tool_choice, str):
        choice: Any = tool_choice
    elif kind == "function" or (kind == "mcp" and tool_choice.name):
        choice = {"type": "function", "function": {"name": tool_choice.name}}
    else:
        choice = "required" if kind == "mcp" else "auto"
    return chat_tools, choice


def _context_budget(config: RealtimeSessionConfig) -> tuple[int, float | None]:
    """(characters of conversation the model is given, retention ratio; None: truncation disabled)."""
    truncation = config.truncation
    retention = None if truncation == "disabled" else \
        truncation.retention_ratio if isinstance(truncation, RetentionRatioTruncation) else AUTO_RETENTION
    limits = truncation.token_limits if isinstance(truncation, RetentionRatioTruncation) else None
    budget = CONTEXT_CHARS if limits is None or limits.post_instructions is None else \
        min(CONTEXT_CHARS, limits.post_instructions * CHARS_PER_TOKEN)
    return budget, retention


def _has_images(context: list[AnyItem]) -> bool:
    return any(isinstance(p, InputImageContent) for i in context if isinstance(i, MessageItem) for p in i.content)
