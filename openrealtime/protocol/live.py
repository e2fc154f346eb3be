"""OpenAI's Live API (openai-python 3.63 `client.live`, `openai.types.live`), defined once.

Live is a second voice API beside Realtime, with its own paths, events and session model
(`../shared/spec/openai-live.md`): one `session.start` with a `SessionConfig`, audio appended without
commits (the server finds the turns), transcript deltas on one session timeline (`start_ms`/`end_ms`,
integer milliseconds since the session began), and delegation of tasks to the application or a
Responses backend.

Validation is strict as on the real service: unknown fields are refused (`unknown_parameter` naming the
dotted `param`, e.g. `session.voice`), no coercion. Every `error` carries the failed command's
`event_id` as `client_event_id`, both on the event and inside `error`. Server events leave out keys whose
value is null (`start_ms`/`end_ms` on the primary socket's audio, an absent `client_event_id`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from .client_events import ClientEventBase
from .errors import ProtocolError
from .items import Base64Audio
from .parse import parse_client_event
from .server_events import ServerEventBase

DEFAULT_VOICE = "marin"
MAX_MODEL_CHARS = 128
MAX_INSTRUCTIONS_CHARS = 16_384 * 4  # 16,384 tokens, at about 4 characters a token
MAX_APPEND_TOKENS = 500
MAX_INPUT_ITEMS = 128
MAX_FIXTURE_S = 30
HOSTED_TOOLS = ("web_search", "file_search", "code_interpreter", "shell", "image_generation", "custom",
                "namespace", "tool_search", "programmatic_tool_calling", "computer", "apply_patch")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


# ---- audio ---------------------------------------------------------------------------------------
class LivePcm(_Strict):
    type: Literal["audio/pcm"]
    rate: Literal[16000, 24000]


class LivePcmu(_Strict):
    type: Literal["audio/pcmu"]
    rate: Literal[8000]


class LivePcma(_Strict):
    type: Literal["audio/pcma"]
    rate: Literal[8000]


LiveAudioFormat = Annotated[Union[LivePcm, LivePcmu, LivePcma], Field(discriminator="type")]


class LiveCustomVoice(_Strict):
    id: Annotated[str, Field(min_length=1, max_length=256)]


class LiveAudioOutput(_Strict):
    voice: Annotated[str, Field(min_length=1, max_length=64)] | LiveCustomVoice | None = None


class LiveAudio(_Strict):
    format: LiveAudioFormat | None = None  # primary WebSocket only
    output: LiveAudioOutput | None = None


# ---- data channel permissions (WebRTC) --------------------------------------------------------------
class ServerEventSelector(_Strict):
    type: str
    response_event: str | None = None  # a nested Responses event type, for `response.event`


class DataChannelConfig(_Strict):
    allowed_client_events: Literal["all"] | list[str] | None = None
    allowed_server_events: Literal["all"] | list[ServerEventSelector] | None = None


class ClientConfig(_Strict):
    data_channel: DataChannelConfig


# ---- delegation ----------------------------------------------------------------------------------
AckDelay = Annotated[int, Field(ge=0, le=60_000)]


class ClientDelegation(_Strict):
    type: Literal["client"]
    acknowledgement_delay_ms: AckDelay | None = None


class LiveFunctionTool(_Strict):
    type: Literal["function"]
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-\.]+$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class LiveMcpTool(_Strict):
    type: Literal["mcp"]
    server_label: str | None = None
    server_url: str | None = None
    connector_id: str | None = None
    tunnel_id: str | None = None
    authorization: str | None = None
    headers: dict[str, str] | None = None
    allowed_tools: list[str] | dict[str, Any] | None = None
    require_approval: Literal["always", "never"] | dict[str, Any] | None = None
    defer_loading: bool | None = None
    allowed_callers: list[Literal["direct", "programmatic"]] | None = None
    server_description: str | None = None


class HostedTool(BaseModel):
    """An OpenAI-hosted tool (web search, code interpreter, ...): its settings are not read; such a tool is
    refused with `unsupported_tool` (it would run on OpenAI's servers)."""

    model_config = ConfigDict(extra="allow")
    type: Literal["web_search", "file_search", "code_interpreter", "shell", "image_generation", "custom",
                  "namespace", "tool_search", "programmatic_tool_calling", "computer", "apply_patch"]


ResponsesTool = Annotated[Union[LiveFunctionTool, LiveMcpTool, HostedTool], Field(discriminator="type")]
ToolChoice = Union[Literal["auto", "none", "required"], dict[str, Any]]


class ResponsesReasoning(_Strict):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["concise", "detailed", "auto"] | None = None


class ResponsesText(_Strict):
    verbosity: Literal["low", "medium", "high"] | None = None


ServiceTier = Literal["auto", "default", "fast_tier_temp_pilot", "flex", "priority", "ultrafast"]


class ResponsesUpdateConfig(_Strict):
    """The Responses backend's settings; in a `session.update`, omitted ones keep their values."""

    model: Annotated[str, Field(min_length=1, max_length=MAX_MODEL_CHARS)] | None = None
    instructions: Annotated[str, Field(max_length=MAX_INSTRUCTIONS_CHARS)] | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    parallel_tool_calls: bool | None = None
    reasoning: ResponsesReasoning | None = None
    service_tier: ServiceTier | None = None
    text: ResponsesText | None = None
    tool_choice: ToolChoice | None = None
    tools: Annotated[list[ResponsesTool], Field(max_length=128)] | None = None


class ResponsesConfig(ResponsesUpdateConfig):
    model: Annotated[str, Field(min_length=1, max_length=MAX_MODEL_CHARS)]


class ResponsesDelegation(_Strict):
    type: Literal["responses"]
    responses: ResponsesConfig
    acknowledgement_delay_ms: AckDelay | None = None


class DecisionsDelegation(_Strict):
    type: Literal["decisions"]
    decisions: dict[str, Any]  # not built yet: refused with `unsupported_delegation`
    acknowledgement_delay_ms: AckDelay | None = None


Delegation = Annotated[Union[ClientDelegation, ResponsesDelegation, DecisionsDelegation], Field(discriminator="type")]


class ResponsesDelegationUpdate(_Strict):
    type: Literal["responses"]
    responses: ResponsesUpdateConfig | None = None
    acknowledgement_delay_ms: AckDelay | None = None


class DecisionsDelegationUpdate(_Strict):
    type: Literal["decisions"]
    decisions: dict[str, Any] | None = None
    acknowledgement_delay_ms: AckDelay | None = None


DelegationUpdate = Annotated[Union[ClientDelegation, ResponsesDelegationUpdate, DecisionsDelegationUpdate],
                             Field(discriminator="type")]


# ---- initial history -----------------------------------------------------------------------------
class InputTextPart(_Strict):
    text: str
    type: Literal["input_text"] | None = None


class AssistantTextPart(_Strict):
    text: str
    type: Literal["text", "output_text"] | None = None


class _InitialMessage(_Strict):
    id: str | None = None
    status: Literal["incomplete", "completed"] | None = None
    type: Literal["message"] | None = None


class DeveloperItem(_InitialMessage):
    role: Literal["developer"]
    content: Annotated[list[InputTextPart], Field(min_length=1, max_length=1)]


class UserItem(_InitialMessage):
    role: Literal["user"]
    content: Annotated[list[InputTextPart], Field(min_length=1, max_length=1)]


class AssistantItem(_InitialMessage):
    role: Literal["assistant"]
    content: Annotated[list[AssistantTextPart], Field(min_length=1, max_length=1)]


InitialItem = Annotated[Union[DeveloperItem, UserItem, AssistantItem], Field(discriminator="role")]


# ---- the session ---------------------------------------------------------------------------------
class LiveSessionConfig(_Strict):
    """`session.start`'s `session` (SessionConfig)."""

    model: Annotated[str, Field(min_length=1, max_length=MAX_MODEL_CHARS)]
    audio: LiveAudio | None = None
    client: ClientConfig | None = None
    delegation: Delegation | None = None
    input: Annotated[list[InitialItem], Field(max_length=MAX_INPUT_ITEMS)] | None = None
    instructions: Annotated[str, Field(max_length=MAX_INSTRUCTIONS_CHARS)] | None = None
    safety_identifier: Annotated[str, Field(max_length=256)] | None = None
    store: bool | None = None
    triggers: list[dict[str, Any]] | None = None  # decisions triggers: not built yet


class WakePolicy(_Strict):
    type: Literal["speech"]
    vad_threshold: Annotated[float, Field(ge=0.0, le=1.0)] | None = None


class MediaSessionConfig(LiveSessionConfig):
    """`POST /v1/live/sessions`' `session` (WebRTC): no `audio.format` (SDP negotiates it)."""

    idle_timeout_s: Annotated[int, Field(ge=1)] | None = None
    wake_policy: WakePolicy | None = None


class AcceptSessionConfig(MediaSessionConfig):
    """`POST /v1/live/sessions/{id}/accept`'s `session` (a SIP call): `type: "live"`, no `audio.format`."""

    type: Literal["live"]


class LiveAcceptRequest(_Strict):
    session: AcceptSessionConfig


class LiveSessionUpdate(_Strict):
    """`session.update`'s `session`: only delegation settings (same type, sparse) and triggers."""

    delegation: DelegationUpdate | None = None
    triggers: list[dict[str, Any]] | None = None


class LiveSessionResource(LiveSessionConfig):
    """The resolved configuration, as `session.started` / `updated` / `closed` show it."""

    id: str
    expires_at: int
    status: Literal["active"] = "active"


class WebRtcTransportRequest(_Strict):
    type: Literal["webrtc"]
    sdp: Annotated[str, Field(min_length=1)]


class LiveCreateRequest(_Strict):
    """`POST /v1/live/sessions`: `{session, transport: {type: "webrtc", sdp}}`."""

    session: MediaSessionConfig
    transport: WebRtcTransportRequest


# ---- client events -------------------------------------------------------------------------------
class SessionStartEvent(ClientEventBase):
    type: Literal["session.start"] = "session.start"
    session: LiveSessionConfig


class SessionUpdateEvent(ClientEventBase):
    type: Literal["session.update"] = "session.update"
    session: LiveSessionUpdate


class InputAudioAppendEvent(ClientEventBase):
    type: Literal["session.input_audio.append"] = "session.input_audio.append"
    audio: Base64Audio


class InputAudioMuteEvent(ClientEventBase):
    type: Literal["session.input_audio.mute"] = "session.input_audio.mute"


class InputAudioUnmuteEvent(ClientEventBase):
    type: Literal["session.input_audio.unmute"] = "session.input_audio.unmute"


class FixturePlayEvent(ClientEventBase):
    type: Literal["session.output_audio.fixture.play"] = "session.output_audio.fixture.play"
    audio: Base64Audio


class _AppendEvent(ClientEventBase):
    content: str
    delegation_id: str | None = None


class InstructionsAppendEvent(_AppendEvent):
    type: Literal["session.instructions.append"] = "session.instructions.append"


class ThinkingAppendEvent(_AppendEvent):
    type: Literal["session.thinking.append"] = "session.thinking.append"


class CommentaryAppendEvent(_AppendEvent):
    type: Literal["session.commentary.append"] = "session.commentary.append"


class DecisionCreateEvent(ClientEventBase):
    type: Literal["decision.create"] = "decision.create"


class DecisionItemCreateEvent(ClientEventBase):
    type: Literal["decision.item.create"] = "decision.item.create"
    item: dict[str, Any]


class DecisionItemDeleteEvent(ClientEventBase):
    type: Literal["decision.item.delete"] = "decision.item.delete"
    item_id: str


class ResponseItemCreateEvent(ClientEventBase):
    type: Literal["response.item.create"] = "response.item.create"
    item: dict[str, Any]  # a Responses input item (checked by the backend: live/backend.py)


class ResponseCreateEvent(ClientEventBase):
    type: Literal["response.create"] = "response.create"


class DtmfSendEvent(ClientEventBase):
    type: Literal["transport.dtmf.send"] = "transport.dtmf.send"
    event: str


class SessionCloseEvent(ClientEventBase):
    type: Literal["session.close"] = "session.close"


LIVE_CLIENT_EVENT_TYPES: dict[str, type[ClientEventBase]] = {
    cls.model_fields["type"].default: cls for cls in (
        SessionStartEvent, SessionUpdateEvent, InputAudioAppendEvent, InputAudioMuteEvent, InputAudioUnmuteEvent,
        FixturePlayEvent, InstructionsAppendEvent, ThinkingAppendEvent, CommentaryAppendEvent, DecisionCreateEvent,
        DecisionItemCreateEvent, DecisionItemDeleteEvent, ResponseItemCreateEvent, ResponseCreateEvent,
        DtmfSendEvent, SessionCloseEvent)}


def parse_live_event(raw: str | bytes, *, max_bytes: int | None = None) -> ClientEventBase:
    """One Live client event, validated strictly; ProtocolError (with the event's id) otherwise."""
    return parse_client_event(raw, max_bytes=max_bytes, event_types=LIVE_CLIENT_EVENT_TYPES)


# ---- server events -------------------------------------------------------------------------------
class LiveEvent(ServerEventBase):
    """A Live server event: keys whose value is null are left out."""

    client_event_id: str | None = None

    @model_serializer(mode="wrap")
    def _without_nulls(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _drop_none(handler(self))


class SessionStartedEvent(LiveEvent):
    type: Literal["session.started"] = "session.started"
    session: LiveSessionResource


class SessionUpdatedEvent(LiveEvent):
    type: Literal["session.updated"] = "session.updated"
    session: LiveSessionResource


class InputAudioMutedEvent(LiveEvent):
    type: Literal["session.input_audio.muted"] = "session.input_audio.muted"


class InputAudioUnmutedEvent(LiveEvent):
    type: Literal["session.input_audio.unmuted"] = "session.input_audio.unmuted"


class FixturePlayingEvent(LiveEvent):
    type: Literal["session.output_audio.fixture.playing"] = "session.output_audio.fixture.playing"


class FixturePlayedEvent(LiveEvent):
    type: Literal["session.output_audio.fixture.played"] = "session.output_audio.fixture.played"


class _TimedEvent(LiveEvent):
    start_ms: int
    end_ms: int


class InstructionsAppendedEvent(_TimedEvent):
    type: Literal["session.instructions.appended"] = "session.instructions.appended"


class ThinkingAppendedEvent(_TimedEvent):
    type: Literal["session.thinking.appended"] = "session.thinking.appended"


class CommentaryAppendedEvent(_TimedEvent):
    type: Literal["session.commentary.appended"] = "session.commentary.appended"


APPENDED = {"session.instructions.append": InstructionsAppendedEvent,
            "session.thinking.append": ThinkingAppendedEvent,
            "session.commentary.append": CommentaryAppendedEvent}


class InputTranscriptDeltaEvent(_TimedEvent):
    type: Literal["session.input_transcript.delta"] = "session.input_transcript.delta"
    delta: str


class OutputTranscriptDeltaEvent(_TimedEvent):
    type: Literal["session.output_transcript.delta"] = "session.output_transcript.delta"
    delta: str


class OutputAudioDeltaEvent(LiveEvent):
    """Primary socket: the session's format, no times. Reflected to a sideband: PCM16 24 kHz with times."""

    type: Literal["session.output_audio.delta"] = "session.output_audio.delta"
    delta: str
    start_ms: int | None = None
    end_ms: int | None = None


class InputAudioReflectedEvent(BaseModel):
    """Input audio reflected to a sideband (PCM16 24 kHz, before muting): the one event without an id."""

    type: Literal["session.input_audio.append"] = "session.input_audio.append"
    audio: str


class DelegationObject(_Strict):
    id: str
    type: Literal["delegation"] = "delegation"
    target: Literal["client", "responses", "decisions"]
    response_id: str | None = None


class DelegationCreatedEvent(LiveEvent):
    type: Literal["session.delegation.created"] = "session.delegation.created"
    delegation: DelegationObject
    offset_ms: int


class ResponseEventEnvelope(LiveEvent):
    type: Literal["response.event"] = "response.event"
    event: dict[str, Any]  # one Responses-API streaming event (live/backend.py)
    delegation_id: str | None = None


class SessionUsage(_Strict):
    seconds: float
    active_seconds: int | None = None
    paused_seconds: int | None = None


class SessionUsageUpdatedEvent(LiveEvent):
    type: Literal["session.usage.updated"] = "session.usage.updated"
    usage: SessionUsage


CloseReason = Literal["close_requested", "expired", "content", "remote_hangup", "connection_lost"]


class DtmfReceivedEvent(LiveEvent):
    """A key the caller pressed on a SIP session (sidebands only)."""

    type: Literal["transport.dtmf.received"] = "transport.dtmf.received"
    event: str


class SessionClosedEvent(LiveEvent):
    type: Literal["session.closed"] = "session.closed"
    reason: CloseReason
    session: LiveSessionResource
    usage: SessionUsage


class LiveErrorDetail(_Strict):
    type: str = "invalid_request_error"
    code: str | None = None
    message: str
    param: str | None = None
    client_event_id: str | None = None


class LiveErrorEvent(LiveEvent):
    type: Literal["error"] = "error"
    error: LiveErrorDetail


class InfoEvent(LiveEvent):
    type: Literal["info"] = "info"
    code: str
    message: str


def live_error(exc: ProtocolError) -> LiveErrorEvent:
    """The `error` event for a refused command: its `event_id` comes back as `client_event_id`."""
    return LiveErrorEvent(client_event_id=exc.event_id, error=LiveErrorDetail(
        type=exc.type, code=exc.code or "invalid_value", message=exc.message, param=exc.param,
        client_event_id=exc.event_id))
