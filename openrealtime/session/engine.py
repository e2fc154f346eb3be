"""The Realtime session engine (transport-agnostic).

Inputs: raw client events (`handle_message`), canonical input audio (`feed_audio`: PCM16
mono 24 kHz) and playout notifications (`on_playout`). Outputs: server events and speech,
through the `Transport`. Models run in worker threads (`workers`), never on the loop.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from .. import ids
from ..audio.convert import g711_decode, g711_encode, pcm24k_to_f32_16k
from ..audio.format import BYTES_PER_MS, SAMPLE_RATE
from ..audio.frame_resampler import FrameResampler
from ..engines.base import ChatRequest, ModelStack, Prefilling, SessionAware
from ..engines.egress import EgressPolicy
from ..engines.foreground import in_foreground
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
from ..protocol.session import (
    FunctionTool,
    RealtimeSessionConfig,
    RetentionRatioTruncation,
    TranscriptionSessionConfig,
    session_object,
)
from ..runtime import Runtime
from .audio_buffer import InputAudioBuffer
from .clauses import announcing_first_clause
from .conversation import (AUTO_RETENTION, ContextWindow, Conversation, content_bytes, message_chars,
                           to_chat_messages)
from .mcp_tools import SessionMcp
from .response import AUDIO_TOKENS_PER_SECOND, MAX_TOKENS_WHEN_INF, ResponseRun, spoken_voice
from .transport import Transport
from .speculation import (BufferedStream, SpeculativeSpeech, TurnSpeculation, WarmState, first_clause,
                          sounds_complete)
from .turn_detection import SilenceBegan, SpeechResumed, SpeechStarted, SpeechStopped, TurnDetector, VadParams

log = logging.getLogger(__name__)

MIN_COMMIT_MS = 100
VAD_RATE = 16000
CONTEXT_CHARS = 12_000  # the context budget: recent conversation that fits the local model
# truncation.token_limits.post_instructions is in tokens; the budget is measured in characters
# (model-independent, no tokenizer call per item): English text runs ≈ 4 characters per token.
CHARS_PER_TOKEN = 4


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
    def __init__(self, transport: Transport, config: RealtimeSessionConfig | TranscriptionSessionConfig, *,
                 mode: str = "local", models: ModelStack | None = None, limits: SessionLimits | None = None,
                 echo_delay_s: float = 0.3, egress: EgressPolicy | None = None,
                 runtime: Runtime | None = None) -> None:
        self.transport = transport
        # how model work runs (pools, foreground gate, clock): the server's, shared by its sessions
        self.runtime = runtime if runtime is not None else Runtime()
        self.config = config
        self.mode = mode
        self.models = models
        self.limits = limits or SessionLimits()
        self.id = ids.session_id()
        self.created_at = time.time()
        self.expires_at = int(self.created_at + self.limits.max_duration_s)
        self.echo_delay_s = echo_delay_s
        self.closed = False
        self.conversation = Conversation(ids.conversation_id(), self.limits.max_items)
        self.context_window = ContextWindow()  # truncation state of the default conversation
        # the MCP servers named by tools (mcp_tools.py); without a policy: public addresses only
        self.mcp = SessionMcp(self, egress if egress is not None else EgressPolicy())
        self.buffer = InputAudioBuffer(self.limits.max_input_buffer_ms)
        self.turn = TurnDetector(VadParams())
        self.voice_locked = False
        self.images = 0
        self.image_source: ImageSource | None = None
        self.active: ResponseRun | None = None  # the default conversation's response
        self.out_of_band: dict[str, ResponseRun] = {}
        self.playing: dict[str, ResponseRun] = {}  # response id -> run whose audio may still play
        self._pending_item_id: str | None = None
        self._idle_anchor_ms: int | None = None
        self._speculation: TurnSpeculation | None = None
        self._warm = WarmState()
        self._vad_stream = models.vad.new_stream() if models is not None else None
        self._vad_resampler = FrameResampler("flt", "mono", VAD_RATE)  # libswresample, no threads
        self._vad_pending = np.zeros(0, dtype=np.float32)
        self._vad_clock_ms = 0.0
        self._vad_busy = False
        self._echo_ids = (ids.response_id(), ids.item_id())
        self._tasks: set[asyncio.Task] = set()
        self._overflow_reported = False
        self.stats = {"responses": 0, "barge_ins": 0, "vad_frames": 0, "asr_speculative_hits": 0,
                      "asr_speculative_misses": 0, "asr_speculative_started": 0, "answers_speculated": 0,
                      "answers_adopted": 0, "speculations_abandoned": 0, "prefix_warmings": 0,
                      "prefix_tokens_warmed": 0, "speech_speculated": 0, "speech_adopted": 0,
                      "asr_partials_reused": 0, "prefix_warmings_deferred": 0}
        self._apply_config()
        if transport.audio_out is not None:
            transport.audio_out.set_listener(self.on_playout)

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
        self._drop_speculation()
        self._warm.cancel()
        for task in list(self._tasks):
            task.cancel()
        self.mcp.close()
        self._forget_model_state()
        # a finished call's objects are freed by Python's cyclic collector (aiortc's are full of cycles), which
        # may run minutes later: its audio (input buffer, conversation audio, VAD backlog) goes now
        self.buffer.clear()
        self.conversation.release_audio()
        self._vad_pending = np.zeros(0, dtype=np.float32)
        self.closed = True

    def _forget_model_state(self) -> None:
        """The local LLM keeps per-session prompt state (KV snapshots, keyed by this session's id) until
        told the session is over; remote LLMs keep none (no `forget_session`). Never blocks the loop."""
        llm = self.models.llm if self.models is not None else None
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

    # ---- outputs -----------------------------------------------------------------------------
    def emit(self, event: Any) -> None:
        if not self.closed:
            self.transport.send(event)

    def send_error(self, exc: ProtocolError) -> None:
        self.emit(ev.ErrorEvent(error=exc.detail()))

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
        elif out is None or run.id not in self.playing:
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

    # ---- inputs ------------------------------------------------------------------------------
    def handle_message(self, raw: str | bytes) -> None:
        try:
            event = parse_client_event(raw, max_bytes=self.limits.max_event_bytes)
        except ProtocolError as exc:
            self.send_error(exc)
            return
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
        if self.mode == "echo":
            self._echo(pcm)
            return
        self.buffer.append(pcm)
        if self.buffer.overflowed and not self._overflow_reported:
            self._overflow_reported = True
            self.send_error(ProtocolError(
                f"The input audio buffer exceeded {self.limits.max_input_buffer_ms // 1000} s without a commit; "
                "the oldest audio is being dropped. Commit (input_audio_buffer.commit) or clear it.",
                code="input_audio_buffer_overflow", param="audio"))
        elif not self.buffer.overflowed:
            self._overflow_reported = False
        if self.config.audio.input.turn_detection is not None and self._vad_stream is not None:
            frame = av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
            frame.planes[0].update(pcm)
            frame.sample_rate = SAMPLE_RATE
            for out in self._vad_resampler.resample(frame):
                self._vad_pending = np.concatenate([self._vad_pending, out.to_ndarray().reshape(-1)])
            self._pump_vad()

    # ---- VAD → turns -------------------------------------------------------------------------
    def _pump_vad(self) -> None:
        vad = self.models.vad if self.models else None
        if vad is None or self._vad_busy:
            return
        n = vad.frame_samples
        count = len(self._vad_pending) // n
        if count == 0:
            return
        frames = self._vad_pending[: count * n].reshape(count, n)
        self._vad_pending = self._vad_pending[count * n:]
        self._vad_busy = True
        stream = self._vad_stream
        task = asyncio.ensure_future(self.runtime.run("vad", lambda: [stream.probability(f) for f in frames]))
        task.add_done_callback(lambda t: self._vad_done(t, n))

    def _vad_done(self, task: asyncio.Future, frame_samples: int) -> None:
        self._vad_busy = False
        if self.closed or task.cancelled():
            return
        if task.exception() is not None:
            log.error("VAD failed: %s", task.exception())
            return
        frame_ms = frame_samples * 1000 / VAD_RATE
        td = self.config.audio.input.turn_detection
        for prob in task.result():
            self._vad_clock_ms += frame_ms
            self.stats["vad_frames"] += 1
            if td is None:
                break
            for event in self.turn.feed(prob, self._vad_clock_ms, frame_ms):
                self._on_turn_event(event)
            # at each frame, not once per batch: a batch may hold a whole utterance when the VAD thread
            # fell behind, and the warm-up is due while the user speaks, not after
            self._maybe_warm_prefix()
        if not self.turn.speaking:
            keep_from = int(self._vad_clock_ms) - self.turn.params.prefix_padding_ms - 200
            self.buffer.trim_before(keep_from)
            self._check_idle_timeout()
        self._pump_vad()

    def _on_turn_event(self, event: object) -> None:
        td = self.config.audio.input.turn_detection
        if isinstance(event, SpeechStarted):
            self._drop_speculation()
            self._warm.cancel()
            self._warm = WarmState()
            self._pending_item_id = ids.item_id()
            self._idle_anchor_ms = None
            self.emit(ev.InputAudioBufferSpeechStartedEvent(audio_start_ms=event.audio_start_ms,
                                                            item_id=self._pending_item_id))
            if td is not None and td.interrupt_response:
                self._interrupt()
        elif isinstance(event, SilenceBegan):
            heard = self._warm.transcript_of(event.audio_start_ms, event.speech_end_ms)
            self._warm.cancel()  # the cores are for the final transcription now
            self._speculate(event.audio_start_ms, event.speech_end_ms, heard)
        elif isinstance(event, SpeechResumed):
            self._drop_speculation()
        elif isinstance(event, SpeechStopped):
            item_id = self._pending_item_id or ids.item_id()
            self._pending_item_id = None
            self.emit(ev.InputAudioBufferSpeechStoppedEvent(audio_end_ms=event.audio_end_ms, item_id=item_id))
            spec, self._speculation = self._speculation, None
            if spec is not None and not spec.matches(event.audio_start_ms,
                                                     event.audio_end_ms - self.turn.params.silence_duration_ms):
                self._abandon(spec)
                spec = None
            self.stats["asr_speculative_hits" if spec else "asr_speculative_misses"] += 1
            pcm = self.buffer.take(event.audio_start_ms, event.audio_end_ms)
            self._commit_audio(pcm, item_id, speculative=spec.asr if spec else None)
            if td is not None and td.create_response and isinstance(self.config, RealtimeSessionConfig):
                self._auto_response(spec)
            elif spec is not None:
                spec.drop_answer()

    def _check_idle_timeout(self) -> None:
        td = self.config.audio.input.turn_detection
        timeout = getattr(td, "idle_timeout_ms", None)
        if not timeout or self._idle_anchor_ms is None or self.active is not None or self.playing:
            return
        now = int(self._vad_clock_ms)
        if now - self._idle_anchor_ms < timeout:
            return
        start = self._idle_anchor_ms
        self._idle_anchor_ms = None
        item_id = ids.item_id()
        self.emit(ev.InputAudioBufferTimeoutTriggeredEvent(audio_start_ms=start, audio_end_ms=now, item_id=item_id))
        self._commit_audio(self.buffer.take(start, now), item_id)
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

    # ---- speculation (see speculation.py) ------------------------------------------------------
    def _speculate(self, start_ms: int, speech_end_ms: int, heard: asyncio.Future | None = None) -> None:
        """Transcribe during the silence hangover and, if a response will follow, start answering.
        `heard`: a partial transcription that already covers all of the speech (used as is)."""
        if self.models is None:
            return
        self._drop_speculation()
        if heard is not None:
            self.stats["asr_partials_reused"] += 1
            asr = heard
        else:
            pcm = self.buffer.peek(start_ms, int(self._vad_clock_ms))  # includes the silence heard so far
            asr = asyncio.ensure_future(self._asr(pcm))
        spec = self._speculation = TurnSpeculation(start_ms, speech_end_ms, asr)
        spec.task = self._spawn(self._speculate_answer(spec))
        log.debug("speculating on %d-%d ms (silence so far %d ms)", start_ms, speech_end_ms,
                  int(self._vad_clock_ms) - speech_end_ms)
        self.stats["asr_speculative_started"] += 1

    def _wants_auto_response(self) -> bool:
        td = self.config.audio.input.turn_detection
        return (self.models is not None and not self.closed and self.active is None and td is not None
                and bool(td.create_response) and isinstance(self.config, RealtimeSessionConfig))

    def _provisional_request(self, text: str) -> ChatRequest:
        """The request an automatic response would make if the user's turn were `text`."""
        provisional = UserMessageItem(id="provisional", content=[InputTextContent(text=text)])
        return self._chat_request(ResponseCreateParams(), [*self.conversation.items, provisional])()

    async def _speculate_answer(self, spec: TurnSpeculation) -> None:
        try:
            result = await asyncio.shield(spec.asr)
        except Exception:  # the commit will transcribe again and report the failure
            return
        text = result.text.strip()
        if self._speculation is not spec or not text or not self._wants_auto_response():
            return
        log.debug("speculative transcript %r; answering ahead of the commit", text)
        request = spec.request = self._provisional_request(text)
        llm, cancel = self.models.llm, spec.cancel_event
        provisional = RealtimeResponse.from_params(None, self.config, conversation_id=None)
        speaks = provisional.output_modalities == ["audio"]
        gate = self.runtime.gate
        spec.answer = BufferedStream(self.runtime.stream(
            "llm", lambda: announcing_first_clause(llm.stream_chat(request, cancel), gate, speaks), cancel))
        self.stats["answers_speculated"] += 1
        if speaks:
            spec.speech_task = self._spawn(self._speculate_speech(spec, spoken_voice(provisional), self.speech_speed))

    async def _speculate_speech(self, spec: TurnSpeculation, voice: str, speed: float) -> None:
        """Synthesize the speculative answer's first clause, unless a response took the answer first."""
        answer = spec.answer
        clause = await first_clause(answer.replay()) if answer is not None else None
        if clause is None or spec.adopted or self._speculation is not spec or spec.cancel_event.is_set():
            return
        tts, cancel = self.models.tts, threading.Event()
        log.debug("speculative first clause %r: synthesizing ahead of the commit", clause)
        gate = self.runtime.gate
        audio = BufferedStream(self.runtime.stream(
            "tts", lambda: in_foreground(tts.synthesize(clause, voice=voice, speed=speed, cancel=cancel), gate),
            cancel))
        spec.speech = SpeculativeSpeech(clause, voice, speed, audio, cancel)
        self.stats["speech_speculated"] += 1

    def _abandon(self, spec: TurnSpeculation) -> None:
        spec.cancel()
        self.stats["speculations_abandoned"] += 1

    def _drop_speculation(self) -> None:
        spec, self._speculation = self._speculation, None
        if spec is not None:
            self._abandon(spec)

    def _maybe_warm_prefix(self) -> None:
        """While the user speaks: transcribe what was said so far and prefill the model with it."""
        llm = self.models.llm if self.models is not None else None
        prefill = llm.prefill if isinstance(llm, Prefilling) else None
        now = int(self._vad_clock_ms)
        if prefill is None or not self._wants_auto_response() or not self.turn.voiced_at(self._vad_clock_ms) \
                or not self._warm.due(self.turn.speech_start_ms, now):
            return
        if self.runtime.busy("asr"):  # another turn's transcription (e.g. another session's): it goes first
            self.stats["prefix_warmings_deferred"] += 1
            return
        warm = self._warm
        warm.start_ms, warm.upto_ms = self.turn.speech_start_ms, now
        warm.asr = asyncio.ensure_future(self._asr(self.buffer.peek(warm.start_ms, now), partial=True))
        warm.asr.add_done_callback(lambda f: f.cancelled() or f.exception())  # failures are only logged
        warm.task = self._spawn(self._warm_prefix(warm, prefill))

    async def _warm_prefix(self, warm: WarmState, prefill: Callable[..., int]) -> None:
        try:
            # shielded: cancelling the warm-up leaves the transcription to a speculation that may reuse it
            result = await asyncio.shield(warm.asr)
        except Exception:
            return
        text = result.text.strip()
        if not text or warm is not self._warm or warm.cancel_event.is_set() or not self._wants_auto_response():
            return
        request = self._provisional_request(text)
        complete = sounds_complete(text)
        tokens = await self.runtime.run("warm", lambda: prefill(request, warm.cancel_event, complete=complete))
        self.stats["prefix_warmings"] += 1
        self.stats["prefix_tokens_warmed"] += int(tokens or 0)

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
            played = self.transport.audio_out.played_ms(run.message.item.id)
            self.conversation.truncate_audio(run.message.item.id, played)
            self.emit(ev.ConversationItemTruncatedEvent(item_id=run.message.item.id, content_index=0,
                                                        audio_end_ms=played))
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
            self.conversation.truncate_audio(cleared.item_id, cleared.played_ms)
            self.emit(ev.ConversationItemTruncatedEvent(item_id=cleared.item_id, content_index=0,
                                                        audio_end_ms=cleared.played_ms))
        self._idle_anchor_ms = self.buffer.now_ms
        return cleared.item_id

    # ---- client events -----------------------------------------------------------------------
    def _dispatch(self, event: Any) -> None:
        handler = getattr(self, "_on_" + event.type.replace(".", "_"))
        handler(event)

    def _on_session_update(self, event: ce.SessionUpdateEvent) -> None:
        config = event.apply(self.config, voice_locked=self.voice_locked)
        if isinstance(config, RealtimeSessionConfig):
            self.mcp.configure(config.tools, param="session.tools")
        self.config = config
        self._apply_config()
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
        self.turn.reset()
        self._commit_audio(self.buffer.take(), item_id)

    def _on_input_audio_buffer_clear(self, event: ce.InputAudioBufferClearEvent) -> None:
        self.buffer.clear()
        self.turn.reset()
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
        previous = self.conversation.insert(item, event.previous_item_id)
        self.conversation.client_bytes[item.id or ""] = size
        self.images += images
        self.emit(ev.ConversationItemAddedEvent(previous_item_id=previous, item=item))
        self.emit(ev.ConversationItemDoneEvent(previous_item_id=previous, item=item))
        if isinstance(item, McpApprovalResponseItem):
            self.mcp.approval_answered(item)
        if isinstance(item, UserMessageItem):
            for index, part in enumerate(item.content):
                if isinstance(part, InputAudioContent) and part.audio and part.transcript is None:
                    pcm = base64.b64decode(part.audio)
                    self.conversation.add_audio(item.id, pcm)
                    part.audio = None
                    self._start_transcription(item, pcm, content_index=index)

    def _on_conversation_item_retrieve(self, event: ce.ConversationItemRetrieveEvent) -> None:
        item = self.conversation.require(event.item_id).model_copy(deep=True)
        self.conversation.retrieve_wire_audio(item)
        self.emit(ev.ConversationItemRetrievedEvent(item=item))

    def _on_conversation_item_delete(self, event: ce.ConversationItemDeleteEvent) -> None:
        self.conversation.delete(event.item_id)
        self.emit(ev.ConversationItemDeletedEvent(item_id=event.item_id))

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
        self.conversation.truncate_audio(item.id, event.audio_end_ms)
        self.emit(ev.ConversationItemTruncatedEvent(item_id=item.id, content_index=event.content_index,
                                                    audio_end_ms=event.audio_end_ms))

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

    # ---- commits, transcription ----------------------------------------------------------------
    def _commit_audio(self, pcm: bytes, item_id: str, *, speculative: asyncio.Task | None = None) -> None:
        content: list[Any] = [InputAudioContent(transcript=None)]
        snapshot = self.image_source() if self.image_source is not None else None
        if snapshot is not None and self.images < self.limits.max_images:
            content.append(InputImageContent(image_url=snapshot["image_url"], detail=snapshot.get("detail", "auto")))
            self.images += 1
        item = UserMessageItem(id=item_id, content=content)
        if len(self.conversation) >= self.limits.max_items:
            oldest = self.conversation.oldest_evictable()
            if oldest is not None:
                self.conversation.delete(oldest.id)
                self.emit(ev.ConversationItemDeletedEvent(item_id=oldest.id))
        previous = self.conversation.insert(item)
        self.conversation.add_audio(item_id, pcm)
        self.emit(ev.InputAudioBufferCommittedEvent(previous_item_id=previous, item_id=item_id))
        self.emit(ev.ConversationItemAddedEvent(previous_item_id=previous, item=item))
        self.emit(ev.ConversationItemDoneEvent(previous_item_id=previous, item=item))
        self._start_transcription(item, pcm, content_index=0, speculative=speculative)

    def _start_transcription(self, item: UserMessageItem, pcm: bytes, *, content_index: int,
                             speculative: asyncio.Task | None = None) -> None:
        if self.models is None:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        self.conversation.audio_of(item.id).transcript_future = future
        self._spawn(self._transcribe(item, pcm, content_index, future, speculative))

    async def _asr(self, pcm: bytes, *, partial: bool = False):
        stt = self.models.stt
        tc = self.config.audio.input.transcription
        language = tc.language if tc else None
        prompt = tc.prompt if tc else None
        audio = pcm24k_to_f32_16k(pcm)
        extra = {"logprobs": True} if self._wants_logprobs() else {}

        gate = self.runtime.gate

        def transcribe() -> Any:
            if partial:
                return stt.transcribe(audio, language=language, prompt=prompt, **extra)
            with gate.hold():  # the turn's words: the reply waits for them (engines/foreground.py)
                return stt.transcribe(audio, language=language, prompt=prompt, **extra)

        return await self.runtime.run("asr", transcribe)

    def _wants_logprobs(self) -> bool:
        return "item.input_audio_transcription.logprobs" in (self.config.include or [])

    async def _transcribe(self, item: UserMessageItem, pcm: bytes, content_index: int, future: asyncio.Future,
                          speculative: asyncio.Task | None) -> None:
        report = self.config.audio.input.transcription is not None
        try:
            result = None
            if speculative is not None:
                try:
                    result = await speculative
                except Exception:
                    result = None
            if result is None:
                result = await self._asr(pcm)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            log.exception("transcription failed for %s", item.id)
            future.set_result("")
            if report:
                self.emit(ev.ConversationItemInputAudioTranscriptionFailedEvent(
                    item_id=item.id, content_index=content_index,
                    error=ev.TranscriptionError(code="transcription_failed", message=str(exc))))
            return
        text = result.text.strip()
        part = item.content[content_index]
        if isinstance(part, InputAudioContent):
            part.transcript = text
        future.set_result(text)
        if report:
            audio_tokens = int(len(pcm) / BYTES_PER_MS * AUDIO_TOKENS_PER_SECOND / 1000)
            logprobs = [ev.LogProb(**lp) for lp in result.logprobs] \
                if self._wants_logprobs() and result.logprobs is not None else None
            self.emit(ev.ConversationItemInputAudioTranscriptionDeltaEvent(
                item_id=item.id, content_index=content_index, delta=text, logprobs=logprobs))
            self.emit(ev.ConversationItemInputAudioTranscriptionCompletedEvent(
                item_id=item.id, content_index=content_index, transcript=text, logprobs=logprobs,
                usage=ev.TranscriptionTokenUsage(
                    input_tokens=audio_tokens, output_tokens=result.output_tokens,
                    total_tokens=audio_tokens + result.output_tokens,
                    input_token_details={"text_tokens": 0, "audio_tokens": audio_tokens})))

    # ---- responses ---------------------------------------------------------------------------
    def _create_response(self, params: ResponseCreateParams | None, *,
                         speculation: TurnSpeculation | None = None) -> None:
        if not isinstance(self.config, RealtimeSessionConfig):
            raise ProtocolError("Transcription sessions do not generate responses.", code="invalid_value",
                                param="type")
        if self.models is None:
            raise ProtocolError("This server runs without a language model (engine 'echo'); responses are "
                                "unavailable. Start it with --engine local.", code="model_not_available",
                                type="server_error")
        params = params or ResponseCreateParams()
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
                          pending_transcripts=pending, speculation=speculation, mcp_offered=offered)
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
        previous = self.conversation.insert(item)
        self.images += 1
        self.emit(ev.ConversationItemAddedEvent(previous_item_id=previous, item=item))
        self.emit(ev.ConversationItemDoneEvent(previous_item_id=previous, item=item))

    def _image_tokens(self, context: list[AnyItem]) -> int:
        if self.models is None or not self.models.llm.supports_images:
            return 0
        from ..media.image_tokens import image_tokens_for_data_url

        return sum(image_tokens_for_data_url(p.image_url, p.detail) for i in context if isinstance(i, MessageItem)
                   for p in i.content if isinstance(p, InputImageContent))

    def _chat_request(self, params: ResponseCreateParams, context: list[AnyItem],
                      mcp_offered: dict[str, Any] | None = None) -> Callable[[], ChatRequest]:
        config = self.config
        assert isinstance(config, RealtimeSessionConfig)
        instructions = params.instructions if params.instructions is not None else config.instructions
        tools = params.tools if params.tools is not None else config.tools
        tool_choice = params.tool_choice if params.tool_choice is not None else config.tool_choice
        max_tokens = params.max_output_tokens if params.max_output_tokens is not None else config.max_output_tokens
        chat_tools = [{"type": "function", "function": {"name": t.name, "description": t.description or "",
                                                        "parameters": t.parameters or {"type": "object",
                                                                                       "properties": {}}}}
                      for t in tools if isinstance(t, FunctionTool)]
        offered = mcp_offered or {}
        kind = getattr(tool_choice, "type", None)
        if kind == "mcp":  # one of that server's tools: only they are offered
            chat_tools = []
            offered = {name: server for name, server in offered.items() if server.label == tool_choice.server_label}
        chat_tools += SessionMcp.chat_tools(offered)
        if isinstance(tool_choice, str):
            choice: Any = tool_choice
        elif kind == "function" or (kind == "mcp" and tool_choice.name):
            choice = {"type": "function", "function": {"name": tool_choice.name}}
        else:
            choice = "required" if kind == "mcp" else "auto"
        in_conversation = params.input is None
        truncation = config.truncation
        retention = None if truncation == "disabled" else \
            truncation.retention_ratio if isinstance(truncation, RetentionRatioTruncation) else AUTO_RETENTION
        limits = truncation.token_limits if isinstance(truncation, RetentionRatioTruncation) else None
        budget = CONTEXT_CHARS if limits is None or limits.post_instructions is None else \
            min(CONTEXT_CHARS, limits.post_instructions * CHARS_PER_TOKEN)
        with_images = bool(self.models and self.models.llm.supports_images)
        notes = "" if with_images or not any(isinstance(p, InputImageContent) for i in context
                                             if isinstance(i, MessageItem) for p in i.content) else \
            " (Images the user shared are not visible to you: no vision model is configured on this server.)"

        def build() -> ChatRequest:
            transcripts = {item_id: (a.transcript_future.result() if a.transcript_future and
                                     a.transcript_future.done() and not a.transcript_future.cancelled() else "")
                           for item_id, a in self.conversation.audio.items()}
            def size_of(item: AnyItem) -> int:
                return sum(message_chars(m) for m in to_chat_messages([item], transcripts, with_images=with_images)[0])

            window = self.context_window if in_conversation else ContextWindow()
            kept = window.select(context, size_of, budget, retention)
            messages, _ = to_chat_messages(kept, transcripts, with_images=with_images)
            system = {"role": "system", "content": instructions + notes}
            return ChatRequest(messages=[system, *messages], tools=chat_tools, tool_choice=choice,
                               max_tokens=MAX_TOKENS_WHEN_INF if max_tokens == "inf" else int(max_tokens),
                               session_key=self.id)

        return build

    @property
    def speech_speed(self) -> float:
        return self.config.audio.output.speed if isinstance(self.config, RealtimeSessionConfig) else 1.0

    # ---- helpers -----------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> asyncio.Task:
        """A task the session owns: cancelled when the session closes; a failure is logged (runtime.py)."""
        task = self.runtime.spawn(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _apply_config(self) -> None:
        td = self.config.audio.input.turn_detection
        if td is not None:
            self.turn.params = VadParams.from_config(td)
        else:
            self.turn.reset()

    def _echo(self, pcm: bytes) -> None:
        out = self.transport.audio_out
        if out is None:
            return
        rid, iid = self._echo_ids
        asyncio.get_running_loop().call_later(
            self.echo_delay_s, lambda: None if self.closed else out.write(pcm, response_id=rid, item_id=iid))

    def _session_obj(self) -> Any:
        return session_object(self.config, id=self.id, expires_at=self.expires_at)
