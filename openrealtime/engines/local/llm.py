"""Language model: llama-cpp-python over a GGUF file, streaming, cancellable, with tool calls.

Models (see `openrealtime.engines.assets`): Qwen2.5-Coder-1.5B-Instruct Q4_K_M (default),
Qwen2.5-Coder-0.5B-Instruct Q4_K_M ("fast"), SmolLM2-135M-Instruct ("test" — plumbing only, its
answers are nonsense), or any GGUF passed by path.

Prompting: the GGUF's own chat template (jinja2, sandboxed) renders the conversation, with the
tools in the system prompt when the template supports them (Qwen2.5 does). For templates without
tool support, the same Qwen/Hermes tool block is appended to the system message and tool calls /
tool results are rendered as `<tool_call>` / `<tool_response>` text. Output is parsed by
`ToolCallStreamParser`; tool markup never reaches `TextDelta`.

tool_choice:
* "auto" — tools offered, the model decides. If its only output is a call to a tool that was not
  offered, an unparsable call, or a repeat of a call whose result is already in the conversation
  (small models loop), the reply is generated once more with the same (cached) prompt and tool
  calls banned by a logits processor (the `<tool_call>` token, and JSON/fence openings at the first
  step), or with the tools left out when the tag is not a single token.
  Tool results are shown as "<name> result: ...\nUse this result to answer the user." inside
  Qwen's `<tool_response>`, which stops Qwen2.5-Coder-1.5B from re-issuing the call.
* "none" — tools are not rendered at all (the model cannot see them); a stray call is dropped.
* "required" — tools offered and the assistant turn is *pre-filled* with `<tool_call>\n{"name":`,
  so the model must pick a tool (more reliable than instructing); with a single tool this is the
  named case below. If no usable call comes out, it is re-prompted once (greedy decoding).
* {"type": "function", "function": {"name": N}} — pre-filled up to `"arguments": `, so the model
  only writes the arguments of N. Named/required calls are not constrained by a grammar; a
  malformed result is re-prompted once.

Prompt caching: llama.cpp keeps the KV cache of the last evaluated sequence and
`Llama.generate` reuses the longest common token prefix, so the system prompt (and a session's
whole history on its next turn) is not re-evaluated. With several sessions interleaving, a small
LRU of per-session KV snapshots (keyed by `ChatRequest.session_key`, llama.cpp's sequence-state
API, ~28 KB/token for the 1.5B model) restores a session's own history instead of recomputing it;
a snapshot is taken only when another session takes the cache over.

CPU sharing: generation and prefill stop at `gate.pause_point()` between tokens, so a
reply's first clause is synthesized with every core (see `engines/foreground.py`).

Concurrency: one `Llama` per process, guarded by a lock; concurrent sessions queue (a waiting
request still honours `cancel`). Use a model server (openai_compat backend) for parallelism.
Images: `supports_images = False` — no vision GGUF ships on PyPI here; image parts are dropped.
"""

from __future__ import annotations

import codecs
import ctypes
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ... import ids
from .. import assets
from ..base import ChatRequest, Finished, LlmEvent, ToolCallDelta
from ..foreground import ForegroundGate
from .toolcalls import OPEN, ToolCallStreamParser, tool_names, tools_system_block

log = logging.getLogger(__name__)

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful voice assistant. Your replies are spoken aloud: keep them short, "
    "conversational and free of markdown."
)

DEFAULT_MAX_TOKENS = 1024
_LOCK_POLL_S = 0.05
# tokens per llama_decode in a prefill: a waiting response, a cancel or foreground work takes over
# between batches, so this bounds how long a stale warm-up delays them (1.5B model: ≈ 0.15 s in a
# call; 2-token batches made the warm-ups slower overall and gained nothing)
_PREFILL_BATCH = 4

MODELS = {
    "qwen2.5-1.5b": "Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
    "qwen2.5-0.5b": "Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
    "smollm2-135m": "SmolLM2-135M-Instruct Q4_1 (plumbing tests only)",
}

# Plain ChatML, used when a GGUF carries no chat template of its own.
CHATML_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def resolve_model_path(model: str, progress: assets.ByteProgress | None = None) -> Path:
    if model == "qwen2.5-1.5b":
        return assets.qwen_gguf("1.5b", progress)
    if model == "qwen2.5-0.5b":
        return assets.qwen_gguf("0.5b", progress)
    if model == "smollm2-135m":
        return assets.smollm2_gguf()
    path = Path(model).expanduser()
    if not path.is_file():
        raise assets.ModelFileError(f"unknown LLM {model!r}: use one of {sorted(MODELS)} or the path of a GGUF "
                                    f"file ({path} is not a file)")
    check_gguf(path)
    return path


def check_gguf(path: Path) -> None:
    """A chat model file must be GGUF (llama.cpp's format): refuse anything else by its magic bytes."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise assets.ModelFileError(f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF'): give a "
                                    f"GGUF chat model, e.g. one converted with llama.cpp's convert_hf_to_gguf.py")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


# ---- prompt rendering -----------------------------------------------------------------------
def _text_of(content: Any) -> tuple[str, int]:
    """Message content (str or parts) -> (text, number of images dropped)."""
    if content is None:
        return "", 0
    if isinstance(content, str):
        return content, 0
    texts, images = [], 0
    for part in content:
        if not isinstance(part, dict):
            texts.append(str(part))
            continue
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text"):
            texts.append(str(part.get("text", "")))
        elif kind in ("image_url", "input_image"):
            images += 1
        elif kind in ("input_audio", "audio") and part.get("transcript"):
            texts.append(str(part["transcript"]))
    return "\n".join(t for t in texts if t), images


def _arguments_obj(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return arguments
    return arguments if arguments is not None else {}


def fix_template(template: str) -> str:
    """Known template slips. Qwen2.5's GGUF template prints the tool-call format with doubled
    braces (`{{"name": ...}}`, a jinja string literal), which small models then imitate."""
    return template.replace(
        '{{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}}',
        '{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}',
    )


def tool_result_text(name: str | None, content: str) -> str:
    """How a tool result is shown to the model. Measured on Qwen2.5-Coder-1.5B: given the bare
    result it often repeats the call (a loop); naming the tool and asking for an answer fixes it."""
    label = f"{name} result" if name else "Tool result"
    return f"{label}: {content}\nUse this result to answer the user."


class PromptRenderer:
    """Chat messages (+tools) -> prompt text, via the GGUF chat template."""

    def __init__(self, template: str | None, *, bos_token: str = "", eos_token: str = "") -> None:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        self.template_source = fix_template(template or CHATML_TEMPLATE)
        self.native_tools = "tools" in self.template_source
        env = ImmutableSandboxedEnvironment(loader=jinja2.BaseLoader(), trim_blocks=True, lstrip_blocks=True)
        env.filters["tojson"] = lambda x, indent=None, ensure_ascii=False, **_: json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent)
        env.globals["raise_exception"] = self._raise
        env.globals["strftime_now"] = lambda fmt: time.strftime(fmt)
        self._template = env.from_string(self.template_source)
        self.bos_token = bos_token
        self.eos_token = eos_token

    @staticmethod
    def _raise(message: str) -> None:
        raise ValueError(f"chat template: {message}")

    def normalize(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                  default_system: str | None) -> tuple[list[dict[str, Any]], int]:
        """OpenAI-style messages -> what chat templates expect (string content, dict arguments)."""
        out: list[dict[str, Any]] = []
        images = 0
        call_names = {call.get("id"): (call.get("function") or call).get("name")
                      for msg in messages for call in (msg.get("tool_calls") or [])}
        for msg in messages:
            role = msg.get("role", "user")
            if role == "developer":
                role = "system"
            text, n_img = _text_of(msg.get("content"))
            images += n_img
            if role == "assistant" and msg.get("tool_calls"):
                calls = []
                for call in msg["tool_calls"]:
                    fn = call.get("function", call)
                    calls.append({"type": "function", "id": call.get("id"),
                                  "function": {"name": fn.get("name", ""),
                                               "arguments": _arguments_obj(fn.get("arguments"))}})
                if self.native_tools:
                    out.append({"role": "assistant", "content": text, "tool_calls": calls})
                else:
                    rendered = "".join(
                        f"\n{OPEN}\n" + json.dumps({"name": c["function"]["name"],
                                                    "arguments": c["function"]["arguments"]}, ensure_ascii=False)
                        + "\n</tool_call>" for c in calls)
                    out.append({"role": "assistant", "content": (text + rendered).strip()})
            elif role == "tool":
                text = tool_result_text(call_names.get(msg.get("tool_call_id")), text)
                if self.native_tools:
                    out.append({"role": "tool", "content": text, "tool_call_id": msg.get("tool_call_id")})
                else:
                    out.append({"role": "user", "content": f"<tool_response>\n{text}\n</tool_response>"})
            else:
                out.append({"role": role, "content": text})
        if default_system is not None and (not out or out[0]["role"] != "system"):
            out.insert(0, {"role": "system", "content": default_system})
        if tools and not self.native_tools:
            block = tools_system_block(tools)
            if out and out[0]["role"] == "system":
                out[0] = {**out[0], "content": out[0]["content"] + block}
            else:
                out.insert(0, {"role": "system", "content": block.lstrip()})
        return out, images

    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
        return self._template.render(
            messages=messages,
            tools=tools if (tools and self.native_tools) else None,
            add_generation_prompt=True,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
        )


# ---- per-session KV snapshots ---------------------------------------------------------------
@dataclass
class _Snapshot:
    tokens: np.ndarray  # token ids held in the KV cache
    data: bytes  # llama_state_seq_get_data(seq 0)


class _SnapshotCache:
    def __init__(self, max_sessions: int, max_bytes: int) -> None:
        self.max_sessions = max_sessions
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, _Snapshot] = OrderedDict()

    def get(self, key: str) -> _Snapshot | None:
        snap = self._items.get(key)
        if snap is not None:
            self._items.move_to_end(key)
        return snap

    def put(self, key: str, snap: _Snapshot) -> None:
        self._items[key] = snap
        self._items.move_to_end(key)
        while len(self._items) > self.max_sessions or (
            len(self._items) > 1 and sum(len(s.data) for s in self._items.values()) > self.max_bytes
        ):
            self._items.popitem(last=False)

    def drop(self, key: str) -> None:
        self._items.pop(key, None)

    def keys(self) -> tuple[str, ...]:
        return tuple(self._items)


@dataclass
class _Run:
    parser: ToolCallStreamParser | None = None
    reason: str = "length"
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    first_token_at: float | None = None
    emitted: bool = False  # any event delivered to the caller
    calls: int = 0  # tool calls delivered
    repeated: int = 0  # tool calls dropped as repeats of already-answered calls


def _canonical_args(arguments: Any) -> str:
    obj = _arguments_obj(arguments)
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(obj)


def _answered_calls(messages: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(name, canonical arguments) of the tool calls in the history that already have a result."""
    results = {m.get("tool_call_id") for m in messages if m.get("role") == "tool"}
    answered = set()
    for msg in messages:
        for call in msg.get("tool_calls") or []:
            fn = call.get("function", call)
            if call.get("id") in results:
                answered.add((fn.get("name", ""), _canonical_args(fn.get("arguments"))))
    return answered


def _common_prefix(a: np.ndarray | list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    left = np.asarray(a[:n], dtype=np.int64)
    right = np.asarray(b[:n], dtype=np.int64)
    diff = np.nonzero(left != right)[0]
    return int(diff[0]) if diff.size else n


class LlamaCppLLM:
    """`LanguageModel` on llama-cpp-python (one model per process; requests queue on a lock)."""

    supports_images = False

    def __init__(
        self,
        model: str = "qwen2.5-1.5b",
        *,
        model_path: str | Path | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = 512,
        n_gpu_layers: int = 0,
        gate: ForegroundGate | None = None,
        default_system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        session_snapshots: int = 4,
        snapshot_bytes: int = 512 * 1024 * 1024,
        progress: assets.ByteProgress | None = None,
    ) -> None:
        try:
            import llama_cpp
            from llama_cpp import Llama
        except ImportError as exc:
            raise RuntimeError(
                "The local language model needs llama-cpp-python:  pip install llama-cpp-python==0.3.36 "
                "(it builds from source, ~7 min on 2 cores; needs cmake and a C++ compiler)"
            ) from exc
        self._lib = llama_cpp
        self.model_name = Path(model_path or model).name if (model_path or model.endswith(".gguf")) else model
        self.model_path = resolve_model_path(str(model_path) if model_path else model, progress)
        self.n_threads = n_threads or _cores()
        self.gate = gate or ForegroundGate()  # the server's (Runtime.gate): its pause points step aside
        self.default_system_prompt = default_system_prompt
        started = time.monotonic()
        self._llm = Llama(
            model_path=str(self.model_path),
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_threads=self.n_threads,
            n_threads_batch=self.n_threads,
            n_gpu_layers=n_gpu_layers,  # layers offloaded to a GPU build of llama.cpp (--llm-gpu-layers)
            verbose=False,
        )
        self.load_seconds = time.monotonic() - started
        self.n_ctx = self._llm.n_ctx()
        meta = self._llm.metadata or {}
        template = meta.get("tokenizer.chat_template")
        self._bos_text = self._piece(self._llm.token_bos()) if self._llm.token_bos() >= 0 else ""
        self._eos_text = self._piece(self._llm.token_eos()) if self._llm.token_eos() >= 0 else ""
        self.renderer = PromptRenderer(template, bos_token=self._bos_text, eos_token=self._eos_text)
        open_tokens = self._llm.tokenize(OPEN.encode(), add_bos=False, special=True)
        self._tool_open_token: int | None = open_tokens[0] if len(open_tokens) == 1 else None
        self._json_start_tokens: np.ndarray | None = None
        self._lock = threading.Lock()
        self._waiting = 0  # stream_chat calls waiting for the lock (a prefill yields to them)
        self._waiting_lock = threading.Lock()
        self._snapshots = _SnapshotCache(session_snapshots, snapshot_bytes) if session_snapshots > 0 else None
        self._live_owner: str | None = None  # the session whose history the live KV cache holds
        self._forgotten: set[str] = set()  # sessions that ended while the model was busy (forget_session)
        self._images_warned = False
        log.info(
            "LLM %s loaded from %s in %.2f s (n_ctx %d, %d threads, template %s)",
            self.model_name, self.model_path, self.load_seconds, self.n_ctx, self.n_threads,
            "native tools" if self.renderer.native_tools else "tools via system prompt",
        )

    # -- helpers --------------------------------------------------------------------------
    def _piece(self, token: int) -> str:
        return self._llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def _is_eog(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self._llm._model.vocab, token))

    def describe(self) -> str:
        return f"llama.cpp {self.model_name} ({self.n_threads} threads, n_ctx {self.n_ctx})"

    def tokenize_prompt(self, prompt: str) -> list[int]:
        add_bos = not (self._bos_text and prompt.startswith(self._bos_text))
        return self._llm.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True)

    def build_prompt(self, request: ChatRequest) -> tuple[list[int], str, list[str], str]:
        """-> (prompt tokens, prefill text, offered tool names, effective tool_choice)."""
        tokens, _text, prefill, names, choice = self._prompt(request)
        return tokens, prefill, names, choice

    def _prompt(self, request: ChatRequest) -> tuple[list[int], str, str, list[str], str]:
        """-> (prompt tokens, prompt text, prefill text, offered tool names, effective tool_choice)."""
        choice = request.tool_choice if request.tool_choice is not None else "auto"
        tools = list(request.tools or [])
        forced_name: str | None = None
        if isinstance(choice, dict):
            forced_name = (choice.get("function") or {}).get("name") or choice.get("name")
            choice = "named" if forced_name else "auto"
        if choice == "none" or not tools:
            tools = []
        names = tool_names(tools)
        if forced_name and forced_name not in names:
            raise ValueError(f"tool_choice names {forced_name!r}, which is not among the tools {names}")
        if choice == "required" and len(names) == 1:
            choice, forced_name = "named", names[0]
        if choice == "required":
            prefill = OPEN + '\n{"name":'
        elif choice == "named":
            prefill = OPEN + '\n{"name": ' + json.dumps(forced_name) + ', "arguments":'
        else:
            prefill = ""
        messages, images = self.renderer.normalize(request.messages, tools, self.default_system_prompt)
        if images and not self._images_warned:
            self._images_warned = True
            log.warning("%s cannot see images (no vision GGUF is packaged); %d image(s) dropped",
                        self.model_name, images)
        budget = self.n_ctx - min(request.max_tokens or DEFAULT_MAX_TOKENS, 256)
        while True:
            text = self.renderer.render(messages, tools) + prefill
            tokens = self.tokenize_prompt(text)
            if len(tokens) <= budget:
                return tokens, text, prefill, names, choice
            # drop the oldest non-system message (keeping tool call/result pairs together)
            first = 1 if messages and messages[0]["role"] == "system" else 0
            if len(messages) - first <= 1:
                raise ValueError(
                    f"the prompt needs {len(tokens)} tokens, more than the {self.n_ctx}-token context allows; "
                    f"shorten the instructions or the last message"
                )
            del messages[first]
            while len(messages) > first + 1 and messages[first]["role"] == "tool":
                del messages[first]
            log.info("conversation trimmed to fit the %d-token context", self.n_ctx)

    # -- KV snapshots ---------------------------------------------------------------------
    def _switch_session(self, key: str | None, tokens: list[int]) -> None:
        """Before serving `key`: snapshot the previous owner's KV cache, restore `key`'s if better.

        Snapshots are taken lazily, only when another session takes the cache over, so a single
        session (the common case) never pays for them.
        """
        with self._waiting_lock:
            forgotten, self._forgotten = self._forgotten, set()
        for ended in forgotten:  # sessions that ended while the model was busy
            self._forget(ended)
        owner, self._live_owner = self._live_owner, key
        if self._snapshots is None or owner == key:
            return
        if owner is not None and self._llm.n_tokens > 0:
            self._save_snapshot(owner)
        if key is not None:
            self._restore_snapshot(key, tokens)

    def _save_snapshot(self, key: str) -> None:
        try:
            ctx = self._llm._ctx.ctx
            size = self._lib.llama_state_seq_get_size(ctx, 0)
            buf = (ctypes.c_uint8 * size)()
            written = self._lib.llama_state_seq_get_data(ctx, buf, size, 0)
            n = self._llm.n_tokens
            self._snapshots.put(key, _Snapshot(self._llm.input_ids[:n].copy(), ctypes.string_at(buf, written)))
        except Exception:  # noqa: BLE001 - an optimisation; never fail a response for it
            log.exception("could not snapshot the KV cache; disabling per-session snapshots")
            self._snapshots = None

    def _restore_snapshot(self, key: str, tokens: list[int]) -> None:
        snap = self._snapshots.get(key) if self._snapshots is not None else None
        if snap is None:
            return
        live = _common_prefix(self._llm.input_ids[: self._llm.n_tokens], tokens)
        saved = _common_prefix(snap.tokens, tokens)
        if saved <= live + 16:  # not worth a restore
            return
        try:
            ctx = self._llm._ctx.ctx
            buf = (ctypes.c_uint8 * len(snap.data)).from_buffer_copy(snap.data)
            self._llm._ctx.kv_cache_seq_rm(0, 0, -1)
            if self._lib.llama_state_seq_set_data(ctx, buf, len(snap.data), 0) == 0:
                raise RuntimeError("llama_state_seq_set_data failed")
            n = len(snap.tokens)
            self._llm.input_ids[:n] = snap.tokens
            self._llm.n_tokens = n
            self._llm._requires_eval = True
            log.debug("restored %d cached tokens for session %s", n, key)
        except Exception:  # noqa: BLE001
            log.exception("could not restore a KV snapshot; evaluating the prompt in full")
            self._llm.reset()

    def _no_call_processor(self):
        """Logits processor for a retry that must answer in words: bans the tool-call tag at every
        step and JSON / code-fence openings at the first step (with the tag banned, looping small
        models write the same call as bare JSON instead)."""
        from llama_cpp import LogitsProcessorList

        if self._json_start_tokens is None:
            starts = []
            for token in range(self._llm.n_vocab()):
                piece = self._llm.detokenize([token]).lstrip()
                if piece[:1] in (b"{", b"`", b"[", b"<"):
                    starts.append(token)
            self._json_start_tokens = np.asarray(starts, dtype=np.int64)
        always = [self._tool_open_token]
        first_step = self._json_start_tokens
        state: dict[str, int] = {}

        def processor(input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
            scores[always] = -np.inf
            if state.setdefault("start", len(input_ids)) == len(input_ids):
                scores[first_step] = -np.inf
            return scores

        return LogitsProcessorList([processor])

    def forget_session(self, session_key: str) -> None:
        """A session has ended: drop its KV snapshot and never snapshot the live cache for it again.

        Called on the event loop when a session closes, so it never waits for the model: while a
        reply or a prefill holds it (seconds), the key is queued and forgotten when the model
        next switches sessions, before any snapshot is taken."""
        if self._snapshots is None:
            return
        if self._lock.acquire(blocking=False):
            try:
                self._forget(session_key)
            finally:
                self._lock.release()
        else:
            with self._waiting_lock:
                self._forgotten.add(session_key)

    def _forget(self, key: str) -> None:
        """Under `_lock`."""
        if self._snapshots is not None:
            self._snapshots.drop(key)
        if self._live_owner == key:
            self._live_owner = None

    @property
    def cached_sessions(self) -> tuple[str, ...]:
        """The sessions whose KV snapshot is held (an ended session's is dropped by forget_session)."""
        return self._snapshots.keys() if self._snapshots is not None else ()

    # -- LanguageModel ---------------------------------------------------------------------
    def stream_chat(self, request: ChatRequest, cancel: threading.Event | None = None) -> Iterator[LlmEvent]:
        cancel = cancel or threading.Event()
        with self._waiting_lock:
            self._waiting += 1
        try:
            while not self._lock.acquire(timeout=_LOCK_POLL_S):
                if cancel.is_set():
                    yield Finished(reason="cancelled")
                    return
        finally:
            with self._waiting_lock:
                self._waiting -= 1
        try:
            yield from self._generate(request, cancel)
        finally:
            self._lock.release()

    def prefill(self, request: ChatRequest, cancel: threading.Event | None = None, *, complete: bool = False) -> int:
        """Evaluate the prompt of `request` into the KV cache without generating.

        The session engine calls this while the user is still speaking, with the words heard so
        far as the last user message: when the turn ends, only the tokens after the common
        prefix (the rest of the user's words and the assistant header) are left to evaluate.
        The prompt is cut after the last message's text (no end-of-turn, no assistant header)
        and 2 more tokens are left out, because the next word can re-tokenize the last ones.
        With `complete` (the words heard so far read as a finished sentence) the whole prompt is
        evaluated, assistant header included: if the user indeed stops there, answering needs no
        prompt evaluation at all (the last token is evaluated again to get its logits).
        Evaluates in small batches and stops early when `cancel` is set or a response is waiting
        for the model. Returns the number of tokens evaluated.
        """
        cancel = cancel or threading.Event()
        if not self._lock.acquire(timeout=_LOCK_POLL_S):
            return 0  # the model is busy answering; the warm-up would come too late anyway
        try:
            tokens, text, _prefill, _names, _choice = self._prompt(request)
            if complete:
                tokens = tokens[:-1]
            else:
                last = request.messages[-1].get("content") if request.messages else None
                end = text.rfind(last) if isinstance(last, str) and last else -1
                if end <= 0:
                    return 0
                tokens = self.tokenize_prompt(text[: end + len(last)])[:-2]
            self._switch_session(request.session_key, tokens)
            llm = self._llm
            common = _common_prefix(llm.input_ids[: llm.n_tokens], tokens)
            done = 0
            for start in range(common, len(tokens), _PREFILL_BATCH):
                self.gate.pause_point()  # a reply's first clause is being spoken: step aside
                if cancel.is_set() or self._waiting:
                    break
                batch = tokens[start: start + _PREFILL_BATCH]
                llm.n_tokens = start  # eval() drops any cached tokens after this point
                llm.eval(batch)
                done += len(batch)
            log.debug("prefilled %d tokens (%d already cached) for session %s", done, common, request.session_key)
            return done
        finally:
            self._lock.release()

    def _generate(self, request: ChatRequest, cancel: threading.Event) -> Iterator[LlmEvent]:
        started = time.monotonic()
        tokens, prefill, names, choice = self.build_prompt(request)
        if cancel.is_set():
            yield Finished(reason="cancelled", input_tokens=len(tokens))
            return
        self._switch_session(request.session_key, tokens)
        run = _Run()
        yield from self._run_once(tokens, prefill, names, request, cancel, run)
        if (run.reason == "stop" and choice == "auto" and names and not run.emitted
                and (run.parser.dropped or run.repeated)):
            # The model "called" a tool that does not exist, garbled the call or repeated one it
            # already has the result of, and said nothing else: answer once more, with tool calls
            # banned (same prompt, so the KV cache is reused) or, if the call tag is not a single
            # token, with the tools left out of the prompt.
            log.info("re-generating without tool calls after an unusable tool call")
            first = run
            run = _Run()
            if self._tool_open_token is not None:
                yield from self._run_once(tokens, "", names, request, cancel, run,
                                          logits_processor=self._no_call_processor())
            else:
                retry = ChatRequest(messages=request.messages, tools=[], tool_choice="none",
                                    max_tokens=request.max_tokens, temperature=request.temperature,
                                    session_key=request.session_key)
                tokens2, _p, _n, _c = self.build_prompt(retry)
                yield from self._run_once(tokens2, "", [], retry, cancel, run)
            run.input_tokens += first.input_tokens
            run.output_tokens += first.output_tokens
            run.cached_tokens += first.cached_tokens
        elif choice in ("required", "named") and run.reason == "stop" and not run.calls:
            log.info("tool_choice %s produced no usable call; re-prompting once", choice)
            retry = ChatRequest(messages=request.messages, tools=request.tools, tool_choice=request.tool_choice,
                                max_tokens=request.max_tokens, temperature=0.0, session_key=request.session_key)
            first = run
            run = _Run()
            yield from self._run_once(tokens, prefill, names, retry, cancel, run)
            run.input_tokens += first.input_tokens
            run.output_tokens += first.output_tokens
            run.cached_tokens += first.cached_tokens
        reason = run.reason
        if run.calls and reason == "stop":
            reason = "tool_calls"
        elapsed = time.monotonic() - started
        ttft = (run.first_token_at - started) if run.first_token_at else elapsed
        log.info(
            "llm %s: %d prompt tokens (%d cached), %d generated, first token %.3f s, %.1f tok/s, %s",
            self.model_name, run.input_tokens, run.cached_tokens, run.output_tokens, ttft,
            (run.output_tokens - 1) / max(1e-6, elapsed - ttft) if run.output_tokens > 1 else 0.0, reason,
        )
        yield Finished(reason=reason, input_tokens=run.input_tokens, output_tokens=run.output_tokens,
                       cached_tokens=run.cached_tokens)

    def _run_once(self, tokens: list[int], prefill: str, names: list[str], request: ChatRequest,
                  cancel: threading.Event, run: _Run, logits_processor: Any = None) -> Iterator[LlmEvent]:
        """Generate for one prompt, streaming parsed events; fills `run` with the outcome."""
        live = self._llm.input_ids[: self._llm.n_tokens]
        run.input_tokens = len(tokens)
        run.cached_tokens = min(_common_prefix(live, tokens), len(tokens) - 1)  # last token is re-evaluated
        max_new = max(1, min(request.max_tokens or DEFAULT_MAX_TOKENS, self.n_ctx - len(tokens)))
        temperature = max(0.0, float(request.temperature if request.temperature is not None else 0.7))
        parser = run.parser = ToolCallStreamParser(tools_offered=names, new_call_id=ids.call_tool_id, prefill=prefill)
        answered = _answered_calls(request.messages)

        def deliver(events: list[LlmEvent]) -> Iterator[LlmEvent]:
            for event in events:
                if isinstance(event, ToolCallDelta):
                    if (event.name, _canonical_args(event.arguments)) in answered:
                        # a small model re-issuing a call whose result it already has: a loop
                        log.info("dropped a repeated call to %s %s", event.name, event.arguments)
                        run.repeated += 1
                        continue
                    event.index = run.calls
                    run.calls += 1
                run.emitted = True
                yield event

        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        gen = self._llm.generate(
            tokens,
            temp=temperature,
            top_k=20 if temperature > 0 else 1,
            top_p=0.8,
            min_p=0.0,
            repeat_penalty=1.05,
            reset=True,
            logits_processor=logits_processor,
        )
        run.reason = "length"
        try:
            for token in gen:
                if run.first_token_at is None:
                    run.first_token_at = time.monotonic()
                if self._is_eog(token):
                    run.reason = "stop"
                    break
                run.output_tokens += 1
                text = decoder.decode(self._llm.detokenize([token], special=True))
                if text:
                    yield from deliver(parser.feed(text))
                if cancel.is_set():
                    run.reason = "cancelled"
                    break
                if run.output_tokens >= max_new:
                    break
                self.gate.pause_point()  # before the next token: a first clause's synthesis goes first
        finally:
            gen.close()
        if run.reason != "cancelled":
            tail = decoder.decode(b"", final=True)
            if tail:
                yield from deliver(parser.feed(tail))
            yield from deliver(parser.finish())

    def warmup(self, system_prompt: str | None = None) -> None:
        """Evaluate the default system prompt once so its KV prefix is cached (1-token reply)."""
        request = ChatRequest(messages=[{"role": "system", "content": system_prompt or self.default_system_prompt},
                                        {"role": "user", "content": "Hi"}], max_tokens=1, temperature=0.0)
        for _ in self.stream_chat(request, threading.Event()):
            pass
        if self._tool_open_token is not None:
            with self._lock:
                self._no_call_processor()  # scans the vocabulary once (~0.5 s), not mid-reply

    def close(self) -> None:
        with self._lock:
            llm, self._llm = self._llm, None
            closer = getattr(llm, "close", None)
            if callable(closer):
                closer()
