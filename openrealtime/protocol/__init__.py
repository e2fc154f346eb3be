"""GA Realtime wire types (spec §3-§6), defined once with pydantic v2.

Engine entry points: `parse_client_event` (client text/bytes -> typed event or ProtocolError),
`error_event`, the server event classes + `to_json`/`dump_event`, `item_to_wire`,
`RealtimeResponse.from_params`, `SessionUpdateEvent.apply`.
"""

from __future__ import annotations

from .errors import (
    ErrorDetail, ProtocolError, pydantic_error_to_protocol,
)

from .session import (
    DEFAULT_MODEL, DEFAULT_INSTRUCTIONS, VOICES, PcmFormat, PcmuFormat, PcmaFormat, AudioFormat,
    TranscriptionConfig, NoiseReduction, ServerVad, SemanticVad, TurnDetection, AudioInput, CustomVoice,
    AudioOutput, AudioConfig, FunctionTool, McpTool, Tool, ToolChoiceFunction, ToolChoiceMcp, ToolChoice,
    MaxTokens, TracingConfig, TokenLimits, RetentionRatioTruncation, PromptRef, IncludeOption,
    RealtimeSessionConfig, TranscriptionAudioInput, TranscriptionAudio, TranscriptionSessionConfig,
    SessionConfig, RealtimeSessionObject, TranscriptionSessionObject, parse_session_config,
    apply_session_update, session_object, override_session,
)

from .items import (
    ItemStatus, MAX_AUDIO_BASE64_CHARS, WireModel, validate_base64, Base64Audio, ImageDataUrl,
    InputTextContent, InputAudioContent, InputImageContent, OutputTextContent, OutputAudioContent,
    UserContent, AssistantContent, ContentPart, ItemBase, MessageItem, SystemMessageItem, UserMessageItem,
    AssistantMessageItem, ClientAssistantMessageItem, FunctionCallItem, FunctionCallOutputItem, McpToolInfo,
    McpListToolsItem, McpProtocolError, McpToolExecutionError, McpHttpError, McpError, McpCallItem,
    McpApprovalRequestItem, McpApprovalResponseItem, ItemReference, Item, ClientItem, ResponseInputItem,
    AnyItem, item_to_wire, prepare_client_item, audio_parts,
)

from .responses import (
    ResponseStatus, FinalStatus, StatusReason, Modalities, Metadata, ResponseError, ResponseStatusDetails,
    TextAudioTokens, CachedTokensDetails, InputTokenDetails, ResponseUsage, ResponseAudioOutput,
    ResponseAudio, RealtimeResponse, ResponseAudioOutputParams, ResponseAudioParams, ResponseCreateParams,
)

from .client_events import (
    ClientEventBase, SessionUpdateEvent, InputAudioBufferAppendEvent, InputAudioBufferCommitEvent,
    InputAudioBufferClearEvent, ConversationItemCreateEvent, ConversationItemRetrieveEvent,
    ConversationItemTruncateEvent, ConversationItemDeleteEvent, ResponseCreateEvent, ResponseCancelEvent,
    OutputAudioBufferClearEvent, ClientEvent, CLIENT_EVENT_TYPES,
)

from .server_events import (
    SessionObject, ServerEventBase, Conversation, RateLimit, LogProb, TranscriptionTokenUsage,
    TranscriptionDurationUsage, TranscriptionUsage, TranscriptionError, ResponsePart, ErrorEvent,
    SessionCreatedEvent, SessionUpdatedEvent, ConversationCreatedEvent, RateLimitsUpdatedEvent,
    InputAudioBufferSpeechStartedEvent, InputAudioBufferSpeechStoppedEvent, InputAudioBufferCommittedEvent,
    InputAudioBufferClearedEvent, InputAudioBufferTimeoutTriggeredEvent,
    InputAudioBufferDtmfEventReceivedEvent, OutputAudioBufferStartedEvent, OutputAudioBufferStoppedEvent,
    OutputAudioBufferClearedEvent, ConversationItemAddedEvent, ConversationItemDoneEvent,
    ConversationItemCreatedEvent, ConversationItemRetrievedEvent, ConversationItemTruncatedEvent,
    ConversationItemDeletedEvent, ConversationItemInputAudioTranscriptionDeltaEvent,
    ConversationItemInputAudioTranscriptionCompletedEvent, ConversationItemInputAudioTranscriptionFailedEvent,
    ConversationItemInputAudioTranscriptionSegmentEvent, ResponseCreatedEvent, ResponseDoneEvent,
    ResponseOutputItemAddedEvent, ResponseOutputItemDoneEvent, ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent, ResponseOutputTextDeltaEvent, ResponseOutputTextDoneEvent,
    ResponseOutputAudioDeltaEvent, ResponseOutputAudioDoneEvent, ResponseOutputAudioTranscriptDeltaEvent,
    ResponseOutputAudioTranscriptDoneEvent, ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent, ResponseMcpCallArgumentsDeltaEvent,
    ResponseMcpCallArgumentsDoneEvent, ResponseMcpCallInProgressEvent, ResponseMcpCallCompletedEvent,
    ResponseMcpCallFailedEvent, McpListToolsInProgressEvent, McpListToolsCompletedEvent,
    McpListToolsFailedEvent, ServerEvent, SERVER_EVENT_TYPES, dump_event, to_json,
)

from .parse import (
    MAX_EVENT_ID_CHARS, parse_client_event, error_event, parse_server_event,
)

__all__ = [
    "ErrorDetail", "ProtocolError", "pydantic_error_to_protocol", "DEFAULT_MODEL", "DEFAULT_INSTRUCTIONS",
    "VOICES", "PcmFormat", "PcmuFormat", "PcmaFormat", "AudioFormat", "TranscriptionConfig", "NoiseReduction",
    "ServerVad", "SemanticVad", "TurnDetection", "AudioInput", "CustomVoice", "AudioOutput", "AudioConfig",
    "FunctionTool", "McpTool", "Tool", "ToolChoiceFunction", "ToolChoiceMcp", "ToolChoice", "MaxTokens",
    "TracingConfig", "TokenLimits", "RetentionRatioTruncation", "PromptRef", "IncludeOption",
    "RealtimeSessionConfig", "TranscriptionAudioInput", "TranscriptionAudio", "TranscriptionSessionConfig",
    "SessionConfig", "RealtimeSessionObject", "TranscriptionSessionObject", "parse_session_config",
    "apply_session_update", "session_object", "override_session", "ItemStatus", "MAX_AUDIO_BASE64_CHARS",
    "WireModel", "validate_base64", "Base64Audio", "ImageDataUrl", "InputTextContent", "InputAudioContent",
    "InputImageContent", "OutputTextContent", "OutputAudioContent", "UserContent", "AssistantContent",
    "ContentPart", "ItemBase", "MessageItem", "SystemMessageItem", "UserMessageItem", "AssistantMessageItem",
    "ClientAssistantMessageItem", "FunctionCallItem", "FunctionCallOutputItem", "McpToolInfo",
    "McpListToolsItem", "McpProtocolError", "McpToolExecutionError", "McpHttpError", "McpError",
    "McpCallItem", "McpApprovalRequestItem", "McpApprovalResponseItem", "ItemReference", "Item", "ClientItem",
    "ResponseInputItem", "AnyItem", "item_to_wire", "prepare_client_item", "audio_parts", "ResponseStatus",
    "FinalStatus", "StatusReason", "Modalities", "Metadata", "ResponseError", "ResponseStatusDetails",
    "TextAudioTokens", "CachedTokensDetails", "InputTokenDetails", "ResponseUsage", "ResponseAudioOutput",
    "ResponseAudio", "RealtimeResponse", "ResponseAudioOutputParams", "ResponseAudioParams",
    "ResponseCreateParams", "ClientEventBase", "SessionUpdateEvent", "InputAudioBufferAppendEvent",
    "InputAudioBufferCommitEvent", "InputAudioBufferClearEvent", "ConversationItemCreateEvent",
    "ConversationItemRetrieveEvent", "ConversationItemTruncateEvent", "ConversationItemDeleteEvent",
    "ResponseCreateEvent", "ResponseCancelEvent", "OutputAudioBufferClearEvent", "ClientEvent",
    "CLIENT_EVENT_TYPES", "SessionObject", "ServerEventBase", "Conversation", "RateLimit", "LogProb",
    "TranscriptionTokenUsage", "TranscriptionDurationUsage", "TranscriptionUsage", "TranscriptionError",
    "ResponsePart", "ErrorEvent", "SessionCreatedEvent", "SessionUpdatedEvent", "ConversationCreatedEvent",
    "RateLimitsUpdatedEvent", "InputAudioBufferSpeechStartedEvent", "InputAudioBufferSpeechStoppedEvent",
    "InputAudioBufferCommittedEvent", "InputAudioBufferClearedEvent", "InputAudioBufferTimeoutTriggeredEvent",
    "InputAudioBufferDtmfEventReceivedEvent", "OutputAudioBufferStartedEvent",
    "OutputAudioBufferStoppedEvent", "OutputAudioBufferClearedEvent", "ConversationItemAddedEvent",
    "ConversationItemDoneEvent", "ConversationItemCreatedEvent", "ConversationItemRetrievedEvent",
    "ConversationItemTruncatedEvent", "ConversationItemDeletedEvent",
    "ConversationItemInputAudioTranscriptionDeltaEvent",
    "ConversationItemInputAudioTranscriptionCompletedEvent",
    "ConversationItemInputAudioTranscriptionFailedEvent",
    "ConversationItemInputAudioTranscriptionSegmentEvent", "ResponseCreatedEvent", "ResponseDoneEvent",
    "ResponseOutputItemAddedEvent", "ResponseOutputItemDoneEvent", "ResponseContentPartAddedEvent",
    "ResponseContentPartDoneEvent", "ResponseOutputTextDeltaEvent", "ResponseOutputTextDoneEvent",
    "ResponseOutputAudioDeltaEvent", "ResponseOutputAudioDoneEvent",
    "ResponseOutputAudioTranscriptDeltaEvent", "ResponseOutputAudioTranscriptDoneEvent",
    "ResponseFunctionCallArgumentsDeltaEvent", "ResponseFunctionCallArgumentsDoneEvent",
    "ResponseMcpCallArgumentsDeltaEvent", "ResponseMcpCallArgumentsDoneEvent",
    "ResponseMcpCallInProgressEvent", "ResponseMcpCallCompletedEvent", "ResponseMcpCallFailedEvent",
    "McpListToolsInProgressEvent", "McpListToolsCompletedEvent", "McpListToolsFailedEvent", "ServerEvent",
    "SERVER_EVENT_TYPES", "dump_event", "to_json", "MAX_EVENT_ID_CHARS", "parse_client_event", "error_event",
    "parse_server_event",
]
