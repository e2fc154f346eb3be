"""Every GA server event (spec §4), discriminated by `type`, plus serialization helpers.

Serialization keeps `null` for optional fields (as OpenAI does), except a few keys OpenAI omits
when empty (`logprobs` on transcription events, unset keys of a content `part`). Items are
rendered without audio bytes everywhere except `conversation.item.retrieved`.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, field_serializer, model_serializer

from .. import ids
from .client_events import ClientEventBase
from .errors import ErrorDetail
from .items import Item, WireModel, item_to_wire
from .responses import RealtimeResponse, TextAudioTokens
from .session import RealtimeSessionObject, TranscriptionSessionObject

SessionObject = Annotated[Union[RealtimeSessionObject, TranscriptionSessionObject], Field(discriminator="type")]


class _OmitNone(BaseModel):
    """Drops the keys named in `_omit_none` from the output when their value is None."""

    _omit_none: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _drop_nones(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        for key in self._omit_none:
            if key in data and data[key] is None:
                del data[key]
        return data


class ServerEventBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    event_id: str = Field(default_factory=ids.event_id)


# ---- shared field groups ----------------------------------------------------------------------
class _ItemIdEvent(ServerEventBase):
    item_id: str


class _ResponseEvent(ServerEventBase):
    response_id: str


class _ResponseItemEvent(_ResponseEvent):
    item_id: str
    output_index: int


class _ResponseContentEvent(_ResponseItemEvent):
    content_index: int


class _TranscriptionEvent(_ItemIdEvent):
    content_index: int = 0


class _McpCallEvent(_ItemIdEvent):
    output_index: int


class _ItemWithoutAudio(BaseModel):
    """Mixin: renders the `item` field without audio bytes."""

    @field_serializer("item", check_fields=False)
    def _item_without_audio(self, item: Any) -> dict[str, Any]:
        return item_to_wire(item)


class _ConversationItemEvent(_ItemWithoutAudio, ServerEventBase):
    previous_item_id: str | None = None
    item: Item


class _OutputItemEvent(_ItemWithoutAudio, _ResponseEvent):
    output_index: int
    item: Item


# ---- nested payloads --------------------------------------------------------------------------
class Conversation(WireModel):
    id: str = Field(default_factory=ids.conversation_id)
    object: Literal["realtime.conversation"] = "realtime.conversation"


class RateLimit(WireModel):
    name: Literal["requests", "tokens"]
    limit: int
    remaining: int
    reset_seconds: float


class LogProb(WireModel):
    token: str
    bytes: list[int]
    logprob: float


class TranscriptionTokenUsage(WireModel):
    type: Literal["tokens"] = "tokens"
    total_tokens: int = 0
    input_tokens: int = 0
    input_token_details: TextAudioTokens = Field(default_factory=TextAudioTokens)
    output_tokens: int = 0


class TranscriptionDurationUsage(WireModel):
    type: Literal["duration"] = "duration"
    seconds: float


TranscriptionUsage = Annotated[
    Union[TranscriptionTokenUsage, TranscriptionDurationUsage], Field(discriminator="type")]


class TranscriptionError(WireModel):
    type: str = "transcription_error"
    code: str | None = None
    message: str
    param: str | None = None


class ResponsePart(_OmitNone, WireModel):
    """`response.content_part.*` part: `{type:"text", text}` or `{type:"audio", transcript}`."""

    _omit_none = ("text", "audio", "transcript")
    type: Literal["text", "audio"]
    text: str | None = None
    audio: str | None = None
    transcript: str | None = None


# ---- session / errors / limits ----------------------------------------------------------------
class ErrorEvent(ServerEventBase):
    type: Literal["error"] = "error"
    error: ErrorDetail  # build from a ProtocolError with parse.error_event()


class SessionCreatedEvent(ServerEventBase):
    type: Literal["session.created"] = "session.created"
    session: SessionObject


class SessionUpdatedEvent(ServerEventBase):
    type: Literal["session.updated"] = "session.updated"
    session: SessionObject


class ConversationCreatedEvent(ServerEventBase):
    type: Literal["conversation.created"] = "conversation.created"
    conversation: Conversation = Field(default_factory=Conversation)


class RateLimitsUpdatedEvent(ServerEventBase):
    type: Literal["rate_limits.updated"] = "rate_limits.updated"
    rate_limits: list[RateLimit]


# ---- input audio buffer -----------------------------------------------------------------------
class InputAudioBufferSpeechStartedEvent(ServerEventBase):
    type: Literal["input_audio_buffer.speech_started"] = "input_audio_buffer.speech_started"
    audio_start_ms: int
    item_id: str


class InputAudioBufferSpeechStoppedEvent(ServerEventBase):
    type: Literal["input_audio_buffer.speech_stopped"] = "input_audio_buffer.speech_stopped"
    audio_end_ms: int
    item_id: str


class InputAudioBufferCommittedEvent(ServerEventBase):
    type: Literal["input_audio_buffer.committed"] = "input_audio_buffer.committed"
    previous_item_id: str | None = None
    item_id: str


class InputAudioBufferClearedEvent(ServerEventBase):
    type: Literal["input_audio_buffer.cleared"] = "input_audio_buffer.cleared"


class InputAudioBufferTimeoutTriggeredEvent(ServerEventBase):
    type: Literal["input_audio_buffer.timeout_triggered"] = "input_audio_buffer.timeout_triggered"
    audio_start_ms: int
    audio_end_ms: int
    item_id: str


class InputAudioBufferDtmfEventReceivedEvent(ServerEventBase):
    type: Literal["input_audio_buffer.dtmf_event_received"] = "input_audio_buffer.dtmf_event_received"
    event: str
    received_at: int


# ---- output audio buffer (WebRTC/SIP) ---------------------------------------------------------
class OutputAudioBufferStartedEvent(_ResponseEvent):
    type: Literal["output_audio_buffer.started"] = "output_audio_buffer.started"


class OutputAudioBufferStoppedEvent(_ResponseEvent):
    type: Literal["output_audio_buffer.stopped"] = "output_audio_buffer.stopped"


class OutputAudioBufferClearedEvent(_ResponseEvent):
    type: Literal["output_audio_buffer.cleared"] = "output_audio_buffer.cleared"


# ---- conversation items -----------------------------------------------------------------------
class ConversationItemAddedEvent(_ConversationItemEvent):
    type: Literal["conversation.item.added"] = "conversation.item.added"


class ConversationItemDoneEvent(_ConversationItemEvent):
    type: Literal["conversation.item.done"] = "conversation.item.done"


class ConversationItemCreatedEvent(_ConversationItemEvent):
    type: Literal["conversation.item.created"] = "conversation.item.created"


class ConversationItemRetrievedEvent(ServerEventBase):
    """The only event whose item carries audio bytes."""

    type: Literal["conversation.item.retrieved"] = "conversation.item.retrieved"
    item: Item

    @field_serializer("item")
    def _item_with_audio(self, item: Any) -> dict[str, Any]:
        return item_to_wire(item, include_audio=True)


class ConversationItemTruncatedEvent(_ItemIdEvent):
    type: Literal["conversation.item.truncated"] = "conversation.item.truncated"
    content_index: int
    audio_end_ms: int


class ConversationItemDeletedEvent(_ItemIdEvent):
    type: Literal["conversation.item.deleted"] = "conversation.item.deleted"


class ConversationItemInputAudioTranscriptionDeltaEvent(_OmitNone, _TranscriptionEvent):
    _omit_none = ("logprobs",)
    type: Literal["conversation.item.input_audio_transcription.delta"] = (
        "conversation.item.input_audio_transcription.delta")
    delta: str
    logprobs: list[LogProb] | None = None


class DetectedLanguage(WireModel):
    code: str  # ISO-639-1


class ConversationItemInputAudioTranscriptionCompletedEvent(_OmitNone, _TranscriptionEvent):
    _omit_none = ("logprobs", "languages")
    type: Literal["conversation.item.input_audio_transcription.completed"] = (
        "conversation.item.input_audio_transcription.completed")
    transcript: str
    logprobs: list[LogProb] | None = None
    usage: TranscriptionUsage
    # 2026: the language heard, when the session's transcription names candidate `languages` ([]: unknown)
    languages: list[DetectedLanguage] | None = None


class ConversationItemInputAudioTranscriptionFailedEvent(_TranscriptionEvent):
    type: Literal["conversation.item.input_audio_transcription.failed"] = (
        "conversation.item.input_audio_transcription.failed")
    error: TranscriptionError


class ConversationItemInputAudioTranscriptionSegmentEvent(_TranscriptionEvent):
    type: Literal["conversation.item.input_audio_transcription.segment"] = (
        "conversation.item.input_audio_transcription.segment")
    id: str
    text: str
    speaker: str
    start: float
    end: float


# ---- responses --------------------------------------------------------------------------------
class ResponseCreatedEvent(ServerEventBase):
    type: Literal["response.created"] = "response.created"
    response: RealtimeResponse


class ResponseDoneEvent(ServerEventBase):
    type: Literal["response.done"] = "response.done"
    response: RealtimeResponse


class ResponseOutputItemAddedEvent(_OutputItemEvent):
    type: Literal["response.output_item.added"] = "response.output_item.added"


class ResponseOutputItemDoneEvent(_OutputItemEvent):
    type: Literal["response.output_item.done"] = "response.output_item.done"


class ResponseContentPartAddedEvent(_ResponseContentEvent):
    type: Literal["response.content_part.added"] = "response.content_part.added"
    part: ResponsePart


class ResponseContentPartDoneEvent(_ResponseContentEvent):
    type: Literal["response.content_part.done"] = "response.content_part.done"
    part: ResponsePart


class ResponseOutputTextDeltaEvent(_ResponseContentEvent):
    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    delta: str


class ResponseOutputTextDoneEvent(_ResponseContentEvent):
    type: Literal["response.output_text.done"] = "response.output_text.done"
    text: str


class ResponseOutputAudioDeltaEvent(_ResponseContentEvent):
    type: Literal["response.output_audio.delta"] = "response.output_audio.delta"
    delta: str  # base64 audio in the session's output format


class ResponseOutputAudioDoneEvent(_ResponseContentEvent):
    type: Literal["response.output_audio.done"] = "response.output_audio.done"


class ResponseOutputAudioTranscriptDeltaEvent(_ResponseContentEvent):
    type: Literal["response.output_audio_transcript.delta"] = "response.output_audio_transcript.delta"
    delta: str


class ResponseOutputAudioTranscriptDoneEvent(_ResponseContentEvent):
    type: Literal["response.output_audio_transcript.done"] = "response.output_audio_transcript.done"
    transcript: str


class ResponseFunctionCallArgumentsDeltaEvent(_ResponseItemEvent):
    type: Literal["response.function_call_arguments.delta"] = "response.function_call_arguments.delta"
    call_id: str
    delta: str


class ResponseFunctionCallArgumentsDoneEvent(_ResponseItemEvent):
    type: Literal["response.function_call_arguments.done"] = "response.function_call_arguments.done"
    call_id: str
    name: str
    arguments: str


class ResponseMcpCallArgumentsDeltaEvent(_ResponseItemEvent):
    type: Literal["response.mcp_call_arguments.delta"] = "response.mcp_call_arguments.delta"
    delta: str
    obfuscation: str | None = None


class ResponseMcpCallArgumentsDoneEvent(_ResponseItemEvent):
    type: Literal["response.mcp_call_arguments.done"] = "response.mcp_call_arguments.done"
    arguments: str


class ResponseMcpCallInProgressEvent(_McpCallEvent):
    type: Literal["response.mcp_call.in_progress"] = "response.mcp_call.in_progress"


class ResponseMcpCallCompletedEvent(_McpCallEvent):
    type: Literal["response.mcp_call.completed"] = "response.mcp_call.completed"


class ResponseMcpCallFailedEvent(_McpCallEvent):
    type: Literal["response.mcp_call.failed"] = "response.mcp_call.failed"


class McpListToolsInProgressEvent(_ItemIdEvent):
    type: Literal["mcp_list_tools.in_progress"] = "mcp_list_tools.in_progress"


class McpListToolsCompletedEvent(_ItemIdEvent):
    type: Literal["mcp_list_tools.completed"] = "mcp_list_tools.completed"


class McpListToolsFailedEvent(_ItemIdEvent):
    type: Literal["mcp_list_tools.failed"] = "mcp_list_tools.failed"


ServerEvent = Annotated[
    Union[
        ErrorEvent, SessionCreatedEvent, SessionUpdatedEvent, ConversationCreatedEvent, RateLimitsUpdatedEvent,
        InputAudioBufferSpeechStartedEvent, InputAudioBufferSpeechStoppedEvent, InputAudioBufferCommittedEvent,
        InputAudioBufferClearedEvent, InputAudioBufferTimeoutTriggeredEvent, InputAudioBufferDtmfEventReceivedEvent,
        OutputAudioBufferStartedEvent, OutputAudioBufferStoppedEvent, OutputAudioBufferClearedEvent,
        ConversationItemAddedEvent, ConversationItemDoneEvent, ConversationItemCreatedEvent,
        ConversationItemRetrievedEvent, ConversationItemTruncatedEvent, ConversationItemDeletedEvent,
        ConversationItemInputAudioTranscriptionDeltaEvent, ConversationItemInputAudioTranscriptionCompletedEvent,
        ConversationItemInputAudioTranscriptionFailedEvent, ConversationItemInputAudioTranscriptionSegmentEvent,
        ResponseCreatedEvent, ResponseDoneEvent, ResponseOutputItemAddedEvent, ResponseOutputItemDoneEvent,
        ResponseContentPartAddedEvent, ResponseContentPartDoneEvent, ResponseOutputTextDeltaEvent,
        ResponseOutputTextDoneEvent, ResponseOutputAudioDeltaEvent, ResponseOutputAudioDoneEvent,
        ResponseOutputAudioTranscriptDeltaEvent, ResponseOutputAudioTranscriptDoneEvent,
        ResponseFunctionCallArgumentsDeltaEvent, ResponseFunctionCallArgumentsDoneEvent,
        ResponseMcpCallArgumentsDeltaEvent, ResponseMcpCallArgumentsDoneEvent, ResponseMcpCallInProgressEvent,
        ResponseMcpCallCompletedEvent, ResponseMcpCallFailedEvent, McpListToolsInProgressEvent,
        McpListToolsCompletedEvent, McpListToolsFailedEvent,
    ],
    Field(discriminator="type")]

SERVER_EVENT_TYPES: dict[str, type[ServerEventBase]] = {
    cls.model_fields["type"].default: cls for cls in get_args(get_args(ServerEvent)[0])}


def dump_event(ev: ServerEventBase | ClientEventBase) -> dict[str, Any]:
    """JSON-ready dict. Server events keep nulls; client events drop unset optionals (`None`)."""
    if isinstance(ev, ClientEventBase):
        return ev.model_dump(mode="json", exclude_none=True)
    return ev.model_dump(mode="json")


def to_json(ev: ServerEventBase | ClientEventBase) -> str:
    """Compact JSON text for one data-channel / WebSocket message."""
    if isinstance(ev, ClientEventBase):
        return ev.model_dump_json(exclude_none=True)
    return ev.model_dump_json()
