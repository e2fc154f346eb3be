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

Prompt caching and concurrency: one model per process, decoded by one thread (engines/local/llm_batch.py)
that puts every concurrent request's prompt chunks and next tokens into one llama.cpp batch, each
conversation in a KV sequence of its own (`ChatRequest.session_key`). A session's history stays in
its sequence after the reply, so its next turn evaluates only what is new; the system prompt is
shared from the warm-up's sequence; when sequences or KV cells run out, the least recently used
session's is kept as a snapshot in memory (~28 KB/token for the 1.5B model). Nothing is shared
between two sessions' sequences. Replies' first tokens and prompts go before later tokens of replies
that are already speaking; warm-ups (`prefill`) come last. `max_concurrency` (`parallel`) is how many
replies the session engine runs at once.

CPU sharing: the decoder stops at `gate.pause_point()` between steps, so a reply's first
clause is synthesized with every core (see `engines/foreground.py`).
Images: `supports_images = False` — no vision GGUF ships on PyPI here; image parts are dropped.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ... import ids
from ...runtime import lower_thread_priority
from .. import assets
from ..base import ChatRequest, Finished, LlmEvent, ToolCallDelta
from ..foreground import ForegroundGate
from .llama_kv import LlamaKv, Sampling, load_model
from .llm_batch import POLL_S, BatchDecoder, Job
from .toolcalls import OPEN, ToolCallStreamParser, tool_names, tools_system_block

log = logging.getLogger(__name__)

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful voice assistant. Your replies are spoken aloud: keep them short, "
    "conversational and free of markdown."
)

DEFAULT_MAX_TOKENS = 1024
DEFAULT_PARALLEL = 4  # replies decoded at once (measured: bench/README.md "concurrency")
# tokens per llama_decode at most (a prompt alone goes in chunks of llm_batch.PROMPT_CHUNK_ALONE); it sizes
# llama.cpp's compute buffer (≈ 300 MB at 512 with the 1.5B model)
DEFAULT_BATCH = 128

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



class LlamaCppLLM:
    """`LanguageModel` on llama.cpp: one model per process; concurrent requests decode together in one batch
    (engines/local/llm_batch.py)."""

    supports_images = False

    def __init__(
        self,
        model: str = "qwen2.5-1.5b",
        *,
        model_path: str | Path | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = DEFAULT_BATCH,
        n_gpu_layers: int = 0,
        parallel: int = DEFAULT_PARALLEL,
        kv_tokens: int | None = None,
        gate: ForegroundGate | None = None,
        default_system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        session_snapshots: int = 4,
        snapshot_bytes: int = 512 * 1024 * 1024,
        progress: assets.ByteProgress | None = None,
    ) -> None:
        """`n_ctx`: the tokens one conversation's prompt and reply may take; `parallel`: the replies decoded
        at once (`max_concurrency`); `kv_tokens`: the KV cells all conversations share (default
        `n_ctx` × min(parallel, 2)); `session_snapshots` / `snapshot_bytes`: the sessions whose evicted KV
        cache is kept in memory."""
        try:
            import llama_cpp
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
        self.max_concurrency = max(1, parallel)
        started = time.monotonic()
        self._model = load_model(llama_cpp, self.model_path, n_gpu_layers=n_gpu_layers)
        self.n_ctx = min(n_ctx, self._model.n_ctx_train() or n_ctx)
        self._kv = LlamaKv(llama_cpp, self._model, n_ctx=kv_tokens or self.n_ctx * min(self.max_concurrency, 2),
                           n_seq=max(2 * self.max_concurrency, self.max_concurrency + 4), n_batch=n_batch,
                           n_threads=self.n_threads)
        self._decoder = BatchDecoder(self._kv, gate=self.gate, snapshots=session_snapshots,
                                     snapshot_bytes=snapshot_bytes, thread_setup=lower_thread_priority)
        self.load_seconds = time.monotonic() - started
        template = self._model.metadata().get("tokenizer.chat_template")
        self._bos_text = self._piece(self._model.token_bos()) if self._model.token_bos() >= 0 else ""
        self._eos_text = self._piece(self._model.token_eos()) if self._model.token_eos() >= 0 else ""
        self.renderer = PromptRenderer(template, bos_token=self._bos_text, eos_token=self._eos_text)
        open_tokens = self._model.tokenize(OPEN.encode(), False, True)
        self._tool_open_token: int | None = open_tokens[0] if len(open_tokens) == 1 else None
        self._json_start_tokens: tuple[int, ...] | None = None
        self._images_warned = False
        log.info(
            "LLM %s loaded from %s in %.2f s (n_ctx %d, %d KV cells shared by up to %d conversations at once, "
            "%d threads, template %s)",
            self.model_name, self.model_path, self.load_seconds, self.n_ctx, self._kv.n_ctx, self.max_concurrency,
            self.n_threads, "native tools" if self.renderer.native_tools else "tools via system prompt",
        )

    # -- helpers --------------------------------------------------------------------------
    def _piece(self, token: int) -> str:
        return self._model.detokenize([token], special=True).decode("utf-8", errors="replace")

    def describe(self) -> str:
        return (f"llama.cpp {self.model_name} ({self.n_threads} threads, n_ctx {self.n_ctx}, "
                f"{self.max_concurrency} conversations batched)")

    def tokenize_prompt(self, prompt: str) -> list[int]:
        add_bos = not (self._bos_text and prompt.startswith(self._bos_text))
        return self._model.tokenize(prompt.encode("utf-8"), add_bos, True)

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

    def _answer_in_words(self) -> Sampling:
        """Bans for a retry that must answer in words: the tool-call tag at every step and JSON / code-fence
        openings at the first step (with the tag banned, looping small models write the same call as bare
        JSON instead)."""
        if self._json_start_tokens is None:
            starts = []
            for token in range(self._model.n_vocab()):
                piece = self._model.detokenize([token], special=False).lstrip()
                if piece[:1] in (b"{", b"`", b"[", b"<"):
                    starts.append(token)
            self._json_start_tokens = tuple(starts)
        return Sampling(ban=(self._tool_open_token,), ban_first=self._json_start_tokens)

    # -- SessionAware -----------------------------------------------------------------------
    def forget_session(self, session_key: str) -> None:
        """A session has ended: its KV cache and snapshot are dropped. Called on the event loop when a session
        closes; never waits for the model (the decoder clears the slots at its next step)."""
        self._decoder.forget(session_key)

    @property
    def cached_sessions(self) -> tuple[str, ...]:
        """The sessions whose KV cache (or its snapshot) is held; an ended session's is dropped by forget_session."""
        return self._decoder.cached_sessions

    def clear_cache(self) -> None:
        """Drop every cached prompt (benchmarks: force a cold prompt)."""
        self._decoder.clear()

    # -- LanguageModel ---------------------------------------------------------------------
    def stream_chat(self, request: ChatRequest, cancel: threading.Event | None = None) -> Iterator[LlmEvent]:
        cancel = cancel or threading.Event()
        yield from self._generate(request, cancel)

    def prefill(self, request: ChatRequest, cancel: threading.Event | None = None, *, complete: bool = False) -> int:
        """Evaluate the prompt of `request` into the session's KV cache without generating.

        The session engine calls this while the user is still speaking, with the words heard so
        far as the last user message: when the turn ends, only the tokens after the common
        prefix (the rest of the user's words and the assistant header) are left to evaluate.
        The prompt is cut after the last message's text (no end-of-turn, no assistant header)
        and 2 more tokens are left out, because the next word can re-tokenize the last ones.
        With `complete` (the words heard so far read as a finished sentence) the whole prompt is
        evaluated, assistant header included: if the user indeed stops there, answering needs no
        prompt evaluation at all (the last token is evaluated again to get its logits).
        Runs in the decoder's batches at the lowest priority (after every reply's prompt and first
        clause); stops when `cancel` is set or a reply of the same session starts. Returns the number of
        tokens evaluated.
        """
        cancel = cancel or threading.Event()
        if cancel.is_set():
            return 0
        tokens, text, _prefill, _names, _choice = self._prompt(request)
        if complete:
            tokens = tokens[:-1]
        else:
            last = request.messages[-1].get("content") if request.messages else None
            end = text.rfind(last) if isinstance(last, str) and last else -1
            if end <= 0:
                return 0
            tokens = self.tokenize_prompt(text[: end + len(last)])[:-2]
        job = self._decoder.submit(Job(request.session_key, tokens, generate=False, cancel=cancel))
        while not job.finished.wait(POLL_S):
            if cancel.is_set():
                job.stop.set()
                break
        done = max(0, job.evaluated - job.cached)
        log.debug("prefilled %d tokens (%d already cached) for session %s", done, job.cached, request.session_key)
        return done

    def _generate(self, request: ChatRequest, cancel: threading.Event) -> Iterator[LlmEvent]:
        started = time.monotonic()
        tokens, prefill, names, choice = self.build_prompt(request)
        if cancel.is_set():
            yield Finished(reason="cancelled", input_tokens=len(tokens))
            return
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
                yield from self._run_once(tokens, "", names, request, cancel, run, bans=self._answer_in_words())
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
                  cancel: threading.Event, run: _Run, bans: Sampling | None = None) -> Iterator[LlmEvent]:
        """Generate for one prompt, streaming parsed events; fills `run` with the outcome."""
        run.input_tokens = len(tokens)
        max_new = max(1, min(request.max_tokens or DEFAULT_MAX_TOKENS, self.n_ctx - len(tokens)))
        temperature = max(0.0, float(request.temperature if request.temperature is not None else 0.7))
        sampling = Sampling(temperature=temperature, ban=bans.ban if bans else (),
                            ban_first=bans.ban_first if bans else ())
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
        job = self._decoder.submit(Job(request.session_key, tokens, sampling=sampling, max_new=max_new,
                                       cancel=cancel))
        try:
            for token in job.tokens():
                if run.first_token_at is None:
                    run.first_token_at = time.monotonic()
                run.output_tokens += 1
                text = decoder.decode(self._model.detokenize([token], special=True))
                if text:
                    yield from deliver(parser.feed(text))
        finally:
            if not job.finished.is_set():
                job.stop.set()  # cancelled, or the consumer went away: the decoder drops it at its next step
        run.cached_tokens = job.cached
        run.reason = "cancelled" if cancel.is_set() else (job.reason or "cancelled")
        if run.reason != "cancelled":
            tail = decoder.decode(b"", final=True)
            if tail:
                yield from deliver(parser.feed(tail))
            yield from deliver(parser.finish())

    def warmup(self, system_prompt: str | None = None) -> None:
        """Evaluate the default system prompt once so its KV prefix is cached (1-token reply), and scan the
        vocabulary for the answer-in-words retry (~0.5 s) now rather than mid-reply."""
        request = ChatRequest(messages=[{"role": "system", "content": system_prompt or self.default_system_prompt},
                                        {"role": "user", "content": "Hi"}], max_tokens=1, temperature=0.0)
        for _ in self.stream_chat(request, threading.Event()):
            pass
        if self._tool_open_token is not None:
            self._answer_in_words()

    def close(self) -> None:
        decoder, self._decoder = self._decoder, None
        if decoder is not None:
            decoder.close()
            self._kv.close()
            self._model.close()
