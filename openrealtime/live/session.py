"""One Live session (`client.live`): Live commands in, Live events out, over a Realtime SessionEngine.

The voice side is the Realtime engine itself (session/engine.py), fixed to what Live is: server VAD
with automatic responses and barge-in, spoken output, input transcription. This coordinator owns it
and speaks to it only through its public surface: Realtime client events into `handle_message`, audio
into `feed_audio`, and its typed events read off its `EventBus`, of which it keeps a few and renames them:

| engine event | Live event |
|---|---|
| `input_audio_buffer.speech_started` / `_stopped` | (the turn's span on the timeline) |
| `conversation.item.input_audio_transcription.delta` | `session.input_transcript.delta` over that span |
| `response.output_audio_transcript.delta` | `session.output_transcript.delta` |
| speech written to `audio_out` | `session.output_audio.delta` (WebSocket: paced, live/audio.py; sideband: timed) |
| `response.function_call_arguments.done` of `delegate` | `session.delegation.created` (+ a backend run) |

**The timeline.** One clock: milliseconds of input audio received (muted audio counts; it reaches the
engine as silence). Every `start_ms`/`end_ms`/`offset_ms` is on it, and transcript starts never go back.

**Delegation.** The voice model gets one function, `delegate(task)`. Under client delegation a call
becomes `session.delegation.created {target: client}`; the application answers with thinking (silent
context) and commentary (spoken). Under responses delegation the task goes to the backend
(live/backend.py), whose events ride `response.event` and whose final text is spoken. After
`acknowledgement_delay_ms` the voice model briefly acknowledges the task unless an append came first.
Speech the session asks for (acknowledgements, commentary, backend answers) waits its turn: it starts
when no response is in progress.

Listeners: `events` carries every Live event (the primary transport through the data-channel
permissions, sidebands, the call monitor); `reflections` the sideband-only copies of input and output audio.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from .. import ids
from ..audio.format import BYTES_PER_MS
from ..engines.egress import EgressPolicy
from ..protocol.client_events import ClientEventBase
from ..protocol.errors import ProtocolError
from ..protocol.live import (
    APPENDED,
    MAX_APPEND_TOKENS,
    MAX_FIXTURE_S,
    CloseReason,
    CommentaryAppendEvent,
    DelegationCreatedEvent,
    DelegationObject,
    DtmfReceivedEvent,
    FixturePlayedEvent,
    FixturePlayEvent,
    FixturePlayingEvent,
    InfoEvent,
    InputAudioAppendEvent,
    InputAudioMutedEvent,
    InputAudioReflectedEvent,
    InputAudioUnmutedEvent,
    InputTranscriptDeltaEvent,
    InstructionsAppendEvent,
    LivePcm,
    LiveSessionConfig,
    LiveSessionResource,
    MediaSessionConfig,
    OutputAudioDeltaEvent,
    OutputTranscriptDeltaEvent,
    ResponseEventEnvelope,
    ResponsesDelegation,
    SessionClosedEvent,
    SessionStartedEvent,
    SessionStartEvent,
    SessionUpdatedEvent,
    SessionUpdateEvent,
    SessionUsage,
    SessionUsageUpdatedEvent,
    ThinkingAppendEvent,
    live_error,
    parse_live_event,
)
from ..runtime import ModelRuntime
from ..session.engine import SessionEngine, SessionLimits
from ..session.events import EventBus
from ..session.transport import OutputAudio
from .audio import PacedOutput, ReflectedOutput, decode_input, encode_output
from .backend import ResponsesBackend, task_of
from .config import (
    DELEGATE,
    check_delegation,
    check_supported,
    is_one_pass,
    one_pass_tools,
    resolve,
    voice_engine_config,
)
from .one_pass import OnePassBackend
from .permissions import DataChannelPermissions

log = logging.getLogger(__name__)

ACK_INSTRUCTIONS = "\n\nThe task was handed over. In a few words, tell the user you are working on it."
COMMENTARY_NOTE = ("The application has this for the user. Say it now, briefly and keeping every fact: {content}")
THINKING_NOTE = "Context from the application (for you; do not read it out): {content}"
INSTRUCTIONS_NOTE = "Additional instructions: {content}"
CHARS_PER_TOKEN = 4
USAGE_TICK_S = 1.0


class LiveTransport(Protocol):
    kind: str  # "websocket" | "webrtc"
    audio_out: OutputAudio | None  # WebRTC: the call's paced RTP player; WebSocket: None (paced here)

    def send_text(self, text: str) -> None: ...

    def close(self, reason: str) -> None: ...


@dataclass
class LiveLimits:
    max_duration_s: float = 3600.0
    max_event_bytes: int = 16 * 1024 * 1024
    usage_interval_s: float = 15.0  # session.usage.updated, every this many session seconds


class _EngineTransport:
    """What the voice engine is given: the session's output audio; its events are read off its bus."""

    def __init__(self, kind: str, audio_out: OutputAudio) -> None:
        self.kind = kind
        self.audio_out = audio_out

    def send_text(self, text: str) -> None:
        pass

    def close(self, reason: str) -> None:
        pass


class LiveSession:
    """One Live session on a WebSocket (config from `session.start`) or a WebRTC call (config at creation)."""

    def __init__(self, transport: LiveTransport, *, models: Any, runtime: ModelRuntime,
                 egress: EgressPolicy | None = None, limits: LiveLimits | None = None,
                 config: MediaSessionConfig | None = None, session_id: str | None = None) -> None:
        self.id = session_id or ids.live_session_id()
        self.transport = transport
        self.kind = transport.kind
        self.models = models
        self.runtime = runtime
        self.egress = egress
        self.limits = limits or LiveLimits()
        self.created_at = time.time()
        self.expires_at = int(self.created_at + self.limits.max_duration_s)
        self.events = EventBus()
        self.reflections = EventBus()
        self.stats: dict[str, int] = {"delegations": 0, "appends": 0, "audio_in_ms": 0, "audio_out_ms": 0}
        self.config: LiveSessionConfig | None = None  # resolved, once started
        self.engine: SessionEngine | None = None
        self.backend: ResponsesBackend | OnePassBackend | None = None
        self.closed = False
        self.muted = False
        self._closed_sent = False
        self._started_at: float | None = None
        self._media = config  # WebRTC: the session from `POST /v1/live/sessions`
        self._permissions = DataChannelPermissions(config.client.data_channel if config and config.client else None)
        self._paced: PacedOutput | None = None
        self._spans: dict[str, list[int]] = {}  # item id -> [audio_start_ms, audio_end_ms] of a user turn
        self._last_start = 0
        self._out_cursor = 0  # where written output audio ends on the timeline (reflections)
        self._said = {"input": False, "output": False}
        self._speaking_response: str | None = None
        self._delegations: dict[str, str] = {}  # client delegation id -> task
        self._acks: dict[str, Any] = {}  # delegation id -> timer of its pending acknowledgement
        self._speech: list[tuple[str, dict[str, Any]]] = []  # (kind, response.create params) waiting their turn
        self._fixture: str | None = None
        self._fixture_event: str | None = None
        self._next_usage = self.limits.usage_interval_s
        self._usage_timer: Any = None
        self.events.subscribe(self._to_primary)
        if config is not None:
            self._open(config)

    # ---- the voice engine ----------------------------------------------------------------------
    def _open(self, config: LiveSessionConfig) -> None:
        """Check what this server can do, resolve the defaults, build the voice engine."""
        check_supported(config, self.kind, self.models)
        self.config = resolve(config, self.kind)
        out = self.transport.audio_out
        if out is None:
            self._paced = PacedOutput(self._send_audio)
            out = self._paced
        engine_out = ReflectedOutput(out, self._reflect_output, self._output_cleared)
        self.engine = SessionEngine(_EngineTransport(self.kind, engine_out), voice_engine_config(self.config),
                                    models=self.models, runtime=self.runtime, egress=self.egress,
                                    limits=SessionLimits(max_duration_s=self.limits.max_duration_s,
                                                         max_event_bytes=self.limits.max_event_bytes))
        self.engine.events.subscribe(self._on_engine_event)
        self.engine.start()
        for item in self.config.input or []:
            text = item.content[0].text
            if item.role == "assistant":
                self._engine_send("conversation.item.create", item={
                    "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]})
            else:
                self._add_note(text, role="user" if item.role == "user" else "system")
        delegation = self.config.delegation
        if is_one_pass(self.config):
            self.backend = OnePassBackend(delegation.responses, emit=self._backend_event,
                                          delegated=self._one_pass_delegated, engine_send=self._engine_send,
                                          speak=lambda: self._queue_speech("answer", {}))
        elif isinstance(delegation, ResponsesDelegation):
            self.backend = ResponsesBackend(delegation.responses, models=self.models, runtime=self.runtime,
                                            emit=self._backend_event, answered=self._say,
                                            session_key=f"{self.id}-backend")

    def _engine_send(self, kind: str, **fields: Any) -> None:
        assert self.engine is not None
        self.engine.handle_message(json.dumps({"type": kind, **fields}))

    def _add_note(self, text: str, *, role: str = "system") -> None:
        content_type = "input_text"
        self._engine_send("conversation.item.create", item={"type": "message", "role": role,
                                                             "content": [{"type": content_type, "text": text}]})

    # ---- lifecycle -----------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._started_at is not None

    def start(self) -> None:
        """The transport is ready: a WebRTC session says `session.started` (a WebSocket waits for session.start)."""
        if self._media is not None and not self.started:
            self._started(None)
            if self._permissions.restricted:
                self.emit(InfoEvent(code="data_channel_permissions", message=self._permissions.notice()))

    def _started(self, client_event_id: str | None) -> None:
        self._started_at = time.monotonic()
        self.emit(SessionStartedEvent(session=self.resource(), client_event_id=client_event_id))
        self._usage_timer = self.runtime.call_later(USAGE_TICK_S, self._usage_tick)

    def resource(self) -> LiveSessionResource:
        assert self.config is not None
        return LiveSessionResource(**self.config.model_dump(exclude_none=True), id=self.id,
                                   expires_at=self.expires_at)

    def usage(self) -> SessionUsage:
        wall = time.monotonic() - self._started_at if self._started_at is not None else 0.0
        return SessionUsage(seconds=round(max(wall, self.clock_ms / 1000), 3))

    def _usage_tick(self) -> None:
        if self.closed or self._closed_sent:
            return
        self._check_usage()
        self._usage_timer = self.runtime.call_later(USAGE_TICK_S, self._usage_tick)

    def _check_usage(self) -> None:
        usage = self.usage()
        if usage.seconds >= self._next_usage:
            while self._next_usage <= usage.seconds:
                self._next_usage += self.limits.usage_interval_s
            self.emit(SessionUsageUpdatedEvent(usage=usage))

    def finish(self, reason: CloseReason, client_event_id: str | None = None) -> None:
        """`session.closed`, then the transport closes normally."""
        if self._closed_sent or self.closed:
            return
        self._closed_sent = True
        if self.config is not None:
            self.emit(SessionClosedEvent(reason=reason, session=self.resource(), usage=self.usage(),
                                         client_event_id=client_event_id))
        self._stop_work()
        self.transport.close("session_closed")

    def expire(self) -> None:
        self.finish("expired")

    def shut_down(self) -> None:
        """The server is shutting down (drain timeout): say so, then close (WebSocket: 1012, reconnect)."""
        self.send_error(ProtocolError("The server is shutting down; connect again to continue (another node will "
                                      "answer).", code="server_shutting_down", type="server_error"))
        self._stop_work()
        self.transport.close("server_shutting_down")

    def close(self, reason: str = "closed") -> None:
        """The connection is gone or the call ended: tell any sideband why, stop all work."""
        if self.closed:
            return
        if self.kind != "websocket" and self.started and not self._closed_sent:
            self._closed_sent = True
            closed = {"hangup": "close_requested", "caller_bye": "remote_hangup"}.get(reason, "connection_lost")
            self.emit(SessionClosedEvent(reason=closed,
                                         session=self.resource(), usage=self.usage()))
        self._stop_work()
        self.closed = True
        log.debug("live session %s closed (%s): %s", self.id, reason, self.stats)

    def _stop_work(self) -> None:
        for timer in [self._usage_timer, *self._acks.values()]:
            if timer is not None:
                timer.cancel()
        self._acks.clear()
        self._speech.clear()
        if self.backend is not None:
            self.backend.close()
        if self.engine is not None:
            self.engine.close("live_session_closed")
        if self._paced is not None:
            self._paced.close()

    # ---- outputs -------------------------------------------------------------------------------
    def emit(self, event: Any) -> None:
        if self.closed:
            return
        if event.type == "input_audio_buffer.dtmf_event_received":  # a caller's key (sip/call.py)
            event = DtmfReceivedEvent(event=event.event)
        self.events.publish(event)

    def send_error(self, exc: ProtocolError) -> None:
        self.emit(live_error(exc))

    def _to_primary(self, event: Any, text: str) -> None:
        if self.kind == "webrtc" and not self._permissions.allows_server(event):
            return
        self.transport.send_text(text)

    @property
    def clock_ms(self) -> int:
        """The session timeline: milliseconds of input audio received."""
        return self.engine.buffer.now_ms if self.engine is not None else 0

    def _span(self, start: int, end: int) -> dict[str, int]:
        """A transcript span whose start never goes back before an earlier one's."""
        start = max(start, self._last_start)
        self._last_start = start
        return {"start_ms": start, "end_ms": max(end, start)}

    def _send_audio(self, pcm: bytes) -> None:
        """Paced output on the primary WebSocket: in the session's format, no times."""
        assert self.config is not None and self.config.audio is not None
        self.stats["audio_out_ms"] += len(pcm) // BYTES_PER_MS
        data = encode_output(pcm, self.config.audio.format or LivePcm(type="audio/pcm", rate=24000))
        self.emit(OutputAudioDeltaEvent(delta=base64.b64encode(data).decode("ascii")))

    def _reflect_output(self, pcm: bytes) -> None:
        start = max(self._out_cursor, self.clock_ms)
        self._out_cursor = start + len(pcm) // BYTES_PER_MS
        if self.kind == "webrtc":
            self.stats["audio_out_ms"] += len(pcm) // BYTES_PER_MS
        if self.reflections.listeners:
            self.reflections.publish(OutputAudioDeltaEvent(delta=base64.b64encode(pcm).decode("ascii"),
                                                           start_ms=start, end_ms=self._out_cursor))

    def _output_cleared(self) -> None:
        self._out_cursor = self.clock_ms

    # ---- input audio ---------------------------------------------------------------------------
    def feed_audio(self, pcm: bytes) -> None:
        """Canonical input audio (a WebRTC call's microphone, or decoded appends)."""
        if self.closed or self.engine is None or not pcm:
            return
        if self.reflections.listeners:
            self.reflections.publish(InputAudioReflectedEvent(audio=base64.b64encode(pcm).decode("ascii")))
        self.stats["audio_in_ms"] += len(pcm) // BYTES_PER_MS
        self.engine.feed_audio(bytes(len(pcm)) if self.muted or self._fixture is not None else pcm)
        self._check_usage()

    @property
    def image_source(self) -> Any:
        return self.engine.image_source if self.engine is not None else None

    @image_source.setter
    def image_source(self, source: Any) -> None:
        if self.engine is not None:
            self.engine.image_source = source

    # ---- commands ------------------------------------------------------------------------------
    def handle_message(self, raw: str | bytes) -> None:
        """A command from the primary transport (the WebSocket, or the WebRTC data channel)."""
        self._command(raw, sideband=False)

    def handle_sideband(self, raw: str | bytes, send_error: Any) -> None:
        """A command from a sideband: every command but session.start and input audio; no permissions apply."""
        self._command(raw, sideband=True, send_error=send_error)

    def _command(self, raw: str | bytes, *, sideband: bool, send_error: Any = None) -> None:
        if self.closed or self._closed_sent:
            return
        try:
            event = parse_live_event(raw, max_bytes=self.limits.max_event_bytes)
            try:
                self._check_source(event, sideband)
                self._dispatch(event)
            except ProtocolError as exc:
                exc.event_id = exc.event_id or event.event_id
                raise
        except ProtocolError as exc:
            (send_error or self.send_error)(exc)

    def _check_source(self, event: ClientEventBase, sideband: bool) -> None:
        kind = event.type
        if self.kind != "websocket" and kind in ("session.start", "session.input_audio.append"):
            where = "a sideband" if sideband else "the data channel"
            starts = "a SIP session starts when it is accepted" if self.kind == "sip" else \
                "a WebRTC session starts when it is created"
            raise ProtocolError(f"{kind} is not accepted on {where}: "
                                + (starts + "." if kind == "session.start" else "its audio arrives over RTP."),
                                code="invalid_value", param="type")
        if self.kind == "webrtc" and not sideband and not self._permissions.allows_client(kind):
            raise ProtocolError(f"{kind} is not allowed on this data channel (session.client.data_channel."
                                "allowed_client_events).", code="event_not_allowed", param="type")
        if kind == "transport.dtmf.send":
            raise ProtocolError("transport.dtmf.send (sending keys on a SIP session) is not available on this server "
                                "yet.", code="unsupported_transport", param="type")
        if kind != "session.start" and not self.started:
            raise ProtocolError(f"Send session.start first: {kind} needs a started session.",
                                code="session_not_started", param="type")

    def _dispatch(self, event: Any) -> None:
        getattr(self, "_on_" + event.type.replace(".", "_"))(event)

    def _on_session_start(self, event: SessionStartEvent) -> None:
        if self.started:
            raise ProtocolError("The session has already started; session.start is sent once.",
                                code="session_already_started", param="type")
        self._open(event.session)
        self._started(event.event_id)

    def _on_session_update(self, event: SessionUpdateEvent) -> None:
        assert self.config is not None
        update = event.session
        if update.triggers:
            raise ProtocolError("Decisions triggers are not available on this server yet.",
                                code="unsupported_triggers", param="session.triggers")
        current = self.config.delegation
        if update.delegation is not None:
            new = update.delegation
            if current is None or new.type != current.type:
                raise ProtocolError(f"The delegation type is fixed for the session ('{getattr(current, 'type', None)}'"
                                    f"); it cannot change to '{new.type}'.", code="invalid_value",
                                    param="session.delegation.type")
            data = current.model_dump(exclude_none=True)
            if new.acknowledgement_delay_ms is not None:
                data["acknowledgement_delay_ms"] = new.acknowledgement_delay_ms
            responses = getattr(new, "responses", None)
            if responses is not None:
                data["responses"] = {**data["responses"], **responses.model_dump(exclude_unset=True)}
            delegation = type(current).model_validate(data)
            updated = self.config.model_copy(update={"delegation": delegation})
            one_pass = is_one_pass(updated)
            if one_pass != isinstance(self.backend, OnePassBackend):
                raise ProtocolError("The one-pass mode (delegation.responses.model equal to the session's model) is "
                                    "fixed for the session.", code="invalid_value",
                                    param="session.delegation.responses.model")
            check_delegation(delegation, param="session.delegation", one_pass=one_pass)
            self.config = updated
            if self.backend is not None and isinstance(delegation, ResponsesDelegation):
                self.backend.config = delegation.responses
                if one_pass and responses is not None and responses.tools is not None:
                    self._engine_send("session.update", session={"type": "realtime", "tools": [
                        t.model_dump(exclude_none=True) for t in one_pass_tools(delegation.responses)]})
        self.emit(SessionUpdatedEvent(session=self.resource(), client_event_id=event.event_id))

    def _on_session_input_audio_append(self, event: InputAudioAppendEvent) -> None:
        assert self.config is not None and self.config.audio is not None and self.config.audio.format is not None
        self.feed_audio(decode_input(binascii.a2b_base64(event.audio), self.config.audio.format))

    def _on_session_input_audio_mute(self, event: Any) -> None:
        self.muted = True
        self.emit(InputAudioMutedEvent(client_event_id=event.event_id))

    def _on_session_input_audio_unmute(self, event: Any) -> None:
        self.muted = False
        self.emit(InputAudioUnmutedEvent(client_event_id=event.event_id))

    def _on_session_output_audio_fixture_play(self, event: FixturePlayEvent) -> None:
        pcm = binascii.a2b_base64(event.audio)
        if len(pcm) % 2 or not pcm:
            raise ProtocolError("A fixture is PCM16 24 kHz mono audio: a non-empty, even number of bytes.",
                                code="invalid_value", param="audio")
        if len(pcm) > MAX_FIXTURE_S * 1000 * BYTES_PER_MS:
            raise ProtocolError(f"A fixture is at most {MAX_FIXTURE_S} s of audio; this one is "
                                f"{len(pcm) / BYTES_PER_MS / 1000:.1f} s.", code="invalid_value", param="audio")
        if self._fixture is not None:
            raise ProtocolError("A fixture is already playing; wait for session.output_audio.fixture.played.",
                                code="fixture_playing", param="type")
        assert self.engine is not None
        self._interrupt_speech()
        self._fixture, self._fixture_event = "fixture_" + ids.item_id()[5:], event.event_id
        out = self.engine.transport.audio_out
        assert out is not None
        self.emit(FixturePlayingEvent(client_event_id=event.event_id))
        out.write(pcm, response_id=self._fixture, item_id=self._fixture)
        out.end_response(self._fixture, self._fixture)

    def _interrupt_speech(self) -> None:
        assert self.engine is not None
        if self.engine.active is not None and not self.engine.active.finished:
            self._engine_send("response.cancel")
        self._engine_send("output_audio_buffer.clear")

    def _on_session_instructions_append(self, event: InstructionsAppendEvent) -> None:
        self._append(event, INSTRUCTIONS_NOTE)

    def _on_session_thinking_append(self, event: ThinkingAppendEvent) -> None:
        self._append(event, THINKING_NOTE)
        self._cancel_acks()

    def _on_session_commentary_append(self, event: CommentaryAppendEvent) -> None:
        self._append(event, COMMENTARY_NOTE)
        self._cancel_acks()
        self._queue_speech("commentary", {})

    def _append(self, event: Any, note: str) -> None:
        if self._fixture is not None:
            raise ProtocolError(f"{event.type} is refused while a fixture plays.", code="fixture_playing",
                                param="type")
        if len(event.content) > MAX_APPEND_TOKENS * CHARS_PER_TOKEN:
            raise ProtocolError(f"'content' is over {MAX_APPEND_TOKENS} tokens.", code="invalid_value",
                                param="content")
        if event.delegation_id is not None:
            if self.backend is not None:
                raise ProtocolError("delegation_id names a client delegation; this session delegates to "
                                    "Responses: send null.", code="invalid_value", param="delegation_id")
            if event.delegation_id not in self._delegations:
                raise ProtocolError(f"No delegation '{event.delegation_id}' in this session.",
                                    code="invalid_value", param="delegation_id")
        self.stats["appends"] += 1
        self._add_note(note.format(content=event.content))
        now = self.clock_ms
        self.emit(APPENDED[event.type](start_ms=now, end_ms=now, client_event_id=event.event_id))

    def _on_decision_create(self, event: Any) -> None:
        raise _no_decisions()

    def _on_decision_item_create(self, event: Any) -> None:
        raise _no_decisions()

    def _on_decision_item_delete(self, event: Any) -> None:
        raise _no_decisions()

    def _on_response_item_create(self, event: Any) -> None:
        self._require_backend(event.type).add_item(event.item)

    def _on_response_create(self, event: Any) -> None:
        self._require_backend(event.type).create()

    def _require_backend(self, kind: str) -> ResponsesBackend | OnePassBackend:
        if self.backend is None:
            raise ProtocolError(f"{kind} needs responses delegation (session.delegation.type 'responses').",
                                code="invalid_value", param="type")
        return self.backend

    def _on_session_close(self, event: Any) -> None:
        self.finish("close_requested", event.event_id)

    # ---- the voice engine's events -------------------------------------------------------------
    def _on_engine_event(self, event: Any, text: str) -> None:
        kind = event.type
        if isinstance(self.backend, OnePassBackend):
            self.backend.on_engine_event(event)
        if kind == "input_audio_buffer.speech_started":
            self._spans[event.item_id] = [event.audio_start_ms, event.audio_start_ms]
        elif kind == "input_audio_buffer.speech_stopped":
            self._spans.setdefault(event.item_id, [event.audio_end_ms, event.audio_end_ms])[1] = event.audio_end_ms
        elif kind == "conversation.item.input_audio_transcription.delta":
            start, end = self._spans.pop(event.item_id, [self.clock_ms, self.clock_ms])
            if event.delta.strip():
                self.emit(InputTranscriptDeltaEvent(delta=self._joined("input", event.delta.strip()),
                                                    **self._span(start, end)))
        elif kind == "response.output_audio_transcript.delta" and event.delta:
            delta = event.delta
            if event.response_id != self._speaking_response:
                self._speaking_response = event.response_id
                delta = self._joined("output", delta.lstrip())
            now = self.clock_ms
            self.emit(OutputTranscriptDeltaEvent(delta=delta, **self._span(now, now)))
        elif kind == "response.function_call_arguments.done" and event.name == DELEGATE:
            self._delegate(event.call_id, task_of(event.arguments))
        elif kind == "response.done":  # the engine lets go of the response right after announcing it
            asyncio.get_running_loop().call_soon(self._speak_next)
        elif kind == "output_audio_buffer.stopped" and event.response_id == self._fixture:
            self._fixture = None
            self.emit(FixturePlayedEvent(client_event_id=self._fixture_event))
        elif kind == "mcp_list_tools.failed":
            self.send_error(ProtocolError("An MCP server of session.delegation.responses.tools could not be listed "
                                          "(check its server_url, and that --mcp-allow admits its address).",
                                          code="mcp_list_tools_failed", type="server_error",
                                          param="session.delegation.responses.tools"))
        elif kind == "error":
            log.info("live session %s: voice engine: %s", self.id, event.error.message)

    def _joined(self, side: str, text: str) -> str:
        said, self._said[side] = self._said[side], True
        return " " + text if said and not text.startswith(" ") else text

    # ---- delegation ----------------------------------------------------------------------------
    def _delegate(self, call_id: str, task: str) -> None:
        assert self.config is not None
        delegation = self.config.delegation
        did = ids.delegation_id()
        self.stats["delegations"] += 1
        if self.backend is not None:
            response_id = ids.response_id()
            self.emit(DelegationCreatedEvent(delegation=DelegationObject(id=did, target="responses",
                                                                         response_id=response_id),
                                             offset_ms=self.clock_ms))
            self.backend.delegate(did, response_id, task)
        else:
            self._delegations[did] = task
            self.emit(DelegationCreatedEvent(delegation=DelegationObject(id=did, target="client"),
                                             offset_ms=self.clock_ms))
        self._engine_send("conversation.item.create", item={
            "type": "function_call_output", "call_id": call_id,
            "output": f"Handed over (delegation {did}); the answer will follow."})
        delay_ms = getattr(delegation, "acknowledgement_delay_ms", None) or 0
        if delay_ms:
            self._acks[did] = self.runtime.call_later(delay_ms / 1000, lambda: self._acknowledge(did))
        else:
            self._acks[did] = None
            self._acknowledge(did)

    def _acknowledge(self, did: str) -> None:
        if did in self._acks and not self.closed:
            del self._acks[did]
            assert self.engine is not None
            self._queue_speech("ack", {"instructions": self.engine.config.instructions + ACK_INSTRUCTIONS})

    def _cancel_acks(self) -> None:
        """An application append makes pending acknowledgements moot (the model has something to say)."""
        for timer in self._acks.values():
            if timer is not None:
                timer.cancel()
        self._acks.clear()
        self._speech = [s for s in self._speech if s[0] != "ack"]

    def _backend_event(self, event: dict[str, Any], delegation_id: str | None) -> None:
        self.emit(ResponseEventEnvelope(event=event, delegation_id=delegation_id))

    def _one_pass_delegated(self, delegation_id: str, response_id: str) -> None:
        """The voice model called a backend tool itself (one-pass mode): a responses delegation begins."""
        self.stats["delegations"] += 1
        self.emit(DelegationCreatedEvent(delegation=DelegationObject(id=delegation_id, target="responses",
                                                                     response_id=response_id),
                                         offset_ms=self.clock_ms))

    def _say(self, text: str) -> None:
        """The backend's answer: spoken by the voice model."""
        self._cancel_acks()
        self._add_note(COMMENTARY_NOTE.format(content=text))
        self._queue_speech("answer", {})

    def _queue_speech(self, kind: str, params: dict[str, Any]) -> None:
        self._speech.append((kind, params))
        self._speak_next()

    def _speak_next(self) -> None:
        """Start the next speech the session asked for, once no response is in progress."""
        engine = self.engine
        if engine is None or engine.closed or not self._speech or engine.active is not None:
            return
        _kind, params = self._speech.pop(0)
        self._engine_send("response.create", response=params)


def _no_decisions() -> ProtocolError:
    return ProtocolError("Decisions are not available on this server yet.", code="unsupported_delegation",
                         param="type")
