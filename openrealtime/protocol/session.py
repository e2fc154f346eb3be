"""Session configuration objects (GA shape, spec §5), defined once.

`RealtimeSessionConfig` is the full effective configuration with every default filled.
`apply_session_update()` implements the partial-update semantics of `session.update`:
only fields present in the update change; `null` clears nullable fields; a change of
discriminator (`turn_detection.type`, `format.type`) replaces the sub-object.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..limits import MAX_INSTRUCTIONS_CHARS, MAX_TOOLS
from .errors import ProtocolError, pydantic_error_to_protocol

DEFAULT_MODEL = "gpt-realtime"
DEFAULT_INSTRUCTIONS = (
    "You are a helpful, friendly voice assistant running on a self-hosted server. "
    "Answer in one or two short spoken sentences. Do not use markdown, lists or emoji."
)
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- audio formats ---------------------------------------------------------------------------
class PcmFormat(_Strict):
    type: Literal["audio/pcm"] = "audio/pcm"
    rate: Literal[24000] = 24000


class PcmuFormat(_Strict):
    type: Literal["audio/pcmu"] = "audio/pcmu"


class PcmaFormat(_Strict):
    type: Literal["audio/pcma"] = "audio/pcma"


AudioFormat = Annotated[Union[PcmFormat, PcmuFormat, PcmaFormat], Field(discriminator="type")]


# ---- input ------------------------------------------------------------------------------------
Effort = Literal["minimal", "low", "medium", "high", "xhigh"]
LanguageCode = Annotated[str, Field(min_length=2, max_length=16, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$")]


class TranscriptionConfig(_Strict):
    model: str | None = "whisper-1"  # any name: every transcription model is the server's one speech-to-text
    language: str | None = None
    # 2026: candidate languages (detection is limited to them), words and phrases to listen for (given to
    # Whisper as its prompt's keyword list), and how long to wait for accuracy (no effect here: see README)
    languages: list[LanguageCode] | None = Field(None, max_length=100)
    keywords: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(None, max_length=500)
    delay: Effort | None = None
    prompt: str | None = None


class NoiseReduction(_Strict):
    type: Literal["near_field", "far_field"]
    strength: float = Field(1.0, ge=0.0)  # 2026: more is stronger; 1 when first enabled


class ServerVad(_Strict):
    type: Literal["server_vad"] = "server_vad"
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    prefix_padding_ms: int = Field(300, ge=0, le=5000)
    silence_duration_ms: int = Field(500, ge=0, le=10000)
    idle_timeout_ms: int | None = Field(None, ge=5000, le=30000)
    create_response: bool = True
    interrupt_response: bool = True


class SemanticVad(_Strict):
    type: Literal["semantic_vad"] = "semantic_vad"
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"
    create_response: bool = True
    interrupt_response: bool = True


TurnDetection = Annotated[Union[ServerVad, SemanticVad], Field(discriminator="type")]


class AudioInput(_Strict):
    format: AudioFormat = Field(default_factory=PcmFormat)
    transcription: TranscriptionConfig | None = None
    noise_reduction: NoiseReduction | None = None
    turn_detection: TurnDetection | None = Field(default_factory=ServerVad)


class CustomVoice(_Strict):
    id: str


class AudioOutput(_Strict):
    format: AudioFormat = Field(default_factory=PcmFormat)
    voice: str | CustomVoice = "alloy"
    speed: float = Field(1.0, ge=0.25, le=1.5)


class AudioConfig(_Strict):
    input: AudioInput = Field(default_factory=AudioInput)
    output: AudioOutput = Field(default_factory=AudioOutput)


# ---- tools ------------------------------------------------------------------------------------
class FunctionTool(_Strict):
    type: Literal["function"] = "function"
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-\.]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None


class McpTool(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["mcp"] = "mcp"
    server_label: str
    server_url: str | None = None
    connector_id: str | None = None
    tunnel_id: str | None = None  # 2026: a Secure MCP Tunnel (OpenAI's; refused here: session/mcp_tools.py)
    allowed_callers: list[Literal["direct", "programmatic"]] | None = None  # 2026
    defer_loading: bool | None = None  # 2026: found by tool search (refused here when true)
    authorization: str | None = None
    headers: dict[str, str] | None = None
    allowed_tools: Any = None
    require_approval: Any = None
    server_description: str | None = None


Tool = Annotated[Union[FunctionTool, McpTool], Field(discriminator="type")]


class ToolChoiceFunction(_Strict):
    type: Literal["function"] = "function"
    name: str


class ToolChoiceMcp(_Strict):
    type: Literal["mcp"] = "mcp"
    server_label: str
    name: str | None = None


ToolChoice = Union[Literal["none", "auto", "required"], ToolChoiceFunction, ToolChoiceMcp]
MaxTokens = Union[Annotated[int, Field(ge=1, le=4096)], Literal["inf"]]


class TracingConfig(_Strict):
    workflow_name: str | None = None
    group_id: str | None = None
    metadata: dict[str, Any] | None = None


class TokenLimits(_Strict):
    # the conversation after the instructions (tools included) is cut when it exceeds this many tokens
    post_instructions: int | None = Field(default=None, ge=0)


class RetentionRatioTruncation(_Strict):
    type: Literal["retention_ratio"] = "retention_ratio"
    retention_ratio: float = Field(ge=0.0, le=1.0)
    token_limits: TokenLimits | None = None


class PromptRef(_Strict):
    id: str
    version: str | None = None
    variables: dict[str, Any] | None = None


IncludeOption = Literal["item.input_audio_transcription.logprobs"]


class Reasoning(_Strict):
    """2026: reasoning depth for reasoning models (passed to a remote model; no effect on the local one)."""

    effort: Effort | None = None


class RealtimeSessionConfig(_Strict):
    """A realtime (speech-to-speech) session, every default filled."""

    type: Literal["realtime"] = "realtime"
    model: str = DEFAULT_MODEL
    instructions: str = Field(DEFAULT_INSTRUCTIONS, max_length=MAX_INSTRUCTIONS_CHARS)
    output_modalities: list[Literal["audio", "text"]] = Field(default_factory=lambda: ["audio"], min_length=1, max_length=1)
    audio: AudioConfig = Field(default_factory=AudioConfig)
    tools: list[Tool] = Field(default_factory=list, max_length=MAX_TOOLS)
    tool_choice: ToolChoice = "auto"
    max_output_tokens: MaxTokens = "inf"
    tracing: Literal["auto"] | TracingConfig | None = None
    truncation: Literal["auto", "disabled"] | RetentionRatioTruncation = "auto"
    prompt: PromptRef | None = None
    include: list[IncludeOption] | None = None
    # 2026 (reasoning models): several tool calls in one response (None: the model's default, allowed)
    parallel_tool_calls: bool | None = None
    reasoning: Reasoning | None = None


class TranscriptionAudioInput(_Strict):
    format: AudioFormat = Field(default_factory=PcmFormat)
    transcription: TranscriptionConfig | None = Field(default_factory=TranscriptionConfig)
    noise_reduction: NoiseReduction | None = None
    turn_detection: TurnDetection | None = Field(default_factory=ServerVad)


class TranscriptionAudio(_Strict):
    input: TranscriptionAudioInput = Field(default_factory=TranscriptionAudioInput)


class TranscriptionSessionConfig(_Strict):
    """A transcription-only session: no responses are generated."""

    type: Literal["transcription"] = "transcription"
    audio: TranscriptionAudio = Field(default_factory=TranscriptionAudio)
    include: list[IncludeOption] | None = None


SessionConfig = Annotated[Union[RealtimeSessionConfig, TranscriptionSessionConfig], Field(discriminator="type")]


class RealtimeSessionObject(RealtimeSessionConfig):
    """What `session.created` / `session.updated` carry."""

    object: Literal["realtime.session"] = "realtime.session"
    id: str
    expires_at: int


class TranscriptionSessionObject(TranscriptionSessionConfig):
    object: Literal["realtime.transcription_session"] = "realtime.transcription_session"
    id: str
    expires_at: int


# ---- construction and partial update ---------------------------------------------------------
_CONFIG_TYPES: dict[str, type[BaseModel]] = {
    "realtime": RealtimeSessionConfig,
    "transcription": TranscriptionSessionConfig,
}
_READ_ONLY = ("object", "id", "expires_at", "client_secret")


def _merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        if "type" in patch and "type" in base and patch["type"] != base["type"]:
            return copy.deepcopy(patch)
        out = dict(base)
        for key, value in patch.items():
            out[key] = _merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(patch)


def parse_session_config(data: Any, *, param: str = "session") -> RealtimeSessionConfig | TranscriptionSessionConfig:
    """Validate a complete session request (`session` form part, client secret body)."""
    if data is None:
        return RealtimeSessionConfig()
    if not isinstance(data, dict):
        raise ProtocolError(f"Invalid type for '{param}': expected an object.", code="invalid_type", param=param)
    data = {k: v for k, v in data.items() if k not in _READ_ONLY}
    kind = data.get("type", "realtime")
    model = _CONFIG_TYPES.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ProtocolError(
            f"Invalid value: '{kind}'. Supported values are: 'realtime' and 'transcription'.",
            code="invalid_value", param=f"{param}.type")
    try:
        return model.model_validate(data)  # type: ignore[return-value]
    except ValidationError as exc:
        raise pydantic_error_to_protocol(exc, prefix=param, data=data) from None


def apply_session_update(
    current: RealtimeSessionConfig | TranscriptionSessionConfig, update: Any, *, voice_locked: bool = False
) -> RealtimeSessionConfig | TranscriptionSessionConfig:
    """Return the new effective config after a `session.update`; raises ProtocolError."""
    if not isinstance(update, dict):
        raise ProtocolError("Invalid type for 'session': expected an object.", code="invalid_type", param="session")
    update = {k: v for k, v in update.items() if k not in _READ_ONLY}
    if "type" not in update:
        raise ProtocolError("Missing required parameter: 'session.type'.", code="missing_required_parameter",
                            param="session.type")
    if update["type"] != current.type:
        raise ProtocolError(
            f"Cannot change the session type from '{current.type}' to '{update['type']}'.",
            code="invalid_value", param="session.type")
    # `model` is accepted (and becomes the session's label): the Agents SDK sends its own default model
    # in every session.update, whatever the connection URL said; every name maps onto the same local stack.
    if voice_locked:
        audio = update.get("audio")
        output = audio.get("output") if isinstance(audio, dict) else None  # other types: validation reports
        new_voice = output.get("voice") if isinstance(output, dict) else None
        old_voice = current.audio.output.voice if isinstance(current, RealtimeSessionConfig) else None
        if new_voice is not None and new_voice != (old_voice.model_dump() if isinstance(old_voice, BaseModel) else old_voice):
            raise ProtocolError("Cannot update a session's voice after audio has been output.",
                                code="invalid_value", param="session.audio.output.voice")
    merged = _merge_session(current.model_dump(mode="json"), update)
    return parse_session_config(merged)


# MCP credentials are write-only: a session object shows that they are set, never their values (the
# `ek_` holder in a browser must not read the token its server minted the session with). Sent back
# unchanged in a session.update (or a call's `session` over a client secret), a redacted value keeps the
# stored one of the tool with the same server_label.
REDACTED = "[redacted]"


def _redact_tool(tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type") != "mcp":
        return tool
    out = dict(tool)
    if out.get("authorization"):
        out["authorization"] = REDACTED
    if isinstance(out.get("headers"), dict):
        out["headers"] = {name: REDACTED for name in out["headers"]}
    return out


def _restore_redacted(tools: Any, stored: Any) -> Any:
    """`tools` (a request's list) with each REDACTED credential replaced by the stored tool's value."""
    if not isinstance(tools, list) or not isinstance(stored, list):
        return tools
    by_label = {t.get("server_label"): t for t in stored if isinstance(t, dict) and t.get("type") == "mcp"}
    out = []
    for tool in tools:
        old = by_label.get(tool.get("server_label")) if isinstance(tool, dict) and tool.get("type") == "mcp" else None
        if old is not None:
            tool = dict(tool)
            if tool.get("authorization") == REDACTED:
                tool["authorization"] = old.get("authorization")
            if isinstance(tool.get("headers"), dict):
                kept = old.get("headers") or {}
                tool["headers"] = {k: kept.get(k, v) if v == REDACTED else v for k, v in tool["headers"].items()}
        out.append(tool)
    return out


def _merge_session(base: dict[str, Any], request: dict[str, Any]) -> Any:
    merged = _merge(base, request)
    if isinstance(merged, dict) and "tools" in request:
        merged["tools"] = _restore_redacted(merged.get("tools"), base.get("tools"))
    return merged


def session_object(
    config: RealtimeSessionConfig | TranscriptionSessionConfig, *, id: str, expires_at: int
) -> RealtimeSessionObject | TranscriptionSessionObject:
    """What session.created / session.updated and a client secret show (MCP credentials redacted)."""
    data = config.model_dump()
    if isinstance(config, RealtimeSessionConfig):
        data["tools"] = [_redact_tool(t) for t in data.get("tools") or []]
        return RealtimeSessionObject(**data, id=id, expires_at=expires_at)
    return TranscriptionSessionObject(**data, id=id, expires_at=expires_at)


def override_session(
    base: RealtimeSessionConfig | TranscriptionSessionConfig, request: Any, *, param: str = "session"
) -> RealtimeSessionConfig | TranscriptionSessionConfig:
    """A stored session (client secret) overridden by a connection's own `session` request."""
    if request is None:
        return base
    if not isinstance(request, dict):
        raise ProtocolError(f"Invalid type for '{param}': expected an object.", code="invalid_type", param=param)
    return parse_session_config(_merge_session(base.model_dump(mode="json"), request), param=param)
