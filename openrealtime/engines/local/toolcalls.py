"""Hermes/Qwen-style tool calling over plain text generation (no model involved here).

Qwen2.5 (and SmolLM2, Hermes, ...) call tools by emitting

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

`ToolCallStreamParser` turns the raw streamed text into `TextDelta` and `ToolCallDelta` events:
text outside the markup streams through immediately (only a possible partial `<tool_call>` at
the very end is held back), tool-call markup never leaks as text. Small models sometimes forget
the tags and answer with a bare JSON object (or one in a ```json fence); when tools are offered
and the reply *starts* with `{` or a fence, the parser buffers it and, at the end, turns it into a
tool call if it names one of the offered tools. Calls naming a tool that was not offered are
dropped (and counted in `dropped`, so the caller can re-generate); other buffered text is
released unchanged.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

from ..base import TextDelta, ToolCallDelta

log = logging.getLogger(__name__)

OPEN = "<tool_call>"
CLOSE = "</tool_call>"
# tags small models use by mistake (copied from the prompt's <tools> section); honoured only when
# tools are offered, so a plain answer mentioning "<tools>" is untouched otherwise
_ALIASES = (("<tools>", "</tools>"), ("<function_call>", "</function_call>"))
_FENCE_RE = re.compile(r"^\s*```(?:json|JSON)?\s*(.*?)\s*```\s*$", re.S)

TOOLS_SYSTEM_BLOCK = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n{{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}}\n</tool_call>"
)


def tools_system_block(tools: list[dict[str, Any]]) -> str:
    """The tool section Qwen2.5's chat template appends to the system prompt."""
    body = "".join("\n" + json.dumps(t, ensure_ascii=False) for t in tools)
    return TOOLS_SYSTEM_BLOCK.format(tools=body)


def tool_names(tools: list[dict[str, Any]]) -> list[str]:
    names = []
    for tool in tools:
        fn = tool.get("function", tool)
        if isinstance(fn, dict) and fn.get("name"):
            names.append(str(fn["name"]))
    return names


def _partial_suffix(text: str, token: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `token`."""
    for n in range(min(len(text), len(token) - 1), 0, -1):
        if token.startswith(text[-n:]):
            return n
    return 0


def parse_call(raw: str) -> tuple[str, str] | None:
    """`{"name": ..., "arguments": {...}}` -> (name, arguments JSON string), tolerant of small slips."""
    text = raw.strip()
    fence = _FENCE_RE.match(text)
    if fence:
        text = fence.group(1).strip()
    if text.startswith("{{") and text.endswith("}}"):
        text = text[1:-1]  # Qwen's GGUF template shows the format with doubled braces; models copy it
    candidates = [text]
    # common small-model slips: a trailing extra brace, a missing closing brace
    if text.endswith("}}"):
        candidates.append(text[:-1])
    candidates.extend([text + "}", text + "}}"])
    for candidate in candidates:
        try:
            obj = json.loads(candidate)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        if "function" in obj and isinstance(obj["function"], dict):  # OpenAI-shaped slip
            obj = obj["function"]
        name = obj.get("name")
        if not isinstance(name, str) or not name:
            continue
        args = obj.get("arguments", obj.get("parameters", {}))
        if isinstance(args, str):
            try:
                json.loads(args)
                args_json = args
            except ValueError:
                args_json = json.dumps({"input": args})
        else:
            args_json = json.dumps(args if args is not None else {}, ensure_ascii=False)
        return name, args_json
    return None


class ToolCallStreamParser:
    """Feed raw generated text; collect events. Call `finish()` once at the end."""

    def __init__(
        self,
        *,
        tools_offered: list[str],
        new_call_id: Callable[[], str],
        prefill: str = "",
        sniff_bare_json: bool = True,
    ) -> None:
        self.tools_offered = tools_offered
        self.new_call_id = new_call_id
        self.calls = 0
        self._buf = ""
        self._in_call = False
        self._tags = ((OPEN, CLOSE),) + (_ALIASES if tools_offered else ())
        self._close = CLOSE
        self._sniffing = bool(tools_offered) and sniff_bare_json
        self._seen_text = False
        self.dropped: list[str] = []  # tool markup not parsable or naming a tool not offered (logged)
        self.emitted = False  # whether any event has been produced
        if prefill:
            # the assistant turn was pre-filled (tool_choice required / named): parse as if generated
            if prefill.startswith(OPEN):
                self._in_call = True
                self._buf = prefill[len(OPEN):]
                self._sniffing = False

    # -- feeding --------------------------------------------------------------------------
    def feed(self, text: str) -> list[TextDelta | ToolCallDelta]:
        self._buf += text
        return self._drain(final=False)

    def finish(self) -> list[TextDelta | ToolCallDelta]:
        events = self._drain(final=True)
        if self._in_call:
            events.extend(self._close_call(self._buf, unterminated=True))
            self._buf = ""
            self._in_call = False
        elif self._sniffing:
            events.extend(self._resolve_sniff())
        elif self._buf:
            events.extend(self._text(self._buf))
            self._buf = ""
        return events

    # -- internals ------------------------------------------------------------------------
    def _text(self, text: str) -> list[TextDelta]:
        if not text:
            return []
        if not text.strip() and (self.calls or not self._seen_text):
            return []  # leading whitespace, or whitespace between / after tool calls
        if not self._seen_text:
            text = text.lstrip()
        self._seen_text = True
        self.emitted = True
        return [TextDelta(text)]

    def _resolve_sniff(self) -> list[TextDelta | ToolCallDelta]:
        raw, self._buf, self._sniffing = self._buf, "", False
        parsed = parse_call(raw)
        if parsed and parsed[0] in self.tools_offered:
            log.debug("bare JSON reply recognised as a call to %s", parsed[0])
            return self._emit_call(*parsed)
        if parsed:  # call-shaped JSON naming a tool that does not exist: never speak it
            self.dropped.append(raw)
            log.warning("dropped a bare JSON call to a tool that was not offered: %r", parsed[0])
            return []
        return self._text(raw)

    def _close_call(self, raw: str, *, unterminated: bool = False) -> list[TextDelta | ToolCallDelta]:
        parsed = parse_call(raw)
        if parsed is None:
            self.dropped.append(raw)
            log.warning("dropped unparsable tool call%s: %r", " (unterminated)" if unterminated else "", raw[:200])
            return []
        if parsed[0] not in self.tools_offered:
            self.dropped.append(raw)
            log.warning("dropped a call to a tool that was not offered: %r (offered: %s)", parsed[0], self.tools_offered)
            return []
        return self._emit_call(*parsed)

    def _emit_call(self, name: str, args: str) -> list[ToolCallDelta]:
        index = self.calls
        self.calls += 1
        self.emitted = True
        return [ToolCallDelta(index=index, call_id=self.new_call_id(), name=name, arguments=args)]

    def _drain(self, *, final: bool) -> list[TextDelta | ToolCallDelta]:
        events: list[TextDelta | ToolCallDelta] = []
        while True:
            if self._in_call:
                end = self._buf.find(self._close)
                if end < 0:
                    return events
                raw, self._buf = self._buf[:end], self._buf[end + len(self._close):]
                self._in_call = False
                events.extend(self._close_call(raw))
                continue
            if self._sniffing:
                stripped = self._buf.lstrip()
                if not stripped:
                    return events
                if any(stripped.startswith(o) or o.startswith(stripped) for o, _c in self._tags):
                    self._sniffing = False  # a tagged call follows
                    continue
                if stripped[0] in "{`":
                    return events  # keep buffering until finish()
                self._sniffing = False
            found = [(self._buf.find(o), o, c) for o, c in self._tags]
            found = [f for f in found if f[0] >= 0]
            if found:
                start, open_tag, self._close = min(found)
                events.extend(self._text(self._buf[:start]))
                self._buf = self._buf[start + len(open_tag):]
                self._in_call = True
                continue
            keep = 0 if final else max(_partial_suffix(self._buf, o) for o, _c in self._tags)
            emit, self._buf = self._buf[: len(self._buf) - keep], self._buf[len(self._buf) - keep:]
            events.extend(self._text(emit))
            return events
