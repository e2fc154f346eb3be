"""A client for remote MCP servers (Model Context Protocol, Streamable HTTP transport).

Realtime sessions may name MCP servers as tools (`{"type": "mcp", "server_url": ...}`); the
server, not the client, lists their tools and runs the calls the model makes. This module speaks
the protocol: JSON-RPC 2.0 messages POSTed to the server URL, answered either as one JSON body or
as a `text/event-stream` whose events carry JSON-RPC messages (the answer is the one with our
request id). The server may hand out an `Mcp-Session-Id` at `initialize`; it is sent back on
every later request and the session is closed with a DELETE.

Servers that only speak the older HTTP+SSE transport (protocol 2024-11-05: a long-lived GET event
stream whose first `endpoint` event names the URL to POST messages to; answers come back on the
stream) are detected as the specification suggests — the initialize POST fails with 400, 404 or
405 — and served over that transport instead (`_LegacySse`).

Every connection, redirects and the HTTP+SSE message endpoint included, goes through the
`EgressPolicy` the client is given (egress.py; the default refuses internal addresses).

Errors are `McpError` with the shape OpenAI reports on `mcp_call.error`: `protocol_error`
(a JSON-RPC error or a malformed answer, with its code), `http_error` (a non-2xx status, an
unreachable server or one the egress policy refuses: `refused`) and, from `call_tool`,
`tool_execution_error` (the tool ran and reported `isError`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from itertools import count
from typing import Any
from urllib.parse import urljoin

import httpx

from .egress import EgressPolicy, EgressRefused

log = logging.getLogger(__name__)

PROTOCOL_VERSION = "2025-06-18"
LEGACY_PROTOCOL_VERSION = "2024-11-05"
CLIENT_INFO = {"name": "openrealtime", "version": "0.1.0"}
MAX_TOOL_PAGES = 20


class McpError(Exception):
    """kind: "protocol_error" | "http_error" | "tool_execution_error"; code: JSON-RPC or HTTP code."""

    def __init__(self, kind: str, message: str, code: int | None = None, *, refused: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.code = code
        self.refused = refused  # the egress policy refused the server's address

    def as_item_error(self) -> dict[str, Any]:
        """The `error` of an `mcp_call` item."""
        if self.kind == "tool_execution_error":
            return {"type": "tool_execution_error", "message": self.message}
        return {"type": self.kind, "code": self.code if self.code is not None else 0, "message": self.message}


@dataclass
class ListedTool:
    name: str
    input_schema: dict[str, Any]
    description: str | None = None
    annotations: dict[str, Any] | None = None

    def as_info(self) -> dict[str, Any]:
        """The tool as listed on an `mcp_list_tools` item."""
        info: dict[str, Any] = {"name": self.name, "input_schema": self.input_schema}
        if self.description is not None:
            info["description"] = self.description
        if self.annotations is not None:
            info["annotations"] = self.annotations
        return info


@dataclass
class McpClient:
    """One MCP server. `headers` go on every request (e.g. Authorization); `egress` decides which
    addresses may be reached (None: the default policy, public addresses only)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 30.0
    egress: EgressPolicy | None = None
    _session_id: str | None = None
    _initialized: bool = False
    _ids: Any = field(default_factory=lambda: count(1))
    _http: httpx.AsyncClient | None = None
    _init_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _legacy: "_LegacySse | None" = None

    async def __aenter__(self) -> "McpClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            policy = self.egress if self.egress is not None else EgressPolicy()
            # the policy's transport checks every connection, each redirect hop included
            self._http = httpx.AsyncClient(transport=policy.transport(), follow_redirects=True,
                                           timeout=httpx.Timeout(self.timeout_s, connect=10.0))
        return self._http

    def _request_headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
                   **self.headers}
        if self._initialized:
            headers["MCP-Protocol-Version"] = PROTOCOL_VERSION
        if self._session_id:
            headers["Mcp-Session-Id"] = self._session_id
        return headers

    async def _send(self, message: dict[str, Any]) -> None:
        """A notification: the server answers 202 with no body."""
        if self._legacy is not None:
            await self._legacy.post(message)
            return
        try:
            response = await self._client().post(self.url, json=message, headers=self._request_headers())
        except _UNREACHABLE as exc:
            raise _unreachable(self.url, exc) from exc
        _check_status(response, self.url, response.text)

    async def _rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        request_id = next(self._ids)
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        if self._legacy is not None:
            answer = await self._legacy.exchange(message, self.timeout_s)
        else:
            answer = await self._exchange(message, method)
        if "error" in answer:
            error = answer["error"] if isinstance(answer["error"], dict) else {}
            raise McpError("protocol_error", str(error.get("message") or "JSON-RPC error"),
                           code=error.get("code") if isinstance(error.get("code"), int) else None)
        result = answer.get("result")
        if not isinstance(result, dict):
            raise McpError("protocol_error", f"{method}: the MCP server's answer has no result object", code=-32603)
        return result

    async def _exchange(self, message: dict[str, Any], method: str) -> dict[str, Any]:
        """Streamable HTTP: POST a request and read its answer — a JSON body, or the event stream up to
        the event that carries it (a server may keep the stream open for notifications after it)."""
        request_id = message["id"]
        try:
            # the whole exchange, not each read: a server that keeps its stream alive without ever
            # answering fails like a silent one
            async with asyncio.timeout(self.timeout_s):
                async with self._client().stream("POST", self.url, json=message,
                                                 headers=self._request_headers()) as response:
                    if response.status_code >= 400:
                        _check_status(response, self.url, (await response.aread()).decode("utf-8", "replace"))
                    if method == "initialize" and response.headers.get("mcp-session-id"):
                        self._session_id = response.headers["mcp-session-id"]
                    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
                    if kind == "text/event-stream":
                        answer = await _answer_in_stream(response, request_id)
                    else:
                        answer = _answer_in_body(await response.aread(), request_id)
        except TimeoutError:
            raise McpError("http_error", f"the MCP server at {self.url} sent no answer to {method} within "
                                         f"{self.timeout_s:g} s; check that it is up and not overloaded") from None
        except _UNREACHABLE as exc:
            raise _unreachable(self.url, exc) from exc
        return answer

    async def _ensure_initialized(self) -> None:
        async with self._init_lock:
            if self._initialized:
                return
            hello = {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO}
            try:
                await self._rpc("initialize", hello)
            except McpError as exc:
                if self._legacy is not None or exc.kind != "http_error" or exc.code not in (400, 404, 405):
                    raise
                log.info("MCP server %s does not take Streamable HTTP (HTTP %s); trying the HTTP+SSE transport",
                         self.url, exc.code)
                self._legacy = await _LegacySse.open(self._client(), self.url, self.headers, self.timeout_s)
                await self._rpc("initialize", {**hello, "protocolVersion": LEGACY_PROTOCOL_VERSION})
            self._initialized = True
            await self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def _request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """A request in an initialized session. A server that no longer knows our session (it
        restarted: HTTP 404 for a session id) gets a new one, and the request once more."""
        if self._legacy is not None and self._legacy.closed:  # its event stream ended: start over
            self._legacy, self._initialized = None, False
        await self._ensure_initialized()
        try:
            return await self._rpc(method, params)
        except McpError as exc:
            if not (exc.kind == "http_error" and exc.code == 404 and self._session_id):
                raise
        log.info("MCP server %s forgot our session; starting a new one", self.url)
        self._session_id, self._initialized = None, False
        await self._ensure_initialized()
        return await self._rpc(method, params)

    async def list_tools(self) -> list[ListedTool]:
        tools: list[ListedTool] = []
        cursor: str | None = None
        for _page in range(MAX_TOOL_PAGES):
            result = await self._request("tools/list", {"cursor": cursor} if cursor else {})
            for raw in result.get("tools") or []:
                if isinstance(raw, dict) and isinstance(raw.get("name"), str):
                    schema = raw.get("inputSchema")
                    tools.append(ListedTool(name=raw["name"],
                                         input_schema=schema if isinstance(schema, dict) else {"type": "object"},
                                         description=raw.get("description"), annotations=raw.get("annotations")))
            cursor = result.get("nextCursor")
            if not cursor:
                break
        return tools

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> str:
        """Run a tool; its text content (joined) or, without text, its structured content as JSON."""
        result = await self._request("tools/call", {"name": name, "arguments": arguments})
        output = _content_text(result)
        if result.get("isError"):
            raise McpError("tool_execution_error", output or f"the tool {name} failed")
        return output

    async def close(self) -> None:
        legacy, self._legacy = self._legacy, None
        if legacy is not None:
            legacy.close()
        http, self._http = self._http, None
        if http is None:
            return
        if self._session_id:
            try:
                await http.delete(self.url, headers=self._request_headers())
            except _UNREACHABLE:
                pass  # the server may not support closing sessions; it expires them itself
        await http.aclose()


class _LegacySse:
    """The HTTP+SSE transport: a GET event stream carries the answers of the messages POSTed to the
    URL its `endpoint` event names."""

    def __init__(self, http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> None:
        self.http = http
        self.url = url
        self.headers = headers
        self.endpoint = ""
        self.pending: dict[Any, asyncio.Future] = {}
        self.closed = False
        self.task: asyncio.Task | None = None

    @classmethod
    async def open(cls, http: httpx.AsyncClient, url: str, headers: dict[str, str], timeout_s: float) -> "_LegacySse":
        self = cls(http, url, headers)
        ready: asyncio.Future = asyncio.get_running_loop().create_future()
        self.task = asyncio.create_task(self._read(ready))
        try:
            self.endpoint = await asyncio.wait_for(asyncio.shield(ready), timeout_s)
        except asyncio.TimeoutError:
            self.close()
            raise McpError("protocol_error", f"the MCP server at {url} sent no endpoint event", code=-32603) from None
        except BaseException:
            self.close()
            raise
        return self

    async def _read(self, ready: asyncio.Future) -> None:
        failure: McpError | None = None
        try:
            # no read timeout: the stream is idle between answers
            async with self.http.stream("GET", self.url, headers={**self.headers, "Accept": "text/event-stream"},
                                        timeout=httpx.Timeout(None, connect=10.0)) as response:
                if response.status_code >= 400:
                    _check_status(response, self.url, (await response.aread()).decode("utf-8", "replace"))
                event, data = "message", []
                async for line in response.aiter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].lstrip())
                    elif not line:
                        if data:
                            self._on_event(event, "\n".join(data), ready)
                        event, data = "message", []
            failure = McpError("http_error", f"the MCP server at {self.url} closed its event stream")
        except McpError as exc:
            failure = exc
        except _UNREACHABLE as exc:
            failure = _unreachable(self.url, exc)
        finally:
            self.closed = True
            failure = failure or McpError("http_error", "the MCP connection was closed")
            for future in [ready, *self.pending.values()]:
                if not future.done():
                    future.set_exception(failure)
            self.pending.clear()

    def _on_event(self, event: str, data: str, ready: asyncio.Future) -> None:
        if event == "endpoint":
            if not ready.done():
                ready.set_result(urljoin(self.url, data.strip()))
            return
        try:
            message = json.loads(data)
        except ValueError:
            log.warning("MCP server %s sent a malformed event; ignored", self.url)
            return
        future = self.pending.pop(message.get("id"), None) if isinstance(message, dict) else None
        if future is not None and not future.done() and ("result" in message or "error" in message):
            future.set_result(message)

    async def post(self, message: dict[str, Any]) -> None:
        try:
            response = await self.http.post(self.endpoint, json=message,
                                            headers={**self.headers, "Content-Type": "application/json"})
        except _UNREACHABLE as exc:
            raise _unreachable(self.endpoint, exc) from exc
        _check_status(response, self.endpoint, response.text)

    async def exchange(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self.pending[message["id"]] = future
        try:
            await self.post(message)
            return await asyncio.wait_for(future, timeout_s)
        except asyncio.TimeoutError:
            raise McpError("http_error", f"the MCP server at {self.url} did not answer within {timeout_s:.0f} s",
                           code=504) from None
        finally:
            self.pending.pop(message["id"], None)

    def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()


# a request that never got an answer: a transport failure, a URL httpx cannot use, a refused address
_UNREACHABLE = (httpx.HTTPError, httpx.InvalidURL, EgressRefused)


def _unreachable(url: str, exc: Exception) -> McpError:
    if isinstance(exc, EgressRefused):
        return McpError("http_error", f"the MCP server URL {url} is refused by this server's egress policy: "
                        f"{exc.message}", refused=True)
    return McpError("http_error", f"could not reach the MCP server at {url}: {exc}")


def _check_status(response: httpx.Response, url: str, body: str) -> None:
    if response.status_code >= 400:
        detail = body[:300].strip()
        raise McpError("http_error", f"the MCP server at {url} answered HTTP {response.status_code}"
                       + (f": {detail}" if detail else ""), code=response.status_code)


def _is_answer(message: Any, request_id: int) -> bool:
    return isinstance(message, dict) and message.get("id") == request_id and ("result" in message or "error" in message)


def _answer_in_body(body: bytes, request_id: int) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError as exc:
        raise McpError("protocol_error", f"the MCP server sent a malformed answer: {exc}", code=-32700) from exc
    for message in parsed if isinstance(parsed, list) else [parsed]:
        if _is_answer(message, request_id):
            return message
    raise McpError("protocol_error", "the MCP server did not answer the request", code=-32603)


async def _answer_in_stream(response: httpx.Response, request_id: int) -> dict[str, Any]:
    data: list[str] = []
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif not line and data:
            try:
                message = json.loads("\n".join(data))
            except ValueError as exc:
                raise McpError("protocol_error", f"the MCP server sent a malformed event: {exc}", code=-32700) from exc
            data = []
            if _is_answer(message, request_id):
                return message
    raise McpError("protocol_error", "the MCP server's event stream ended without an answer", code=-32603)


def _content_text(result: dict[str, Any]) -> str:
    texts = [part.get("text", "") for part in result.get("content") or []
             if isinstance(part, dict) and part.get("type") == "text"]
    if texts:
        return "\n".join(texts)
    structured = result.get("structuredContent")
    if structured is not None:
        return json.dumps(structured, ensure_ascii=False)
    return ""
