"""A session's MCP tools: remote MCP servers named as `{"type": "mcp", ...}` tools.

As on OpenAI's Realtime API, the server, not the client, talks to them:
- **Listing.** When `session.update` or `response.create` names a server (a `server_label` with a
  `server_url`) that is new or whose definition changed, an `mcp_list_tools` item is added to the
  conversation (`conversation.item.added`, no tools yet) with `mcp_list_tools.in_progress`; the
  tools are listed in the background, then `mcp_list_tools.completed` and `conversation.item.done`
  carry the tools kept by `allowed_tools` — or `mcp_list_tools.failed` and an `error` event that
  says what to check. A later tool list may name the server by its `server_label` alone.
  Every request goes through the server's egress policy (engines/egress.py): a server_url on an
  internal address fails its listing with an `error` that names the policy and `--mcp-allow`.
  A response only offers the tools listed by then.
- **Calls.** The model sees the listed tools as functions. A call it makes becomes an `mcp_call`
  output item, run by the server before `response.done` (see response.py); the client sends
  `response.create` for the answer, as with OpenAI. A tool that `require_approval` covers (the
  default is "always") becomes an `mcp_approval_request` item instead; the client answers with a
  `mcp_approval_response` item, and an approved call then runs at once as an `mcp_call` item of the
  conversation (`response.mcp_call.in_progress` / `.completed` / `.failed`).
- `connector_id` (OpenAI's hosted connectors) cannot be served here: an error says to use an MCP
  server's URL instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from .. import ids
from ..engines.egress import EgressPolicy
from ..engines.mcp_client import ListedTool, McpClient, McpError
from ..protocol import items as wire
from ..protocol import server_events as ev
from ..protocol.errors import ProtocolError
from ..protocol.items import McpApprovalRequestItem, McpApprovalResponseItem, McpCallItem, McpListToolsItem, McpToolInfo
from ..protocol.session import McpTool
from .context import SessionContext

log = logging.getLogger(__name__)
_CALL_ERROR = TypeAdapter(wire.McpError)


def call_error(kind: str, message: str, code: int | None = None) -> Any:
    """An `mcp_call.error` object."""
    return _CALL_ERROR.validate_python(McpError(kind, message, code).as_item_error())


def _names_filter(spec: Any) -> tuple[set[str] | None, bool | None]:
    """`allowed_tools` / `require_approval.{always,never}`: (tool names or None, read_only or None)."""
    if spec is None:
        return None, None
    if isinstance(spec, list):
        return {str(n) for n in spec}, None
    if isinstance(spec, dict):
        names = spec.get("tool_names")
        read_only = spec.get("read_only")
        return ({str(n) for n in names} if isinstance(names, list) else None,
                bool(read_only) if read_only is not None else None)
    return None, None


def _matches(tool: ListedTool, spec: Any) -> bool:
    names, read_only = _names_filter(spec)
    if names is None and read_only is None:
        return False
    read_only_tool = bool((tool.annotations or {}).get("readOnlyHint"))
    return (names is not None and tool.name in names) or (read_only is not None and read_only_tool == read_only)


@dataclass
class McpServer:
    definition: McpTool
    item_id: str
    client: McpClient
    tools: dict[str, ListedTool] = field(default_factory=dict)
    ready: bool = False
    task: asyncio.Task | None = None

    @property
    def label(self) -> str:
        return self.definition.server_label

    def allowed(self, tool: ListedTool) -> bool:
        spec = self.definition.allowed_tools
        return spec is None or _matches(tool, spec)

    def needs_approval(self, name: str) -> bool:
        rule = self.definition.require_approval
        if rule is None or rule == "always":
            return True
        if rule == "never":
            return False
        tool = self.tools.get(name)
        if isinstance(rule, dict) and tool is not None:
            if _matches(tool, rule.get("never")):
                return False
            if _matches(tool, rule.get("always")):
                return True
            return "never" not in rule  # only exceptions listed under "always": the rest runs freely
        return True


def _same_server(a: McpTool, b: McpTool) -> bool:
    keys = ("server_url", "authorization", "headers", "allowed_tools")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


class SessionMcp:
    """The MCP servers of one session (shared by its responses)."""

    def __init__(self, session: SessionContext, egress: EgressPolicy) -> None:
        self.session = session
        self.egress = egress
        self.servers: dict[str, McpServer] = {}
        self.pending_approvals: dict[str, McpApprovalRequestItem] = {}

    # ---- configuration -----------------------------------------------------------------------
    def configure(self, tools: list[Any] | None, *, param: str) -> None:
        """Validate the MCP tools of a tool list and start listing new or changed servers.
        Raises ProtocolError (nothing started) for a definition that cannot be served."""
        mcp = [(i, t) for i, t in enumerate(tools or []) if isinstance(t, McpTool)]
        labels = [t.server_label for _i, t in mcp]
        for index, tool in mcp:
            where = f"{param}.{index}"
            if labels.count(tool.server_label) > 1:
                raise ProtocolError(f"Duplicate server_label '{tool.server_label}' in tools.",
                                    code="invalid_value", param=f"{where}.server_label")
            if tool.connector_id is not None:
                raise ProtocolError(
                    "connector_id is not available on this server (OpenAI's hosted connectors need OpenAI); "
                    "run an MCP server for the service and pass its server_url instead.",
                    code="invalid_value", param=f"{where}.connector_id")
            if tool.tunnel_id is not None:
                raise ProtocolError(
                    "tunnel_id is not available on this server (Secure MCP Tunnels are OpenAI's); give the MCP "
                    "server's server_url instead (see --mcp-allow for servers on internal addresses).",
                    code="invalid_value", param=f"{where}.tunnel_id")
            if tool.defer_loading:
                raise ProtocolError(
                    "defer_loading is not available on this server (it has no tool search): the tools of every MCP "
                    "server are listed when it is configured. Omit defer_loading or set it to false.",
                    code="invalid_value", param=f"{where}.defer_loading")
            if tool.allowed_callers is not None and "direct" not in tool.allowed_callers:
                raise ProtocolError(
                    "This server's model calls MCP tools directly only; allowed_callers must include 'direct' "
                    "(or be omitted).", code="invalid_value", param=f"{where}.allowed_callers")
            if tool.server_url is None and tool.server_label not in self.servers:
                raise ProtocolError(f"Missing required parameter: '{where}.server_url' (no earlier definition of "
                                    f"server_label '{tool.server_label}' in this session).",
                                    code="missing_required_parameter", param=f"{where}.server_url")
            if tool.server_url is not None and not tool.server_url.startswith(("http://", "https://")):
                raise ProtocolError(f"Invalid '{where}.server_url': expected an http(s) URL.",
                                    code="invalid_value", param=f"{where}.server_url")
            if tool.authorization and any(k.lower() == "authorization" for k in (tool.headers or {})):
                raise ProtocolError("Pass the token in 'authorization' or in headers.Authorization, not both.",
                                    code="invalid_value", param=f"{where}.authorization")
        for _index, tool in mcp:
            known = self.servers.get(tool.server_label)
            failed = known is not None and not known.ready and known.task is not None and known.task.done()
            if tool.server_url is None or (known is not None and _same_server(known.definition, tool) and not failed):
                if known is not None and tool.require_approval is not None:
                    known.definition = known.definition.model_copy(update={"require_approval": tool.require_approval})
                continue
            self._list(tool, known)

    def _list(self, tool: McpTool, replaced: McpServer | None) -> None:
        if replaced is not None:
            self._close_server(replaced)
        headers = dict(tool.headers or {})
        if tool.authorization:
            headers["Authorization"] = f"Bearer {tool.authorization}"
        server = McpServer(tool, ids.item_id(), McpClient(tool.server_url or "", headers=headers,
                                                                 egress=self.egress))
        self.servers[tool.server_label] = server
        item = McpListToolsItem(id=server.item_id, server_label=server.label, tools=[])
        self._item_added(item)
        self.session.emit(ev.McpListToolsInProgressEvent(item_id=item.id))
        server.task = self.session.spawn(self._list_tools(server, item))

    async def _list_tools(self, server: McpServer, item: McpListToolsItem) -> None:
        session = self.session
        try:
            listed = await server.client.list_tools()
        except McpError as exc:
            log.warning("MCP server %s (%s): listing its tools failed: %s", server.label, server.definition.server_url,
                        exc.message)
            session.emit(ev.McpListToolsFailedEvent(item_id=item.id))
            self._item_done(item)
            if exc.refused:
                session.send_error(ProtocolError(
                    f"Could not list the tools of MCP server '{server.label}': {exc.message}. Its tools are not "
                    "offered to the model.", code="mcp_list_tools_failed"))
                return
            session.send_error(ProtocolError(
                f"Could not list the tools of MCP server '{server.label}': {exc.message}. Check its server_url, "
                "authorization and headers; its tools are not offered to the model.",
                code="mcp_list_tools_failed", type="server_error"))
            return
        server.tools = {t.name: t for t in listed if server.allowed(t)}
        server.ready = True
        item.tools = [McpToolInfo(**t.as_info()) for t in server.tools.values()]
        log.info("MCP server %s: %d tools (%s)", server.label, len(item.tools), ", ".join(server.tools))
        session.emit(ev.McpListToolsCompletedEvent(item_id=item.id))
        self._item_done(item)

    def _item_added(self, item: Any) -> None:
        """A server-made item joins the conversation (its `done` follows when it is complete)."""
        self.session.conversation.add(item, complete=False)

    def _item_done(self, item: Any) -> None:
        self.session.conversation.complete(item)

    # ---- what a response offers --------------------------------------------------------------
    def offered(self, tools: list[Any] | None) -> dict[str, McpServer]:
        """Tool name -> server, for the MCP servers in `tools` whose tools are listed."""
        out: dict[str, McpServer] = {}
        for tool in tools or []:
            server = self.servers.get(tool.server_label) if isinstance(tool, McpTool) else None
            if server is not None and server.ready:
                for name in server.tools:
                    out.setdefault(name, server)
        return out

    @staticmethod
    def chat_tools(offered: dict[str, McpServer]) -> list[dict[str, Any]]:
        return [{"type": "function", "function": {
            "name": name, "description": server.tools[name].description or "",
            "parameters": server.tools[name].input_schema}} for name, server in offered.items()]

    # ---- running calls -----------------------------------------------------------------------
    async def run(self, server: McpServer, item: McpCallItem) -> None:
        """Call the tool; fills `item.output` or `item.error`."""
        try:
            arguments = json.loads(item.arguments) if item.arguments.strip() else {}
        except ValueError as exc:
            arguments = exc
        if not isinstance(arguments, dict):
            item.error = call_error("tool_execution_error", f"the arguments are not a JSON object: {item.arguments!r}")
            return
        try:
            item.output = await server.client.call_tool(item.name, arguments)
        except McpError as exc:
            log.info("MCP call %s.%s failed: %s", server.label, item.name, exc.message)
            item.error = call_error(exc.kind, exc.message, exc.code)

    def approval_requested(self, item: McpApprovalRequestItem) -> None:
        self.pending_approvals[item.id or ""] = item

    def check_approval(self, item: McpApprovalResponseItem) -> None:
        if item.approval_request_id not in self.pending_approvals:
            raise ProtocolError(f"No pending MCP approval request with id '{item.approval_request_id}'.",
                                code="invalid_value", param="item.approval_request_id")

    def approval_answered(self, item: McpApprovalResponseItem) -> None:
        """After the client's mcp_approval_response was added: run the approved call."""
        request = self.pending_approvals.pop(item.approval_request_id, None)
        if request is None or not item.approve:
            return
        server = self.servers.get(request.server_label)
        call = McpCallItem(id=ids.item_id(), server_label=request.server_label, name=request.name,
                           arguments=request.arguments, approval_request_id=request.id)
        self._item_added(call)
        self.session.spawn(self._run_approved(server, call))

    async def _run_approved(self, server: McpServer | None, call: McpCallItem) -> None:
        session = self.session
        session.emit(ev.ResponseMcpCallInProgressEvent(item_id=call.id, output_index=0))
        if server is None:
            call.error = call_error("tool_execution_error", f"MCP server '{call.server_label}' is no longer configured")
        else:
            await self.run(server, call)
        done = ev.ResponseMcpCallFailedEvent if call.error is not None else ev.ResponseMcpCallCompletedEvent
        session.emit(done(item_id=call.id, output_index=0))
        self._item_done(call)

    # ---- end -------------------------------------------------------------------------------
    def _close_server(self, server: McpServer) -> None:
        if server.task is not None and not server.task.done():
            server.task.cancel()
        try:
            self.session.runtime.spawn(server.client.close(), name=f"mcp-close-{server.label}")
        except RuntimeError:  # no loop any more (interpreter shutdown): the server expires the session itself
            pass

    def close(self) -> None:
        for server in self.servers.values():
            self._close_server(server)
        self.servers.clear()
