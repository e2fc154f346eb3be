"""The Realtime session engine (transport-agnostic): the coordinator of one session.

Inputs: raw client events (`handle_message`), canonical input audio (`feed_audio`: PCM16 mono
24 kHz) and playout notifications (`on_playout`). Outputs: typed server events on the session's
`EventBus` (events.py: the transport, the call monitor and sideband sockets listen) and speech
through the transport's `audio_out`. Models run in the runtime's worker stages, never on the loop.

The parts, each in its own module: the microphone side (speech_input.py: buffer, VAD, turns),
early work (speculator.py), transcription (transcription.py), the chat request (chat_request.py,
a pure function), responses (response.py) and MCP tools (mcp_tools.py), which see the session
only through `SessionContext` (context.py). The conversation announces its own changes
(conversation.py). A stack that answers nothing (`Loopback`, engine echo) gets a loopback input.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from .. import ids
from ..audio.convert import g711_decode, g711_encode
from ..engines.base import ChatRequest, Loopback, SessionAware
from ..engines.egress import EgressPolicy
from ..media.image_tokens import image_tokens_for_data_url
from ..protocol import client_events as ce
from ..protocol import server_events as ev
from ..protocol.errors import ProtocolError
from ..protocol.items import (
    AnyItem,
    AssistantMessageItem,
    FunctionCallItem,
    FunctionCallOutputItem,
    InputAudioContent,
    InputImageContent,
    InputTextContent,
    ItemReference,
    McpApprovalResponseItem,
    MessageItem,
    OutputAudioContent,
    UserMessageItem,
    prepare_client_item,
)
from ..protocol.parse import parse_client_event
from ..protocol.responses import RealtimeResponse, ResponseCreateParams
from ..protocol.server_events import ServerEventBase
from ..protocol.session import RealtimeSessionConfig, TranscriptionSessionConfig, session_object
from ..runtime import ModelRuntime, Runtime
from .audio_buffer import InputAudioBuffer
from .barge_in import BargeInGate
from .chat_request import build_chat_request
from .conversation import ContextWindow, Conversation, content_bytes
from .events import EventBus
from .mcp_tools import McpServer, SessionMcp
from .response import ResponseRun
from .speculation import TurnSpeculation
from .speculator import Speculator
from .speech_input import AudioInput, Loopback as LoopbackInput, SpeechInput
from .transcription import Transcriber
from .transport import Transport
from .voices import check_session_voice, check_voice
from .turn_detection import SilenceBegan, SpeechResumed, SpeechStarted, SpeechStopped, TurnComplete

log = logging.getLogger(__name__)

MIN_COMMIT_MS = 100


@dataclass
class SessionLimits:
    max_duration_s: float = 60 * 60
    max_event_bytes: int = 16 * 1024 * 1024
    max_input_buffer_ms: int = 15 * 60 * 1000
    max_items: int = 2000
    max_images: int = 100
    # text and image data of the items a client creates, per session (its audio is bounded apart)
    max_client_content_bytes: int = 64 * 1024 * 1024


ImageSource = Callable[[], "dict[str, Any] | None"]  # -> {"image_url": data_url, "detail": ..., "tokens": int}


class SessionEngine:
    """One session. `models`: the server's model stack (None: no models at all); `runtime`: how model
    work runs (pools, foreground gate, clock), the server's, shared by its sessions."""

    def __init__(self, transport: Transport, config: RealtimeSessionConfig | TranscriptionSessionConfig, *,
                 models: Any = None, limits: SessionLimits | None = None, egress: EgressPolicy | None = None,
                 runtime: ModelRuntime | None = None) -> None:
        self.transport = transport
        self.runtime: ModelRuntime = runtime if runtime is not None else Runtime()
        self.config = config
        self.models = models
        self.limits = limits or SessionLimits()
        self.id = ids.session_id()
        self.created_at = time.time()
        self.expires_at = int(self.created_at + self.limits.max_duration_s)
        self.closed = False
        self.events = EventBus()
        self.events.subscribe(lambda event, text: transport.send_text(text))
        self.conversation = Conversation(ids.conversation_id(), self.limits.max_items, emit=self.emit)
        self.context_window = ContextWindow()  # truncation state of the default conversation
        # the MCP servers named by tools (mcp_tools.py); without a policy: public addresses only
        self.mcp = SessionMcp(self, egress if egress is not None else EgressPolicy())
        self.buffer = InputAudioBuffer(self.limits.max_input_buffer_ms)
        self.voice_locked = False
        self.images = 0
        self.image_source: ImageSource | None = None
        self.active: ResponseRun | None = None  # the default conversation's response
        self.out_of_band: dict[str, ResponseRun] = {}
        self.playing: dict[str, ResponseRun] = {}  # response id -> run whose audio may still play
        self._pending_item_id: str | None = None
        self._held: list[str | bytes] | None = None  # client events waiting behind a commit (noise reduction)
        self._idle_anchor_ms: int | None = None
        self._tasks: set[asyncio.Task] = set()
        self.stats = {"responses": 0, "barge_ins": 0, "vad_frames": 0, "asr_speculative_hits": 0,
                      "asr_speculative_misses": 0, "asr_speculative_started": 0, "answers_speculated": 0,
                      "answers_adopted": 0, "speculations_abandoned": 0, "prefix_warmings": 0,
                      "prefix_tokens_warmed": 0, "speech_speculated": 0, "speech_adopted": 0,
                      "asr_partials_reused": 0, "prefix_warmings_deferred": 0}
        self.transcriber = Transcriber(self.runtime, models, self.conversation, config=lambda: self.config,
                                       emit=self.emit, spawn=self.spawn)
        self.speech = SpeechInput(self.buffer, getattr(models, "vad", None), self.runtime, self.stats,
                                  on_turn=lambda event: self.barge_in.turn_event(event), on_frame=self._on_vad_frame,
                                  on_pause=self._check_idle_timeout, on_overflow=self._report_overflow,
                                  end_of_turn=getattr(models, "turn", None),
                                  denoiser=getattr(models, "denoise", None))
        out = transport.audio_out
        self.barge_in = BargeInGate(self.speech, self.stats, speaking=self._agent_speaking, deliver=self._on_turn_event,
                                    pause=out.pause if out is not None else None,
                                    resume=out.resume if out is not None else None,
                                    transcribe=self.transcriber.transcribe if self.transcriber.available else None,
                                    spawn=self.spawn)
        self.speculator = Speculator(self.runtime, models, self.stats, self.speech,
                                     transcribe=self.transcriber.transcribe,
                                     provisional_request=self._provisional_request,
                                     provisional_response=lambda: RealtimeResponse.from_params(
                                         None, self.config, conversation_id=None),
                                     wants_answer=self._wants_auto_response, spawn=self.spawn,
                                     speech_speed=lambda: self.speech_speed)
        self.input: AudioInput = self.speech
        if isinstance(models, Loopback):  # answers nothing: the caller hears themself
            self.input = LoopbackInput(transport.audio_out, models.loopback_delay_s, ids.response_id(), ids.item_id(),
                                      self.runtime)
        self.input.configure(config.audio.input.turn_detection)
        self.speech.configure_noise_reduction(config.audio.input.noise_reduction)
        if transport.audio_out is not None:
            transport.audio_out.set_listener(self.on_playout)

    @property
    def answers(self) -> bool:
        """Whether this session has a language model to respond with."""
        return self.models is not None and getattr(self.models, "llm", None) is not None

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.emit(ev.SessionCreatedEvent(session=self._session_obj()))
        if isinstance(self.config, RealtimeSessionConfig) and self.config.tools:
            try:
                self.mcp.configure(self.config.tools, param="session.tools")
            except ProtocolError as exc:  # the session starts; these MCP tools are not offered
                self.send_error(exc)

    def close(self, reason: str = "closed") -> None:
        if self.closed:
            return
        for run in [r for r in (self.active, *self.out_of_band.values()) if r is not None]:
            run.cancel_event.set()
            if run.task is not None:
                run.task.cancel()
        self.speculator.close()
        self.barge_in.close()
        for task in list(self._tasks):
            task.cancel()
        self.mcp.close()
        self.input.close()
        self.speech.close()
        self._forget_model_state()
        # a finished call's objects are freed by Python's cyclic collector (aiortc's are full of cycles), which
        # may run minutes later: its audio (input buffer, conversation audio, VAD backlog) goes now
        self.buffer.clear()
        self.conversation.release_audio()
        self.closed = True

    def _forget_model_state(self) -> None:
        """The local LLM keeps per-session prompt state (KV snapshots, keyed by this session's id) until
        told the session is over; remote LLMs keep none (no `forget_session`). Never blocks the loop."""
        llm = getattr(self.models, "llm", None)
        if not isinstance(llm, SessionAware):
            return
        try:
            llm.forget_session(self.id)
        except Exception:  # the session is closing either way
            log.exception("session=%s could not drop its LLM prompt state", self.id)

    def expire(self) -> None:
        self.send_error(ProtocolError(
            f"Your session hit the maximum duration of {int(self.limits.max_duration_s // 60)} minutes.",
            code="session_expired"))
        self.transport.close("session_expired")

    def shut_down(self) -> None:
        """The server is shutting down (drain timeout): say so, then close the transport cleanly."""
        self.send_error(ProtocolError("The server is shutting down; connect again to continue (another node will "
                                      "answer).", code="server_shutting_down", type="server_error"))
        self.transport.close("server_shutting_down")

    # ---- outputs (SessionContext) ------------------------------------------------------------
    def emit(self, event: ServerEventBase) -> None:
        if not self.closed:
            self.events.publish(event)

    def send_error(self, exc: ProtocolError) -> None:
        self.emit(ev.ErrorEvent(error=exc.detail()))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        """A task the session owns: cancelled when the session closes; a failure is logged (runtime.py)."""
        task = self.runtime.spawn(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def play_audio(self, pcm: bytes, run: ResponseRun, item_id: str, output_index: int) -> None:
        """Speech for a response item: RTP playout on WebRTC, delta events on WebSocket."""
        self.voice_locked = True
        if run.in_conversation:
            self.conversation.add_audio(item_id, pcm)
        out = self.transport.audio_out
        if out is not None:
            self.playing[run.id] = run
            out.write(pcm, response_id=run.id, item_id=item_id)
            return
        fmt = run.response.audio.output.format
        data = pcm if fmt.type == "audio/pcm" else g711_encode(pcm, fmt.type.split("/")[1])
        self.emit(ev.ResponseOutputAudioDeltaEvent(response_id=run.id, item_id=item_id, output_index=output_index,
                                                   content_index=0, delta=base64.b64encode(data).decode()))

    def end_audio(self, run: ResponseRun, item_id: str) -> None:
        out = self.transport.audio_out
        if out is not None and run.id in self.playing:
            out.end_response(run.id, item_id)
        else:
            self._idle_anchor_ms = self.buffer.now_ms

    def on_playout(self, event: str, response_id: str) -> None:
        if event == "started":
            self.emit(ev.OutputAudioBufferStartedEvent(response_id=response_id))
        elif event == "stopped":
            self.playing.pop(response_id, None)
            self._idle_anchor_ms = self.buffer.now_ms
            self.emit(ev.OutputAudioBufferStoppedEvent(response_id=response_id))

    def response_finished(self, run: ResponseRun) -> None:
        if self.active is run:
            self.active = None
        self.out_of_band.pop(run.id, None)
        self.stats["responses"] += 1
        if run.first_audio_at is not None:
            log.info("session=%s response=%s status=%s first_token_s=%.3f first_audio_s=%.3f", self.id, run.id,
                     run.response.status, (run.first_token_at or run.first_audio_at) - run.started_at,
                     run.first_audio_at - run.started_at)

    @property
    def speech_speed(self) -> float:
        return self.config.audio.output.speed if isinstance(self.config, RealtimeSessionConfig) else 1.0

    # ---- inputs ------------------------------------------------------------------------------
    def handle_message(self, raw: str | bytes) -> None:
        if self._held is not None:  # behind a commit that waits for its audio
            self._held.append(raw)
            return
        try:
            event = parse_client_event(raw, max_bytes=self.limits.max_event_bytes)
        except ProtocolError as exc:
            self.send_error(exc)
            return
        if isinstance(event, ce.InputAudioBufferCommitEvent):
            # audio appended before the commit may still be in noise reduction: the commit (and every
            # client event after it, in order) waits for it
            self._held = []
            self.speech.when_heard(lambda: self._release(event))
            return
        self._handle(event)

    def _release(self, commit: Any) -> None:
        held, self._held = self._held or [], None
        if self.closed:
            return
        self._handle(commit)
        for raw in held:
            self.handle_message(raw)

    def _handle(self, event: Any) -> None:
        try:
            self._dispatch(event)
        except ProtocolError as exc:
            if exc.event_id is None:
                exc.event_id = event.event_id
            self.send_error(exc)

    def feed_audio(self, pcm: bytes) -> None:
        """Microphone audio (canonical PCM) from the transport."""
        if self.closed or not pcm:  # nothing to add (an empty input_audio_buffer.append)
            return
        self.input.feed(pcm)

    def _report_overflow(self) -> None:
        self.send_error(ProtocolError(
            f"The input audio buffer exceeded {self.limits.max_input_buffer_ms // 1000} s without a commit; "
            "the oldest audio is being dropped. Commit (input_audio_buffer.commit) or clear it.",
            code="input_audio_buffer_overflow", param="audio"))

    # ---- turns (speech_input.py) → items, speculation, responses -------------------------------
    def _on_turn_event(self, event: object) -> None:
        td = self.config.audio.input.turn_detection
        if isinstance(event, SpeechStarted):
            self.speculator.speech_started()
            self._pending_item_id = ids.item_id()
            self._idle_anchor_ms = None
            self.emit(ev.InputAudioBufferSpeechStartedEvent(audio_start_ms=event.audio_start_ms,
                                                            item_id=self._pending_item_id))
            if td is not None and td.interrupt_response:
                self._interrupt()
        elif isinstance(event, SilenceBegan):
            semantic = self.speech.turn.params.semantic is not None
            self.speculator.silence_began(event.audio_start_ms, event.speech_end_ms, answer=not semantic)
            if semantic:  # the words before the pause help judge whether the turn is over
                self._hear_pause(event.audio_start_ms, event.speech_end_ms)
        elif isinstance(event, TurnComplete):
            self.speculator.turn_complete(event.audio_start_ms, event.speech_end_ms)
        elif isinstance(event, SpeechResumed):
            self.speculator.speech_resumed()
        elif isinstance(event, SpeechStopped):
            item_id = self._pending_item_id or ids.item_id()
            self._pending_item_id = None
            self.emit(ev.InputAudioBufferSpeechStoppedEvent(audio_end_ms=event.audio_end_ms, item_id=item_id))
            spec = self.speculator.take(event.audio_start_ms, event.speech_end_ms)
            pcm = self.speech.take(event.audio_start_ms, event.audio_end_ms)
            self._commit_audio(pcm, item_id, speculative=spec.asr if spec else None)
            if td is not None and td.create_response and isinstance(self.config, RealtimeSessionConfig):
                self._auto_response(spec)
            elif spec is not None:
                spec.drop_answer()

    def _hear_pause(self, start_ms: int, speech_end_ms: int) -> None:
        """semantic_vad: hand the speculative transcript of the speech before this pause to the turn detector."""
        asr = self.speculator.transcript(start_ms, speech_end_ms)
        if asr is None:
            return
        self.speech.expect_text(speech_end_ms)

        def heard(job: asyncio.Future) -> None:
            if not self.closed:
                ok = not job.cancelled() and job.exception() is None
                result = job.result() if ok else None
                self.speech.heard(speech_end_ms, result.text if result else None, result.logprobs if result else None)

        asr.add_done_callback(heard)

    def _on_vad_frame(self) -> None:
        self.barge_in.frame()
        self.speculator.frame()

    def _agent_speaking(self) -> bool:
        """Whether a turn starting now would interrupt a response (barge-in hygiene holds it first)."""
        td = self.config.audio.input.turn_detection
        return td is not None and td.interrupt_response and (self.active is not None or bool(self.playing))

    def _check_idle_timeout(self) -> None:
        td = self.config.audio.input.turn_detection
        timeout = getattr(td, "idle_timeout_ms", None)
        if not timeout or self._idle_anchor_ms is None or self.active is not None or self.playing:
            return
        now = int(self.speech.clock_ms)
        if now - self._idle_anchor_ms < timeout:
            return
        start = self._idle_anchor_ms
        self._idle_anchor_ms = None
        item_id = ids.item_id()
        self.emit(ev.InputAudioBufferTimeoutTriggeredEvent(audio_start_ms=start, audio_end_ms=now, item_id=item_id))
        self._commit_audio(self.speech.take(start, now), item_id)
        if isinstance(self.config, RealtimeSessionConfig):
            self._auto_response()

    def _auto_response(self, speculation: TurnSpeculation | None = None) -> None:
        if self.active is not None:
            if speculation is not None:
                speculation.drop_answer()
            self.send_error(ProtocolError(
                f"Conversation already has an active response in progress: {self.active.id}. "
                "Turn detection could not start a new one.", code="conversation_already_has_active_response"))
            return
        try:
            self._create_response(None, speculation=speculation)
        except ProtocolError as exc:
            if speculation is not None:
                speculation.drop_answer()
            self.send_error(exc)

    def _wants_auto_response(self) -> bool:
        td = self.config.audio.input.turn_detection
        return (self.answers and not self.closed and self.active is None and td is not None
                and bool(td.create_response) and isinstance(self.config, RealtimeSessionConfig))

    def _provisional_request(self, text: str) -> ChatRequest:
        """The request an automatic response would make if the user's turn were `text`."""
        provisional = UserMessageItem(id="provisional", content=[InputTextContent(text=text)])
        return self._chat_request(ResponseCreateParams(), [*self.conversation.items, provisional])()

    # ---- interruption --------------------------------------------------------------------------
    def _interrupt(self) -> None:
        """Barge-in: cancel the speaking response, flush its audio, cut the item at what was heard."""
        run = self.active
        interrupted = False
        if run is not None and not run.finished:
            run.cancel("turn_detected")
            interrupted = True
        cleared_item = self._clear_output()
        if interrupted and run.message is not None and run.message.item.id != cleared_item \
                and self.transport.audio_out is not None and run.in_conversation:
            # generated but never (fully) played: keep only what was heard in the context
            self.conversation.truncate(run.message.item.id, self.transport.audio_out.played_ms(run.message.item.id))
        if cleared_item is not None or interrupted:
            self.stats["barge_ins"] += 1

    def _clear_output(self) -> str | None:
        """Flush unplayed speech; emits cleared (+ truncated). Returns the interrupted item id."""
        out = self.transport.audio_out
        if out is None:
            return None
        cleared = out.clear()
        if cleared is None:
            return None
        run = self.playing.pop(cleared.response_id, None)
        self.emit(ev.OutputAudioBufferClearedEvent(response_id=cleared.response_id))
        item = self.conversation.get(cleared.item_id)
        if isinstance(item, AssistantMessageItem) and run is not None:
            self.conversation.truncate(cleared.item_id, cleared.played_ms)
        self._idle_anchor_ms = self.buffer.now_ms
        return cleared.item_id

    # ---- client events -----------------------------------------------------------------------
    def _dispatch(self, event: Any) -> None:
        handler = getattr(self, "_on_" + event.type.replace(".", "_"))
        handler(event)

    def _on_session_update(self, event: ce.SessionUpdateEvent) -> None:
        config = event.apply(self.config, voice_locked=self.voice_locked)
        check_session_voice(config, self.models)
        if isinstance(config, RealtimeSessionConfig):
            self.mcp.configure(config.tools, param="session.tools")
        self.config = config
        self.input.configure(config.audio.input.turn_detection)
        self.speech.configure_noise_reduction(config.audio.input.noise_reduction)
        self.emit(ev.SessionUpdatedEvent(session=self._session_obj()))

    def _on_input_audio_buffer_append(self, event: ce.InputAudioBufferAppendEvent) -> None:
        data = event.audio_bytes()
        fmt = self.config.audio.input.format
        if fmt.type == "audio/pcm":
            if len(data) % 2:
                raise ProtocolError("audio/pcm data must be whole 16-bit samples (an even number of bytes).",
                                    code="invalid_value", param="audio")
            pcm = data
        else:
            pcm = g711_decode(data, fmt.type.split("/")[1])
        self.feed_audio(pcm)

    def _on_input_audio_buffer_commit(self, event: ce.InputAudioBufferCommitEvent) -> None:
        if self.buffer.duration_ms < MIN_COMMIT_MS:
            raise ProtocolError(
                f"Error committing input audio buffer: buffer too small. Expected at least {MIN_COMMIT_MS}ms of "
                f"audio, but buffer only has {self.buffer.duration_ms:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty")
        item_id = self._pending_item_id or ids.item_id()
        self._pending_item_id = None
        self.barge_in.drop()
        self.speech.turn.reset()
        self._commit_audio(self.speech.take(), item_id)

    def _on_input_audio_buffer_clear(self, event: ce.InputAudioBufferClearEvent) -> None:
        self.speech.discard_pending()
        self.barge_in.drop()
        self.buffer.clear()
        self.speech.turn.reset()
        self._pending_item_id = None
        self.emit(ev.InputAudioBufferClearedEvent())

    def _on_conversation_item_create(self, event: ce.ConversationItemCreateEvent) -> None:
        if len(self.conversation) >= self.limits.max_items:
            raise ProtocolError(f"The conversation has reached its limit of {self.limits.max_items} items; "
                                "delete items with conversation.item.delete first.", code="conversation_item_limit")
        item = prepare_client_item(event.item)
        if isinstance(item, McpApprovalResponseItem):
            self.mcp.check_approval(item)
        if isinstance(item, FunctionCallOutputItem) and not any(
                isinstance(i, FunctionCallItem) and i.call_id == item.call_id for i in self.conversation.items):
            raise ProtocolError(f"No function call with call_id '{item.call_id}' found in the conversation.",
                                code="invalid_value", param="item.call_id")
        images = sum(isinstance(p, InputImageContent) for p in getattr(item, "content", []) or [])
        if self.images + images > self.limits.max_images:
            raise ProtocolError(f"The session's limit of {self.limits.max_images} images would be exceeded.",
                                code="image_limit", param="item.content")
        size = content_bytes(item)
        held = sum(self.conversation.client_bytes.values())
        if held + size > self.limits.max_client_content_bytes:
            limit_mib = self.limits.max_client_content_bytes // (1024 * 1024)
            raise ProtocolError(f"The conversation would hold more than {limit_mib} MiB of text and image data from "
                                "the client; delete items with conversation.item.delete first.",
                                code="conversation_size_limit", param="item")
        self.conversation.add(item, event.previous_item_id)
        self.conversation.client_bytes[item.id or ""] = size
        self.images += images
        if isinstance(item, McpApprovalResponseItem):
            self.mcp.approval_answered(item)
        if isinstance(item, UserMessageItem):
            for index, part in enumerate(item.content):
                if isinstance(part, InputAudioContent) and part.audio and part.transcript is None:
                    pcm = base64.b64decode(part.audio)
                    self.conversation.add_audio(item.id, pcm)
                    part.audio = None
                    self.transcriber.start(item, pcm, content_index=index)

    def _on_conversation_item_retrieve(self, event: ce.ConversationItemRetrieveEvent) -> None:
        item = self.conversation.require(event.item_id).model_copy(deep=True)
        self.conversation.retrieve_wire_audio(item)
        self.emit(ev.ConversationItemRetrievedEvent(item=item))

    def _on_conversation_item_delete(self, event: ce.ConversationItemDeleteEvent) -> None:
        self.conversation.remove(event.item_id)

    def _on_conversation_item_truncate(self, event: ce.ConversationItemTruncateEvent) -> None:
        item = self.conversation.require(event.item_id)
        if not isinstance(item, AssistantMessageItem):
            raise ProtocolError("Only assistant messages can be truncated.", code="invalid_value", param="item_id")
        if event.content_index >= len(item.content) or not isinstance(item.content[event.content_index],
                                                                      OutputAudioContent):
            raise ProtocolError(f"Content part {event.content_index} of item '{item.id}' is not audio.",
                                code="invalid_value", param="content_index")
        length = self.conversation.audio_of(item.id).duration_ms
        if event.audio_end_ms > length:
            raise ProtocolError(f"audio_end_ms ({event.audio_end_ms}) is longer than the item's audio "
                                f"({length} ms).", code="invalid_value", param="audio_end_ms")
        out = self.transport.audio_out
        if out is not None and any(r.message and r.message.item.id == item.id for r in self.playing.values()):
            cleared = out.clear()
            if cleared is not None:
                self.playing.pop(cleared.response_id, None)
                self.emit(ev.OutputAudioBufferClearedEvent(response_id=cleared.response_id))
        self.conversation.truncate(item.id or "", event.audio_end_ms, event.content_index)

    def _on_response_create(self, event: ce.ResponseCreateEvent) -> None:
        self._create_response(event.response)

    def _on_response_cancel(self, event: ce.ResponseCancelEvent) -> None:
        run = self.active
        if event.response_id is not None:
            run = self.active if self.active and self.active.id == event.response_id else \
                self.out_of_band.get(event.response_id)
        if run is None or run.finished:
            raise ProtocolError("Cancellation failed: no active response found", code="response_cancel_not_active")
        run.cancel("client_cancelled")

    def _on_output_audio_buffer_clear(self, event: ce.OutputAudioBufferClearEvent) -> None:
        if self.transport.audio_out is None:
            raise ProtocolError("output_audio_buffer.clear is only available on WebRTC connections.",
                                code="invalid_value", param="type")
        self._clear_output()

    # ---- commits -------------------------------------------------------------------------------
    def _commit_audio(self, pcm: bytes, item_id: str, *, speculative: asyncio.Future | None = None) -> None:
        content: list[Any] = [InputAudioContent(transcript=None)]
        snapshot = self.image_source() if self.image_source is not None else None
        if snapshot is not None and self.images < self.limits.max_images:
            content.append(InputImageContent(image_url=snapshot["image_url"], detail=snapshot.get("detail", "auto")))
            self.images += 1
        item = UserMessageItem(id=item_id, content=content)
        if len(self.conversation) >= self.limits.max_items:
            oldest = self.conversation.oldest_evictable()
            if oldest is not None:
                self.conversation.remove(oldest.id or "")
        self.emit(ev.InputAudioBufferCommittedEvent(previous_item_id=self.conversation.last_id, item_id=item_id))
        self.conversation.add(item)
        self.conversation.add_audio(item_id, pcm)
        self.transcriber.start(item, pcm, content_index=0, speculative=speculative)

    # ---- responses ---------------------------------------------------------------------------
    def _create_response(self, params: ResponseCreateParams | None, *,
                         speculation: TurnSpeculation | None = None) -> None:
        if not isinstance(self.config, RealtimeSessionConfig):
            raise ProtocolError("Transcription sessions do not generate responses.", code="invalid_value",
                                param="type")
        if not self.answers:
            raise ProtocolError("This server runs without a language model (engine 'echo'); responses are "
                                "unavailable. Start it with --engine local.", code="model_not_available",
                                type="server_error")
        params = params or ResponseCreateParams()
        if params.audio is not None and params.audio.output is not None:
            check_voice(params.audio.output.voice, self.models, param="response.audio.output.voice")
        oob = params.out_of_band
        if not oob and self.active is not None:
            raise ProtocolError(
                f"Conversation already has an active response in progress: {self.active.id}. Wait until the "
                "response is finished before creating a new one.", code="conversation_already_has_active_response")
        if params.input is not None:
            context = [self._resolve_input(i, n) for n, i in enumerate(params.input)]
        else:
            context = list(self.conversation.items)
        if not oob and self.image_source is not None and params.input is None:
            self._attach_fresh_image()
            context = list(self.conversation.items)
        response = RealtimeResponse.from_params(params, self.config, conversation_id=self.conversation.id)
        pending = [a.transcript_future for i in context
                   if (a := self.conversation.audio.get(i.id or "")) is not None and a.transcript_future is not None
                   and not a.transcript_future.done()]
        input_audio_ms = sum(self.conversation.audio[i.id].duration_ms for i in context
                             if isinstance(i, UserMessageItem) and i.id in self.conversation.audio)
        if params.tools is not None:
            self.mcp.configure(params.tools, param="response.tools")
        offered = self.mcp.offered(params.tools if params.tools is not None else self.config.tools)
        run = ResponseRun(self, response, self._chat_request(params, context, offered), in_conversation=not oob,
                          input_audio_ms=input_audio_ms, image_tokens=self._image_tokens(context),
                          pending_transcripts=pending, mcp=self.mcp, speculation=speculation, mcp_offered=offered)
        if oob:
            self.out_of_band[run.id] = run
        else:
            self.active = run
        self.emit(ev.ResponseCreatedEvent(response=response))
        run.start()

    def _resolve_input(self, item: Any, index: int) -> AnyItem:
        if isinstance(item, ItemReference):
            return self.conversation.require(item.id, param=f"response.input.{index}.id")
        return prepare_client_item(item)

    def _attach_fresh_image(self) -> None:
        """On response.create while video is live, the model looks: the freshest frame becomes a user
        item (unless the latest user turn already carries one, e.g. a voice turn committed with it)."""
        last_user = next((i for i in reversed(self.conversation.items) if isinstance(i, UserMessageItem)), None)
        if last_user is not None and any(isinstance(p, InputImageContent) for p in last_user.content) \
                and last_user is self.conversation.items[-1]:
            return
        snapshot = self.image_source() if self.image_source else None
        if not snapshot or self.images >= self.limits.max_images:
            return
        item = UserMessageItem(id=ids.item_id(), content=[
            InputImageContent(image_url=snapshot["image_url"], detail=snapshot.get("detail", "auto"))])
        self.images += 1
        self.conversation.add(item)

    def _image_tokens(self, context: list[AnyItem]) -> int:
        if not self.answers or not self.models.llm.supports_images:
            return 0
        return sum(image_tokens_for_data_url(p.image_url, p.detail) for i in context if isinstance(i, MessageItem)
                   for p in i.content if isinstance(p, InputImageContent))

    def _chat_request(self, params: ResponseCreateParams, context: list[AnyItem],
                      mcp_offered: dict[str, McpServer] | None = None) -> Callable[[], ChatRequest]:
        """The response's request, built when the response starts: its transcripts are known then."""
        config = self.config
        assert isinstance(config, RealtimeSessionConfig)
        window = self.context_window if params.input is None else ContextWindow()
        with_images = self.answers and bool(self.models.llm.supports_images)

        def build() -> ChatRequest:
            return build_chat_request(config, params, context, transcripts=self.conversation.transcripts(),
                                      window=window, mcp_offered=mcp_offered, with_images=with_images,
                                      session_key=self.id)

        return build

    # ---- helpers -----------------------------------------------------------------------------
    def _session_obj(self) -> Any:
        return session_object(self.config, id=self.id, expires_at=self.expires_at)
