"""The response object (spec §6.2) and `response.create` parameters (spec §3.1)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_serializer

from .. import ids
from ..limits import MAX_INSTRUCTIONS_CHARS, MAX_TOOLS
from .items import Item, ResponseInputItem, WireModel, item_to_wire
from .session import (AudioFormat, CustomVoice, MaxTokens, PcmFormat, PromptRef, Reasoning, RealtimeSessionConfig,
                      Tool, ToolChoice)

ResponseStatus = Literal["in_progress", "completed", "cancelled", "failed", "incomplete"]
FinalStatus = Literal["completed", "cancelled", "failed", "incomplete"]
StatusReason = Literal["turn_detected", "client_cancelled", "max_output_tokens", "content_filter"]
Modalities = Annotated[list[Literal["audio", "text"]], Field(min_length=1, max_length=1)]
Metadata = Annotated[
    dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]], Field(max_length=16)]


class ResponseError(WireModel):
    type: str
    code: str | None = None
    message: str | None = None  # 2026: what failed (e.g. which backend and how)


class ResponseStatusDetails(WireModel):
    type: FinalStatus
    reason: StatusReason | None = None
    error: ResponseError | None = None


# ---- usage ------------------------------------------------------------------------------------
class TextAudioTokens(WireModel):
    text_tokens: int = 0
    audio_tokens: int = 0


class CachedTokensDetails(TextAudioTokens):
    image_tokens: int = 0


class InputTokenDetails(CachedTokensDetails):
    cached_tokens: int = 0
    cached_tokens_details: CachedTokensDetails = Field(default_factory=CachedTokensDetails)


class ResponseUsage(WireModel):
    total_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    input_token_details: InputTokenDetails = Field(default_factory=InputTokenDetails)
    output_token_details: TextAudioTokens = Field(default_factory=TextAudioTokens)

    @classmethod
    def from_counts(
        cls, *, input_text: int = 0, input_audio: int = 0, input_image: int = 0, cached_text: int = 0,
        cached_audio: int = 0, cached_image: int = 0, output_text: int = 0, output_audio: int = 0,
    ) -> ResponseUsage:
        """Build usage with every total derived from the per-modality counts."""
        cached = CachedTokensDetails(text_tokens=cached_text, audio_tokens=cached_audio, image_tokens=cached_image)
        inp = input_text + input_audio + input_image
        out = output_text + output_audio
        return cls(
            total_tokens=inp + out, input_tokens=inp, output_tokens=out,
            input_token_details=InputTokenDetails(
                text_tokens=input_text, audio_tokens=input_audio, image_tokens=input_image,
                cached_tokens=cached_text + cached_audio + cached_image, cached_tokens_details=cached),
            output_token_details=TextAudioTokens(text_tokens=output_text, audio_tokens=output_audio))


# ---- response object --------------------------------------------------------------------------
class ResponseAudioOutput(WireModel):
    format: AudioFormat = Field(default_factory=PcmFormat)
    voice: str | CustomVoice = "alloy"


class ResponseAudio(WireModel):
    output: ResponseAudioOutput = Field(default_factory=ResponseAudioOutput)


class RealtimeResponse(WireModel):
    """`response.created` / `response.done` payload; `output` is rendered without audio bytes."""

    object: Literal["realtime.response"] = "realtime.response"
    id: str = Field(default_factory=ids.response_id)
    status: ResponseStatus = "in_progress"
    status_details: ResponseStatusDetails | None = None
    output: list[Item] = Field(default_factory=list)
    conversation_id: str | None = None
    output_modalities: Modalities = Field(default_factory=lambda: ["audio"])
    max_output_tokens: MaxTokens = "inf"
    audio: ResponseAudio = Field(default_factory=ResponseAudio)
    usage: ResponseUsage | None = None
    metadata: dict[str, str] | None = None

    @field_serializer("output")
    def _output_without_audio(self, output: list[Any]) -> list[dict[str, Any]]:
        return [item_to_wire(item) for item in output]

    @classmethod
    def from_params(
        cls, params: ResponseCreateParams | None, session: RealtimeSessionConfig, *, conversation_id: str | None
    ) -> RealtimeResponse:
        """A new in-progress response: `params` override the session's defaults.

        `conversation_id` is the default conversation's id; it is used for `conversation`
        absent/"auto", dropped for "none" (out-of-band), and replaced by any other string.
        """
        p = params or ResponseCreateParams()
        out = session.audio.output
        audio_params = p.audio.output if p.audio and p.audio.output else None
        conv = p.conversation
        return cls(
            conversation_id=conversation_id if conv in (None, "auto") else (None if conv == "none" else conv),
            output_modalities=list(p.output_modalities or session.output_modalities),
            max_output_tokens=session.max_output_tokens if p.max_output_tokens is None else p.max_output_tokens,
            audio=ResponseAudio(output=ResponseAudioOutput(
                format=(audio_params and audio_params.format) or out.format,
                voice=(audio_params and audio_params.voice) or out.voice)),
            metadata=p.metadata)

    def finish(self, status: FinalStatus, *, reason: StatusReason | None = None,
               error: ResponseError | None = None, usage: ResponseUsage | None = None) -> RealtimeResponse:
        """Set the final status (and `status_details`, which OpenAI sends on every final status)."""
        self.status = status
        self.status_details = ResponseStatusDetails(
            type=status, reason=reason, error=error)
        if usage is not None:
            self.usage = usage
        return self


# ---- response.create parameters ----------------------------------------------------------------
class ResponseAudioOutputParams(WireModel):
    format: AudioFormat | None = None
    voice: str | CustomVoice | None = None


class ResponseAudioParams(WireModel):
    output: ResponseAudioOutputParams | None = None


class ResponseCreateParams(WireModel):
    """`response.create.response`: every field optional; absent/null means "use the session's"."""

    output_modalities: Modalities | None = None
    instructions: str | None = Field(None, max_length=MAX_INSTRUCTIONS_CHARS)
    audio: ResponseAudioParams | None = None
    tools: list[Tool] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: ToolChoice | None = None
    max_output_tokens: MaxTokens | None = None
    conversation: str | None = Field(None, min_length=1)  # "auto" | "none" | a conversation id
    metadata: Metadata | None = None
    input: list[ResponseInputItem] | None = None
    prompt: PromptRef | None = None
    parallel_tool_calls: bool | None = None  # 2026 (as the session's)
    reasoning: Reasoning | None = None  # 2026 (as the session's)

    @property
    def out_of_band(self) -> bool:
        """True for `conversation: "none"`: nothing is written to the default conversation."""
        return self.conversation == "none"
