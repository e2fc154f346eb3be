"""The narrow interfaces between the session engine and model backends.

All methods here are *blocking* and are called from worker threads by the session engine
(the media event loop never waits on a model). Audio crossing these interfaces is numpy
`float32` mono in [-1, 1] at the rate each interface names. Implementations:
`engines/local/` (embedded, offline, CPU) and `engines/openai_compat/` (HTTP to a user's servers).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


# ---- failures -------------------------------------------------------------------------------
class BackendError(RuntimeError):
    """A model backend failed (refused, errored, broke off). The message says which one and what to do;
    the session engine fails the response with it and goes on."""


class BackendTimeout(BackendError):
    """A model backend accepted a request and then sent nothing in time (a hang)."""


# ---- voice activity ------------------------------------------------------------------------
class VadStream(Protocol):
    """Per-session VAD state. Feed consecutive frames of `frame_samples` at `sample_rate`."""

    def probability(self, frame: np.ndarray) -> float: ...

    def reset(self) -> None: ...


@runtime_checkable
class VoiceActivityDetector(Protocol):
    sample_rate: int  # 16000
    frame_samples: int  # 512 (32 ms)

    def new_stream(self) -> VadStream: ...


# ---- end of turn (semantic_vad) ---------------------------------------------------------------
@runtime_checkable
class EndOfTurnModel(Protocol):
    """Judges from the audio of a turn so far whether the speaker has finished (an optional stack member:
    semantic_vad uses it; without one semantic_vad is a silence timer)."""

    sample_rate: int  # 16000
    window_s: float  # how much of the latest audio it looks at

    def completion(self, audio: np.ndarray) -> float:
        """P(the turn is complete), from the turn's audio so far (float32 mono at `sample_rate`)."""
        ...


# ---- input noise suppression (audio.input.noise_reduction) ----------------------------------------
class NoiseStream(Protocol):
    """One session's suppressor state. Used by one thread at a time."""

    def process(self, audio: np.ndarray) -> np.ndarray:
        """Consecutive float32 samples at the suppressor's rate in; the processed audio so far out (about
        as many samples, delayed; what does not fill a whole frame waits for the next call)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class NoiseSuppressor(Protocol):
    """Removes background noise from a session's input (an optional stack member)."""

    sample_rate: int  # of the audio its streams take and give (24000: canonical)

    def new_stream(self, *, attenuation_db: float, post_filter: float = 0.0) -> NoiseStream | None:
        """A stream attenuating noise by at most `attenuation_db`; None when at capacity (the session then
        runs without noise reduction). Blocking: called from a worker thread."""
        ...

    def account(self, audio_s: float, cpu_s: float, *, bypassed_s: float = 0.0) -> None:
        """Count audio processed (or passed through unprocessed because the stage fell behind)."""
        ...


# ---- speech to text -------------------------------------------------------------------------
@dataclass
class Transcript:
    text: str
    language: str | None = None
    audio_seconds: float = 0.0
    input_tokens: int = 0  # audio tokens billed (we report audio_seconds * 10, documented)
    output_tokens: int = 0  # text tokens produced
    logprobs: list[dict[str, Any]] | None = None  # [{"token", "logprob", "bytes"}] when asked for and known


ANY_LANGUAGE = "auto"
"""`SpeechToText.transcribe(language=ANY_LANGUAGE)`: whatever language is spoken, detected (a translation
session's input); an English-only model hears English."""


@runtime_checkable
class SpeechToText(Protocol):
    sample_rate: int  # 16000

    def transcribe(self, audio: np.ndarray, *, language: str | None = None, prompt: str | None = None,
                   logprobs: bool = False, languages: list[str] | None = None) -> Transcript:
        """`logprobs`: also return per-token log probabilities (OpenAI's
        `include: ["item.input_audio_transcription.logprobs"]`), where the backend can. `languages`
        (passed only when a session names candidates): detect the language among these only."""
        ...


# ---- language model -------------------------------------------------------------------------
@dataclass
class ChatRequest:
    """An OpenAI chat-completions style request.

    `messages`: [{"role": "system"|"user"|"assistant"|"tool", "content": str | [parts],
    "tool_calls": [...], "tool_call_id": str}], parts as in chat completions
    ({"type": "text", "text"}, {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,..."}}).
    `tools`: chat-completions tools ([{"type": "function", "function": {name, description, parameters}}]).
    `tool_choice`: "auto" | "none" | "required" | {"type": "function", "function": {"name": ...}}.
    """

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = "auto"
    max_tokens: int | None = None
    temperature: float = 0.7
    session_key: str | None = None  # lets a backend keep per-session prompt caches warm
    # 2026 Realtime fields, for a backend that supports them (a remote reasoning model); None: its default
    reasoning_effort: str | None = None
    parallel_tool_calls: bool | None = None


@dataclass
class TextDelta:
    text: str


@dataclass
class ToolCallDelta:
    index: int
    call_id: str | None = None
    name: str | None = None
    arguments: str = ""  # a fragment of the JSON arguments


@dataclass
class Finished:
    reason: str  # "stop" | "length" | "tool_calls" | "cancelled"
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    image_tokens: int = 0


LlmEvent = TextDelta | ToolCallDelta | Finished


@runtime_checkable
class LanguageModel(Protocol):
    supports_images: bool

    def stream_chat(self, request: ChatRequest, cancel: threading.Event) -> Iterator[LlmEvent]:
        """Yield deltas; the last event is always `Finished`. Stop promptly when `cancel` is set."""
        ...


# ---- text to speech -------------------------------------------------------------------------
@runtime_checkable
class TextToSpeech(Protocol):
    sample_rate: int  # rate of the chunks it yields

    def synthesize(self, text: str, *, voice: str, speed: float, cancel: threading.Event) -> Iterator[np.ndarray]:
        """Yield float32 mono chunks for `text` (one sentence or clause) as soon as they exist."""
        ...


# ---- capabilities (what a backend may offer beyond its stage's interface) ---------------------
@runtime_checkable
class Warmable(Protocol):
    """Runs once at load, so the first real turn does not pay for lazy initialisation."""

    def warmup(self) -> None: ...


@runtime_checkable
class SessionAware(Protocol):
    """Keeps per-session state (a local LLM's prompt cache, keyed by `ChatRequest.session_key`) that must
    be dropped when the session ends. Must not block on a busy model."""

    def forget_session(self, session_key: str) -> None: ...


@runtime_checkable
class Prefilling(Protocol):
    """Can evaluate a request's prompt ahead of time (while the user still speaks); returns the number
    of prompt tokens now cached. `complete`: the request is final (no more words will come)."""

    def prefill(self, request: ChatRequest, cancel: threading.Event | None = None, *,
                complete: bool = False) -> int: ...


@runtime_checkable
class VoiceCatalog(Protocol):
    """Names the voices a TTS can speak for a session's `audio.output.voice: {"id": ...}` (a TTS without a
    catalog, e.g. a remote server, is given the id and decides itself)."""

    def voice_ids(self) -> list[str]: ...


@runtime_checkable
class Loopback(Protocol):
    """A stack that answers nothing and plays the caller's audio back after `loopback_delay_s`
    (engines/echo.py): its sessions have no turns, transcriptions or responses."""

    loopback_delay_s: float


@runtime_checkable
class SpeaksLanguages(Protocol):
    """A voice that speaks only these languages (ISO 639-1 codes: Piper's en_US voice has ("en",)). A
    TextToSpeech without it (a remote server) is asked for any language (translation/voices.py)."""

    languages: tuple[str, ...]


def concurrency(engine: Any) -> int:
    """How many requests an engine takes at once: `max_concurrency` where it declares one (a remote
    server batches), else 1 (an in-process model computes one request at a time)."""
    return max(1, int(getattr(engine, "max_concurrency", 1)))


# ---- the bundle the session engine uses -----------------------------------------------------
@dataclass
class ModelStack:
    vad: VoiceActivityDetector
    stt: SpeechToText
    llm: LanguageModel
    tts: TextToSpeech
    description: dict[str, str] = field(default_factory=dict)  # stage -> human-readable backend
    # stages served by a remote server: role -> engines.remote.RemoteBackend (connects, probes)
    remote: dict[str, Any] = field(default_factory=dict)
    # more voices, for languages `tts` does not speak (each `SpeaksLanguages`): translation sessions use them
    voices: list[TextToSpeech] = field(default_factory=list)
    turn: EndOfTurnModel | None = None  # optional: semantic_vad's end-of-turn model
    denoise: NoiseSuppressor | None = None  # optional: audio.input.noise_reduction

    def close(self) -> None:
        for part in (self.vad, self.stt, self.llm, self.tts, *self.voices, self.turn, self.denoise):
            closer = getattr(part, "close", None)
            if callable(closer):
                closer()
