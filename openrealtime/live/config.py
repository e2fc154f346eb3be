"""What a Live session's configuration means on this server.

`resolve` fills the server's defaults (voice `marin`, WebSocket format PCM16 24 kHz, client delegation, no
acknowledgement delay, `store: false`); `check_supported` refuses, naming the field, what this server cannot
do (decisions, triggers, stored sessions, hosted tools, MCP tools outside the one-pass mode, a format on WebRTC,
data-channel permissions on a WebSocket, a custom voice it has not got); `voice_engine_config` is the Realtime
configuration of the voice engine a Live session runs on.
"""

from __future__ import annotations

from typing import Any

from ..protocol.errors import ProtocolError
from ..protocol.live import (
    DEFAULT_VOICE,
    ClientDelegation,
    HostedTool,
    LiveCustomVoice,
    LiveFunctionTool,
    LiveMcpTool,
    LiveSessionConfig,
    ResponsesConfig,
    ResponsesDelegation,
)
from ..protocol.session import (
    AudioConfig,
    AudioInput,
    AudioOutput,
    CustomVoice,
    FunctionTool,
    McpTool,
    RealtimeSessionConfig,
    ServerVad,
    TranscriptionConfig,
)
from ..session.voices import check_voice

DELEGATE = "delegate"
DEFAULT_INSTRUCTIONS = ("You are a helpful, friendly voice assistant running on a self-hosted server. Answer in one "
                        "or two short spoken sentences. Do not use markdown, lists or emoji.")
# Measured on the default local model (Qwen2.5-Coder-1.5B-Instruct; "What is the capital of France?" under the
# instructions "Answer in one short sentence."): told only to delegate "something the application should handle",
# it answered 27/30 and spoke the other three as instructions ("call the `delegate` function with the task ...");
# told to answer all other requests itself, 46/46. The price: a booking the instructions give to the application
# is delegated 3-5/16 times instead of 7-10/16 (a larger or remote model for applications that rely on it).
CLIENT_DELEGATION_NOTE = ("\n\nYou talk with the user directly. For requests the instructions above give to the "
                          "application, always call `delegate` with the task in one sentence, then wait for the "
                          "application's answer. Answer all other requests yourself, directly.")
ONE_PASS_NOTE = ("\n\nCall your tools when the user asks for something they do; before a call, say in a few words "
                 "that you are on it. Then give the result in a short spoken sentence.")
RESPONSES_DELEGATION_NOTE = ("\n\nA backend assistant can do tasks you cannot (it has these tools: {tools}). When "
                             "the user asks for one, call the `delegate` function with the task in one sentence; "
                             "its answer will follow.")


def resolve(config: LiveSessionConfig, kind: str) -> LiveSessionConfig:
    """The configuration with the server's defaults filled (voice, WebSocket format, delegation)."""
    data = config.model_dump(exclude_none=True, exclude={"idle_timeout_s", "wake_policy", "type"})
    audio = data.setdefault("audio", {})
    audio.setdefault("output", {}).setdefault("voice", DEFAULT_VOICE)
    if kind == "websocket":
        audio.setdefault("format", {"type": "audio/pcm", "rate": 24000})
    delegation = data.setdefault("delegation", {"type": "client"})
    delegation.setdefault("acknowledgement_delay_ms", 0)
    data.setdefault("store", False)
    return LiveSessionConfig.model_validate(data)


def check_supported(config: LiveSessionConfig, kind: str, models: Any) -> None:
    """Refuse, naming the field, what this server cannot do for a session on `kind` ("websocket" | "webrtc" |
    "sip")."""
    audio = config.audio
    if kind != "websocket" and audio is not None and audio.format is not None:
        raise ProtocolError("WebRTC and SIP sessions negotiate their audio format in SDP: leave out audio.format.",
                            code="invalid_value", param="session.audio.format")
    if kind != "webrtc" and config.client is not None:
        raise ProtocolError("session.client (data channel permissions) applies to WebRTC sessions only.",
                            code="invalid_value", param="session.client")
    if audio is not None and audio.output is not None and isinstance(audio.output.voice, LiveCustomVoice):
        check_voice(CustomVoice(id=audio.output.voice.id), models, param="session.audio.output.voice")
    if config.store:
        raise ProtocolError("Stored sessions (recordings and forks) are not available on this server yet; "
                            "leave store unset or false.", code="unsupported_value", param="session.store")
    if config.triggers:
        raise ProtocolError("Decisions triggers are not available on this server yet.",
                            code="unsupported_triggers", param="session.triggers")
    check_delegation(config.delegation, one_pass=is_one_pass(config))


def is_one_pass(config: LiveSessionConfig) -> bool:
    """Responses delegation in one pass (live/one_pass.py): the backend's model is the session's own model, so
    the voice model itself calls the backend's tools."""
    delegation = config.delegation
    return isinstance(delegation, ResponsesDelegation) and delegation.responses.model == config.model


def check_delegation(delegation: Any, *, param: str = "session.delegation", one_pass: bool = False) -> None:
    """Refuse, naming the field, what this server cannot do for a delegation."""
    if delegation is None or isinstance(delegation, ClientDelegation):
        return
    if not isinstance(delegation, ResponsesDelegation):
        raise ProtocolError("Decisions delegation is not available on this server yet; use 'client' or "
                            "'responses'.", code="unsupported_delegation", param=f"{param}.type")
    responses: ResponsesConfig = delegation.responses
    for index, tool in enumerate(responses.tools or []):
        if isinstance(tool, HostedTool):
            raise ProtocolError(f"The hosted tool '{tool.type}' runs on OpenAI's servers and is not available "
                                "here; give the backend function tools (your application runs them).",
                                code="unsupported_tool", param=f"{param}.responses.tools[{index}]")
        if isinstance(tool, LiveMcpTool):
            if not one_pass:
                raise ProtocolError("MCP tools need the one-pass mode here (the voice model calls them itself): set "
                                    "delegation.responses.model to the session's model.", code="unsupported_tool",
                                    param=f"{param}.responses.tools[{index}]")
            if not tool.server_label or not tool.server_url:
                raise ProtocolError("An MCP tool here needs a server_label and a server_url (connectors and tunnels "
                                    "run on OpenAI's servers).", code="unsupported_tool",
                                    param=f"{param}.responses.tools[{index}]")
    choice = responses.tool_choice
    if isinstance(choice, dict) and choice.get("type") not in ("function", "allowed_tools"):
        raise ProtocolError(f"tool_choice '{choice.get('type')}' is not available here: use 'auto', 'none', "
                            "'required', a function or allowed_tools.", code="unsupported_tool",
                            param=f"{param}.responses.tool_choice")


def one_pass_tools(responses: ResponsesConfig) -> list[Any]:
    """The backend's tools as the voice engine's own: functions (the application runs them) and MCP servers (the
    engine lists and calls them)."""
    tools: list[Any] = []
    for tool in responses.tools or []:
        if isinstance(tool, LiveFunctionTool):
            tools.append(FunctionTool(name=tool.name, description=tool.description or "",
                                      parameters=tool.parameters or {"type": "object", "properties": {}}))
        elif isinstance(tool, LiveMcpTool):
            tools.append(McpTool(**tool.model_dump(exclude_none=True)))
    return tools


def voice_engine_config(config: LiveSessionConfig | None) -> RealtimeSessionConfig:
    """The Realtime configuration of the voice engine under a Live session: server VAD turns with automatic
    responses and barge-in, input transcription, spoken output in the session's voice, the `delegate` function."""
    assert config is not None
    voice = config.audio.output.voice
    instructions = (config.instructions or "").strip() or DEFAULT_INSTRUCTIONS
    delegation = config.delegation
    audio = AudioConfig(input=AudioInput(transcription=TranscriptionConfig(), turn_detection=ServerVad()),
                        output=AudioOutput(voice=CustomVoice(id=voice.id) if isinstance(voice, LiveCustomVoice)
                                           else voice))
    if is_one_pass(config):
        backend = (delegation.responses.instructions or "").strip()
        instructions += ("\n\n" + backend if backend else "") + ONE_PASS_NOTE
        return RealtimeSessionConfig(instructions=instructions, audio=audio,
                                     tools=one_pass_tools(delegation.responses))
    if isinstance(delegation, ResponsesDelegation):
        names = ", ".join(t.name + (f" ({t.description})" if t.description else "")
                          for t in delegation.responses.tools or [] if getattr(t, "name", None)) or "none"
        instructions += RESPONSES_DELEGATION_NOTE.format(tools=names)
    else:
        instructions += CLIENT_DELEGATION_NOTE
    return RealtimeSessionConfig(
        instructions=instructions, audio=audio,
        tools=[FunctionTool(name=DELEGATE, description="Hand a task to the application's backend; its answer "
                            "follows.", parameters={"type": "object", "properties": {"task": {
                                "type": "string", "description": "The task, in one sentence."}},
                                "required": ["task"]})])
