"""`LanguageModel` over `POST {base}/chat/completions` with `stream: true` (server-sent events).

Works with any OpenAI-compatible server: vLLM, Ollama, llama.cpp's `llama-server`,
llama-cpp-python's `llama_cpp.server`, LM Studio, OpenAI itself.

Request: `messages` (images pass through as `image_url` parts when `supports_images`, else they
are replaced by their text), `tools` + `tool_choice` passed through untouched (omitted when there
are no tools: OpenAI rejects a `tool_choice` without tools), with the session's `parallel_tool_calls`
when set, the session's `reasoning.effort` as `reasoning_effort` when set, `temperature`, the token
limit, and `stream_options: {"include_usage": true}`.

Token limit: one of `max_tokens` / `max_completion_tokens`, never both — OpenAI rejects the pair
("Setting 'max_tokens' and 'max_completion_tokens' at the same time is not supported") and rejects
`max_tokens` on its reasoning models; llama-cpp-python's server only knows `max_tokens` (it ignores
other fields), llama.cpp, Ollama and vLLM accept `max_tokens`. So `max_tokens_param="auto"` sends
`max_completion_tokens` to api.openai.com / Azure OpenAI and `max_tokens` elsewhere. Whatever the
setting, a 400/422 that names a parameter we sent (`max_tokens` / `max_completion_tokens` swapped,
`stream_options`, `temperature`, `reasoning_effort` or `parallel_tool_calls` dropped) is retried once with it adapted, and the adaptation is
remembered for the next requests.

Response: `delta.content` → `TextDelta`; `delta.tool_calls[]` (index, id, function.name,
function.arguments fragments) → `ToolCallDelta` (the name and id are reported once per call even
when a server repeats them on every chunk, as llama-cpp-python does; a missing id is generated);
`finish_reason` → `Finished` with the usage of the final chunk (`prompt_tokens`,
`completion_tokens`, `prompt_tokens_details.cached_tokens`). Servers that send no usage get an
estimate (prompt ≈ characters / 4; completion ≈ streamed chunks, at least characters / 4).
`delta.reasoning_content` (thinking models) is not spoken and is ignored.

Tool calls written as text: when tools are offered and a server does not parse tool calls itself
(vLLM without `--enable-auto-tool-choice`, llama-cpp-python with the GGUF's own chat template —
which also strips the `<tool_call>` special tokens), the model's Hermes/Qwen-style markup or bare
`{"name": ..., "arguments": ...}` JSON arrives as content. `parse_text_tool_calls=True` (default)
runs the content through the same parser as the local engine, so such calls still become
`ToolCallDelta` and never reach speech; a reply that starts with `{` is held back until it ends.

Cancel: see `http.BackgroundStream` — the worker returns within ~20 ms and the connection is
shut down so the server stops generating. A server that answers with one JSON body despite
`stream: true` is accepted too.
"""

from __future__ import annotations

import codecs
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from ... import ids
from ..base import ChatRequest, Finished, LlmEvent, TextDelta, ToolCallDelta
from ..local.toolcalls import ToolCallStreamParser, tool_names
from .http import BackgroundStream, RemoteEndpoint, RemoteEngineError, RemoteTimeout, server_message

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 1024
_ADAPTABLE = ("max_completion_tokens", "max_tokens", "stream_options", "temperature", "reasoning_effort",
              "parallel_tool_calls")
_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls",
           "content_filter": "stop", "eos": "stop"}


def _is_openai_host(host: str) -> bool:
    return host == "api.openai.com" or host.endswith(".openai.azure.com") or host.endswith(".openai.com")


def _text_only(content: Any) -> Any:
    """Message content without image parts (for servers without vision)."""
    if not isinstance(content, list):
        return content
    texts = [str(p.get("text", "")) for p in content
             if isinstance(p, dict) and p.get("type") in ("text", "input_text", "output_text")]
    return "\n".join(t for t in texts if t)


def _estimate_tokens(text: str) -> int:
    return (len(text) + 3) // 4


class SseDecoder:
    """Bytes → the `data` payloads of server-sent events (comments and other fields ignored)."""

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        self._buf += self._utf8.decode(chunk)
        return self._lines(final=False)

    def finish(self) -> list[str]:
        self._buf += self._utf8.decode(b"", final=True)
        out = self._lines(final=True)
        if self._data:
            out.append("\n".join(self._data))
            self._data = []
        return out

    def _lines(self, *, final: bool) -> list[str]:
        out: list[str] = []
        held = ""
        if not final and self._buf.endswith("\r"):  # maybe the first half of a CRLF
            self._buf, held = self._buf[:-1], "\r"
        lines = self._buf.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self._buf = ("" if final else lines.pop()) + held
        for line in lines:
            if not line:
                if self._data:
                    out.append("\n".join(self._data))
                    self._data = []
            elif line.startswith("data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(" ") else value)
            # ":" comments (keep-alive pings), "event:", "id:", "retry:" are ignored
        return out


@dataclass
class _Call:
    index: int  # ours: 0, 1, ... in the order calls appear
    call_id: str | None = None
    name: str | None = None
    pending: str = ""  # argument fragments that arrived before the name
    announced: bool = False


@dataclass
class _Turn:
    """State of one streamed completion."""

    parser: ToolCallStreamParser | None
    calls: dict[int, _Call] = field(default_factory=dict)  # by the server's index
    n_calls: int = 0
    reason: str | None = None
    usage: dict[str, Any] | None = None
    chunks: int = 0  # content / argument chunks (for the usage estimate)
    chars: int = 0
    first_token_at: float | None = None
    done: bool = False

    def new_index(self) -> int:
        self.n_calls += 1
        return self.n_calls - 1


class OpenAICompatLLM:
    """`LanguageModel` client of an OpenAI-compatible `/chat/completions` endpoint."""

    def __init__(
        self,
        endpoint: RemoteEndpoint,
        *,
        supports_images: bool = True,
        max_tokens_param: str = "auto",
        parse_text_tool_calls: bool = True,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        extra_body: dict[str, Any] | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        if max_tokens_param not in ("auto", "max_tokens", "max_completion_tokens"):
            raise ValueError("max_tokens_param must be 'auto', 'max_tokens' or 'max_completion_tokens'")
        self.endpoint = endpoint
        self.model = endpoint.model or "default"
        self.supports_images = supports_images
        self.parse_text_tool_calls = parse_text_tool_calls
        self.default_max_tokens = default_max_tokens
        self.extra_body = dict(extra_body or {})
        if max_tokens_param == "auto":
            max_tokens_param = "max_completion_tokens" if _is_openai_host(endpoint.host) else "max_tokens"
        self.max_tokens_param = max_tokens_param
        self.dropped_params: set[str] = set()  # learnt from the server's 400s
        self.max_concurrency = 8  # a model server batches; the session engine may run this many at once
        self._client = client or endpoint.client()
        self._own_client = client is None
        self._images_warned = False

    def describe(self) -> str:
        return f"OpenAI-compatible chat {self.model} at {self.endpoint.base_url}"

    # -- request ------------------------------------------------------------------------------
    def _messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        images = 0
        for msg in messages:
            msg = dict(msg)
            if msg.get("role") == "developer":
                msg["role"] = "system"
            content = msg.get("content")
            if isinstance(content, list) and not self.supports_images:
                images += sum(1 for p in content if isinstance(p, dict) and p.get("type") in ("image_url", "input_image"))
                msg["content"] = _text_only(content)
            out.append(msg)
        if images and not self._images_warned:
            self._images_warned = True
            log.warning("%s: supports_images is off; %d image(s) dropped", self.describe(), images)
        return out

    def build_body(self, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": self._messages(request.messages), "stream": True}
        if "temperature" not in self.dropped_params and request.temperature is not None:
            body["temperature"] = float(request.temperature)
        body[self.max_tokens_param] = int(request.max_tokens or self.default_max_tokens)
        if "stream_options" not in self.dropped_params:
            body["stream_options"] = {"include_usage": True}
        if request.tools:
            body["tools"] = request.tools
            body["tool_choice"] = request.tool_choice if request.tool_choice is not None else "auto"
            if request.parallel_tool_calls is not None and "parallel_tool_calls" not in self.dropped_params:
                body["parallel_tool_calls"] = request.parallel_tool_calls
        # the session's reasoning.effort, for a reasoning model (a server that refuses it: dropped, see _adapt)
        if request.reasoning_effort is not None and "reasoning_effort" not in self.dropped_params:
            body["reasoning_effort"] = request.reasoning_effort
        body.update(self.extra_body)
        return body

    def _adapt(self, status: int | None, error_body: bytes, body: dict[str, Any]) -> bool:
        """After a 400/422: adapt the parameter the server complained about; False if none applies."""
        if status not in (400, 422):
            return False
        message, param = server_message(error_body, limit=2000)
        lowered = message.lower()
        sent = [p for p in _ADAPTABLE if p in body]
        named = [p for p in sent if p == param] or [p for p in sent if p in lowered]
        if not named:
            return False
        culprit = named[0]
        if culprit in ("max_tokens", "max_completion_tokens"):
            other = "max_completion_tokens" if culprit == "max_tokens" else "max_tokens"
            if other in self.dropped_params:
                return False
            self.dropped_params.add(culprit)
            self.max_tokens_param = other
        else:
            self.dropped_params.add(culprit)
        log.warning("%s rejected %r (%s); retrying without it", self.endpoint.label, culprit, message[:200])
        return True

    # -- LanguageModel ------------------------------------------------------------------------
    def stream_chat(self, request: ChatRequest, cancel: threading.Event | None = None) -> Iterator[LlmEvent]:
        cancel = cancel or threading.Event()
        if cancel.is_set():
            yield Finished(reason="cancelled")
            return
        started = time.monotonic()
        names = tool_names(request.tools or []) if request.tool_choice != "none" else []
        turn = _Turn(parser=ToolCallStreamParser(tools_offered=names, new_call_id=ids.call_tool_id)
                     if self.parse_text_tool_calls and names else None)
        body: dict[str, Any] = {}
        for _attempt in range(len(_ADAPTABLE) + 1):
            body = self.build_body(request)
            stream = BackgroundStream(self._client, self.endpoint, "POST", "chat/completions", cancel,
                                      json=body, headers={"Accept": "text/event-stream"})
            try:
                try:
                    response = stream.open()
                except RemoteEngineError:
                    if self._adapt(stream.status, stream.error_body, body):
                        continue
                    raise
                if response is None:
                    break  # cancelled before the server answered
                if "json" in response.headers.get("content-type", "") and "event-stream" not in response.headers.get("content-type", ""):
                    raw = b"".join(stream.chunks())
                    if not cancel.is_set():
                        yield from self._whole_response(raw, turn)
                    break
                decoder = SseDecoder()
                for chunk in stream.chunks():
                    for payload in decoder.feed(chunk):
                        yield from self._on_payload(payload, turn)
                    if turn.done:
                        break
                    self._check_first_token(turn, started)
                else:
                    if not cancel.is_set():
                        for payload in decoder.finish():
                            yield from self._on_payload(payload, turn)
                break
            finally:
                stream.close()
        else:
            raise RemoteEngineError(f"{self.endpoint.label} kept rejecting the request's parameters")
        if cancel.is_set() and turn.reason is None and not turn.done:
            yield self._finished(turn, body, "cancelled")
            return
        if turn.reason is None and not turn.done:
            raise RemoteEngineError(f"{self.endpoint.label}: the stream ended without a finish_reason or [DONE]")
        yield from self._flush_parser(turn)
        reason = turn.reason or "stop"
        if reason == "stop" and turn.n_calls:
            reason = "tool_calls"
        finished = self._finished(turn, body, reason)
        elapsed = time.monotonic() - started
        ttft = (turn.first_token_at - started) if turn.first_token_at else elapsed
        log.info("llm %s: %d prompt tokens (%d cached), %d generated%s, first token %.3f s, total %.3f s, %s",
                 self.model, finished.input_tokens, finished.cached_tokens, finished.output_tokens,
                 "" if turn.usage else " (estimated)", ttft, elapsed, reason)
        yield finished

    def _check_first_token(self, turn: _Turn, started: float) -> None:
        """A server that keeps its stream alive (comments, empty deltas) but writes no token fails the
        response after the first-token timeout, as a silent one does (http.BackgroundStream)."""
        limit = self.endpoint.first_token_timeout_s
        if turn.first_token_at is None and turn.n_calls == 0 and time.monotonic() - started > limit:
            raise RemoteTimeout(f"{self.endpoint.label} sent no token within {limit:g} s (only keep-alives); "
                                f"the request was abandoned. Check that the server is up and not overloaded "
                                f"(or raise --backend-first-token-timeout)")

    # -- response parsing ---------------------------------------------------------------------
    def _on_payload(self, payload: str, turn: _Turn) -> Iterator[LlmEvent]:
        payload = payload.strip()
        if not payload:
            return
        if payload == "[DONE]":
            turn.done = True
            return
        try:
            data = json.loads(payload)
        except ValueError:
            log.debug("ignoring a non-JSON event from %s: %r", self.endpoint.label, payload[:200])
            return
        if not isinstance(data, dict):
            return
        if data.get("error"):
            message, _ = server_message(json.dumps(data))
            raise RemoteEngineError(f"{self.endpoint.label} reported an error mid-stream: {message}")
        if isinstance(data.get("usage"), dict):
            turn.usage = data["usage"]
        for choice in data.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or choice.get("message") or {}
            content = delta.get("content")
            if isinstance(content, str) and content:
                yield from self._on_text(content, turn)
            for call in delta.get("tool_calls") or []:
                yield from self._on_tool_call(call, turn)
            if choice.get("finish_reason"):
                turn.reason = _FINISH.get(choice["finish_reason"], "stop")

    def _on_text(self, text: str, turn: _Turn) -> Iterator[LlmEvent]:
        turn.chunks += 1
        turn.chars += len(text)
        if turn.first_token_at is None:
            turn.first_token_at = time.monotonic()
        if turn.parser is None:
            yield TextDelta(text)
            return
        yield from self._from_parser(turn.parser.feed(text), turn)

    def _from_parser(self, events: list[TextDelta | ToolCallDelta], turn: _Turn) -> Iterator[LlmEvent]:
        for event in events:
            if isinstance(event, ToolCallDelta):
                event.index = turn.new_index()
            yield event

    def _flush_parser(self, turn: _Turn) -> Iterator[LlmEvent]:
        if turn.parser is not None:
            yield from self._from_parser(turn.parser.finish(), turn)
            turn.parser = None

    def _on_tool_call(self, call: Any, turn: _Turn) -> Iterator[LlmEvent]:
        if not isinstance(call, dict):
            return
        if turn.first_token_at is None:
            turn.first_token_at = time.monotonic()
        server_index = call.get("index")
        if not isinstance(server_index, int):  # not OpenAI's format, but seen: a new id starts a new call
            known = {c.call_id for c in turn.calls.values()}
            new = bool(call.get("id")) and call["id"] not in known
            server_index = len(turn.calls) if new or not turn.calls else max(turn.calls)
        state = turn.calls.get(server_index)
        if state is None:
            state = turn.calls[server_index] = _Call(index=turn.new_index())
        fn = call.get("function") or {}
        if call.get("id") and state.call_id is None:
            state.call_id = str(call["id"])
        if fn.get("name") and state.name is None:
            state.name = str(fn["name"])
        args = fn.get("arguments")
        if args is not None and not isinstance(args, str):
            args = json.dumps(args, ensure_ascii=False)  # some servers send an object
        args = args or ""
        turn.chunks += 1 if args else 0
        turn.chars += len(args)
        if not state.announced:
            if state.name is None:
                state.pending += args
                return
            state.announced = True
            yield ToolCallDelta(index=state.index, call_id=state.call_id or ids.call_tool_id(), name=state.name,
                                arguments=state.pending + args)
            state.pending = ""
        elif args:
            yield ToolCallDelta(index=state.index, arguments=args)

    def _whole_response(self, raw: bytes, turn: _Turn) -> Iterator[LlmEvent]:
        """A server that ignored `stream: true` and sent one chat.completion object."""
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise RemoteEngineError(f"{self.endpoint.label} sent neither an event stream nor JSON") from exc
        if isinstance(data, dict) and data.get("error"):
            raise RemoteEngineError(f"{self.endpoint.label}: {server_message(raw)[0]}")
        for choice in (data.get("choices") or [])[:1]:
            message = choice.get("message") or {}
            for i, call in enumerate(message.get("tool_calls") or []):
                yield from self._on_tool_call({**call, "index": call.get("index", i)}, turn)
            if isinstance(message.get("content"), str) and message["content"]:
                yield from self._on_text(message["content"], turn)
            turn.reason = _FINISH.get(choice.get("finish_reason") or "stop", "stop")
        if isinstance(data.get("usage"), dict):
            turn.usage = data["usage"]
        turn.done = True

    def _finished(self, turn: _Turn, body: dict[str, Any], reason: str) -> Finished:
        usage = turn.usage or {}
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        details = usage.get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        if not isinstance(prompt, int):
            text = json.dumps([_text_only(m.get("content")) for m in body.get("messages", [])], ensure_ascii=False)
            prompt = _estimate_tokens(text) + (_estimate_tokens(json.dumps(body["tools"])) if body.get("tools") else 0)
        if not isinstance(completion, int):
            completion = max(turn.chunks, (turn.chars + 3) // 4)
        return Finished(reason=reason, input_tokens=prompt, output_tokens=completion,
                        cached_tokens=cached if isinstance(cached, int) else 0)

    # -- lifecycle ----------------------------------------------------------------------------
    def warmup(self) -> None:
        """One tiny request (loads the model on servers that load lazily, e.g. Ollama)."""
        request = ChatRequest(messages=[{"role": "user", "content": "Hi"}], max_tokens=1, temperature=0.0)
        for _ in self.stream_chat(request, threading.Event()):
            pass

    def close(self) -> None:
        if self._own_client:
            self._client.close()
