"""One response: LLM text streamed into clauses, clauses into speech, with the GA event
sequence (spec §9.1) emitted in order. Cancellation finalizes synchronously so the
interruption events keep their documented order."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import ids
from ..audio.convert import f32_to_canonical
from ..audio.format import BYTES_PER_MS
from ..engines.base import BackendError, BackendTimeout, ChatRequest, Finished, TextDelta, ToolCallDelta
from ..engines.foreground import in_foreground
from ..protocol import server_events as ev
from ..protocol.errors import ProtocolError
from ..protocol.items import (AnyItem, AssistantMessageItem, FunctionCallItem, McpApprovalRequestItem, McpCallItem,
                              OutputAudioContent, OutputTextContent)
from ..protocol.responses import RealtimeResponse, ResponseError, ResponseUsage
from .clauses import ClauseSplitter, announcing_first_clause
from .context import SessionContext
from .mcp_tools import McpServer, SessionMcp
from .speculation import SpeculativeSpeech, TurnSpeculation

log = logging.getLogger(__name__)

AUDIO_TOKENS_PER_SECOND = 10  # documented usage formula for audio (input and output)


@dataclass
class _MessageState:
    item: AssistantMessageItem
    output_index: int
    text: list[str] = field(default_factory=list)
    audio_ms: int = 0


@dataclass
class _CallState:
    item: FunctionCallItem | McpCallItem | McpApprovalRequestItem
    output_index: int
    arguments: list[str] = field(default_factory=list)
    server: "McpServer | None" = None  # an MCP tool's server (mcp_tools.py)


class ResponseRun:
    """`session`: what the response sees of its session (context.py); `mcp`: the session's MCP
    servers, which run the MCP calls the model makes (`mcp_offered`: tool name -> server)."""

    def __init__(self, session: SessionContext, response: RealtimeResponse, build_request: Callable[[], ChatRequest],
                 *, in_conversation: bool, input_audio_ms: int, image_tokens: int,
                 pending_transcripts: list[asyncio.Future], mcp: SessionMcp, speculation: TurnSpeculation | None = None,
                 mcp_offered: dict[str, McpServer] | None = None) -> None:
        self.session = session
        self.mcp = mcp
        self.response = response
        self.build_request = build_request
        self.request: ChatRequest | None = None
        self.in_conversation = in_conversation
        self.audio_mode = response.output_modalities == ["audio"]
        self.input_audio_ms = input_audio_ms
        self.image_tokens = image_tokens
        self.pending_transcripts = pending_transcripts
        self.speculation = speculation  # an answer may already be under way (speculation.py)
        self.speculative = False  # whether this response adopted it
        self._adopted: TurnSpeculation | None = None  # the speculation whose answer this response took
        self._speech: SpeculativeSpeech | None = None  # its first clause's audio, when this response uses it
        self.cancel_event = threading.Event()
        self.finished = False
        self.message: _MessageState | None = None
        self.calls: dict[int, _CallState] = {}
        self.mcp_offered = mcp_offered or {}  # MCP tool name -> its server
        self.audio_out_ms = 0
        self._tts_queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._tts_task: asyncio.Task | None = None
        self._tts_failed = False
        self.task: asyncio.Task | None = None
        self.started_at = session.runtime.now()
        self.first_audio_at: float | None = None
        self.first_token_at: float | None = None

    @property
    def id(self) -> str:
        return self.response.id

    def start(self) -> None:
        self.task = self.session.runtime.spawn(self._run(), name=f"response-{self.id}")

    # ---- main flow ---------------------------------------------------------------------------
    async def _run(self) -> None:
        finished: Finished | None = None
        try:
            if self.pending_transcripts:
                # shielded: cancelling this response must not cancel the transcriptions it waits for
                await asyncio.gather(*map(asyncio.shield, self.pending_transcripts), return_exceptions=True)
            if self.finished:
                return
            request = self.request = self.build_request()
            splitter = ClauseSplitter()
            if self.audio_mode:
                self._tts_task = self.session.runtime.spawn(self._speak(), name=f"speech-{self.id}")
            async for delta in self._answer(request):
                if self.finished:
                    return
                if isinstance(delta, TextDelta):
                    if self.first_token_at is None:
                        self.first_token_at = self.session.runtime.now()
                    self._on_text(delta.text)
                    if self.audio_mode and not self._tts_failed:
                        for clause in splitter.push(delta.text):
                            log.debug("clause for TTS: %r", clause)
                            self._tts_queue.put_nowait(clause)
                elif isinstance(delta, ToolCallDelta):
                    self._on_tool_call(delta)
                elif isinstance(delta, Finished):
                    finished = delta
            if self.finished:
                return
            if self.audio_mode:
                for clause in splitter.flush():
                    self._tts_queue.put_nowait(clause)
                self._tts_queue.put_nowait(None)
                await self._tts_task
            if self.calls and not self.finished:
                await self._run_mcp_calls()
            if self.finished:
                return
            reason = finished.reason if finished else "stop"
            if reason == "length":
                self.finalize("incomplete", reason="max_output_tokens", finished=finished)
            else:
                self.finalize("completed", finished=finished)
        except asyncio.CancelledError:
            self.finalize("cancelled", reason="client_cancelled", finished=finished)
            raise
        except BackendError as exc:  # the server named in the message failed, hung or broke off
            log.warning("response %s failed: %s", self.id, exc)
            code = "backend_timeout" if isinstance(exc, BackendTimeout) else "backend_error"
            self.finalize("failed", error=ResponseError(type="server_error", code=code, message=str(exc)),
                          finished=finished, message=str(exc), code=code)
        except Exception as exc:
            log.exception("response %s failed", self.id)
            message = f"The model backend failed: {exc}"
            self.finalize("failed", error=ResponseError(type="server_error", code="model_error", message=message),
                          finished=finished, message=message)

    def _answer(self, request: ChatRequest) -> AsyncIterator[Any]:
        """The model's deltas: the speculative answer if it was made for this very request."""
        spec, self.speculation = self.speculation, None
        answer = spec.take_answer(request) if spec is not None else None
        if answer is not None and spec is not None:
            if self.cancel_event.is_set():
                spec.cancel_event.set()
            self.cancel_event = spec.cancel_event  # the model thread watches this one
            self.speculative = True
            self._adopted = spec
            self.session.stats["answers_adopted"] += 1
            return answer.replay()
        llm, cancel = self.session.models.llm, self.cancel_event
        runtime = self.session.runtime
        return runtime.stream("llm", lambda: announcing_first_clause(llm.stream_chat(request, cancel), runtime.gate,
                                                                      self.audio_mode), cancel)

    # ---- streaming pieces --------------------------------------------------------------------
    def _open_message(self) -> _MessageState:
        if self.message is None:
            item = AssistantMessageItem(id=ids.item_id(), status="in_progress", content=[])
            state = _MessageState(item, len(self.response.output))
            self.response.output.append(item)
            self.message = state
            self._item_added(item, state.output_index)
            part = ev.ResponsePart(type="audio", transcript="") if self.audio_mode else ev.ResponsePart(type="text", text="")
            self.session.emit(ev.ResponseContentPartAddedEvent(
                response_id=self.id, item_id=item.id, output_index=state.output_index, content_index=0, part=part))
        return self.message

    def _on_text(self, text: str) -> None:
        if not text:
            return
        msg = self._open_message()
        msg.text.append(text)
        cls = ev.ResponseOutputAudioTranscriptDeltaEvent if self.audio_mode else ev.ResponseOutputTextDeltaEvent
        self.session.emit(cls(response_id=self.id, item_id=msg.item.id, output_index=msg.output_index,
                             content_index=0, delta=text))

    def _on_tool_call(self, delta: ToolCallDelta) -> None:
        state = self.calls.get(delta.index)
        if state is None and self.calls and self.request is not None and self.request.parallel_tool_calls is False:
            return  # parallel_tool_calls: false — one call per response; the model's further calls are dropped
        if state is None:
            server = self.mcp_offered.get(delta.name or "")
            item: FunctionCallItem | McpCallItem | McpApprovalRequestItem
            if server is None:
                item = FunctionCallItem(id=ids.item_id(), status="in_progress",
                                        call_id=delta.call_id or ids.call_tool_id(), name=delta.name or "", arguments="")
            elif server.needs_approval(delta.name or ""):
                item = McpApprovalRequestItem(id=ids.item_id(), server_label=server.label, name=delta.name or "",
                                              arguments="")
            else:
                item = McpCallItem(id=ids.item_id(), server_label=server.label, name=delta.name or "", arguments="")
            state = _CallState(item, len(self.response.output), server=server)
            self.calls[delta.index] = state
            self.response.output.append(item)
            self._item_added(item, state.output_index)
        if delta.name and not state.item.name:
            state.item.name = delta.name
        if not delta.arguments:
            return
        state.arguments.append(delta.arguments)
        item = state.item
        if isinstance(item, FunctionCallItem):
            self.session.emit(ev.ResponseFunctionCallArgumentsDeltaEvent(
                response_id=self.id, item_id=item.id, output_index=state.output_index,
                call_id=item.call_id, delta=delta.arguments))
        elif isinstance(item, McpCallItem):
            self.session.emit(ev.ResponseMcpCallArgumentsDeltaEvent(
                response_id=self.id, item_id=item.id, output_index=state.output_index, delta=delta.arguments))

    async def _run_mcp_calls(self) -> None:
        """The model's MCP calls, before the response ends: run them, or hand them to the client for
        approval (mcp_tools.py)."""
        mcp = self.mcp
        for state in sorted(self.calls.values(), key=lambda s: s.output_index):
            item = state.item
            if isinstance(item, McpApprovalRequestItem):
                item.arguments = "".join(state.arguments)
                mcp.approval_requested(item)
            elif isinstance(item, McpCallItem) and state.server is not None:
                item.arguments = "".join(state.arguments)
                self.session.emit(ev.ResponseMcpCallArgumentsDoneEvent(
                    response_id=self.id, item_id=item.id, output_index=state.output_index, arguments=item.arguments))
                self.session.emit(ev.ResponseMcpCallInProgressEvent(item_id=item.id, output_index=state.output_index))
                await mcp.run(state.server, item)
                done = ev.ResponseMcpCallFailedEvent if item.error is not None else ev.ResponseMcpCallCompletedEvent
                self.session.emit(done(item_id=item.id, output_index=state.output_index))

    def _item_added(self, item: AnyItem, output_index: int) -> None:
        self.session.emit(ev.ResponseOutputItemAddedEvent(response_id=self.id, output_index=output_index, item=item))
        if self.in_conversation:
            self.session.conversation.add(item, complete=False)

    async def _speak(self) -> None:
        """Synthesize clauses in order and play them as they come."""
        tts = self.session.models.tts
        voice_name = spoken_voice(self.response)
        speed = self.session.speech_speed
        while True:
            clause = await self._tts_queue.get()
            if clause is None or self.finished:
                return
            msg = self._open_message()
            start_ms = msg.audio_ms
            cancel = self.cancel_event

            first = self.first_audio_at is None

            def synthesize(c: str = clause, first: bool = first) -> Iterator[Any]:
                chunks = tts.synthesize(c, voice=voice_name, speed=speed, cancel=cancel)
                return in_foreground(chunks, self.session.runtime.gate) if first else chunks

            try:
                # a first clause is urgent: it starts before other sessions' later clauses queued in the
                # stage (this response's own clauses are synthesized one after another, never reordered)
                async for chunk in self._first_speech(clause, voice_name, speed) or \
                        self.session.runtime.stream("tts", synthesize, threading.Event(), urgent=first):
                    if self.finished:
                        return
                    self._play(chunk, tts.sample_rate, msg)
            except Exception as exc:  # noqa: BLE001 - the text goes on; the audio ends where it got to
                self._speech_failed(exc)
                return
            audio = self.session.conversation.audio_of(msg.item.id) if self.in_conversation else None
            if audio is not None:
                audio.clauses.append((clause, start_ms, msg.audio_ms))

    def _speech_failed(self, exc: Exception) -> None:
        """Text-to-speech failed: say so once; the transcript still completes, no more audio is made."""
        log.warning("response %s: speech synthesis failed: %s", self.id, exc)
        self.session.send_error(ProtocolError(
            f"Speech synthesis failed, so this response's audio ends early (its transcript is complete): {exc}",
            code="tts_error", type="server_error"))
        self._tts_failed = True  # _run queues no more clauses

    def _play(self, chunk: Any, rate: int, msg: _MessageState) -> None:
        if self.first_audio_at is None:
            chunk = trim_leading_silence(chunk, rate)
        pcm = f32_to_canonical(chunk, rate)  # band-limited, for a voice that is not 24 kHz
        if not pcm:
            return
        if self.first_audio_at is None:
            self.first_audio_at = self.session.runtime.now()
            log.debug("first audio of %s queued", self.id)
        msg.audio_ms += len(pcm) // BYTES_PER_MS
        self.audio_out_ms += len(pcm) // BYTES_PER_MS
        self.session.play_audio(pcm, self, msg.item.id, msg.output_index)

    def _first_speech(self, clause: str, voice: str, speed: float) -> AsyncIterator[Any] | None:
        """The audio of the first clause if the speculation already synthesized exactly it."""
        if self.first_audio_at is not None or self._adopted is None:
            return None
        speech = self._adopted.take_speech()
        if speech is None:
            return None
        if not speech.matches(clause, voice, speed):
            speech.cancel()
            return None
        self._speech = speech
        self.session.stats["speech_adopted"] += 1
        return speech.audio.replay()

    # ---- completion --------------------------------------------------------------------------
    def cancel(self, reason: str) -> None:
        """Stop now: emit the closing events synchronously; the model threads stop soon after."""
        if self.finished:
            return
        self.finalize("cancelled", reason=reason)
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def finalize(self, status: str, *, reason: str | None = None, error: ResponseError | None = None,
                 finished: Finished | None = None, message: str | None = None, code: str = "model_error") -> None:
        if self.finished:
            return
        self.finished = True
        self.cancel_event.set()
        if self.speculation is not None:
            self.speculation.drop_answer()
            self.speculation = None
        if self._tts_task is not None and not self._tts_task.done():
            self._tts_task.cancel()
        if self._adopted is not None:
            self._adopted.cancel()  # a first clause still being synthesized ahead, if any
        if self._speech is not None:
            self._speech.cancel()
        item_status = "completed" if status == "completed" else "incomplete"
        emit = self.session.emit
        if self.message is not None:
            msg = self.message
            text = "".join(msg.text)
            item = msg.item
            item.status = item_status
            if self.audio_mode:
                item.content = [OutputAudioContent(transcript=text)]
                emit(ev.ResponseOutputAudioDoneEvent(response_id=self.id, item_id=item.id,
                                                     output_index=msg.output_index, content_index=0))
                emit(ev.ResponseOutputAudioTranscriptDoneEvent(response_id=self.id, item_id=item.id,
                                                               output_index=msg.output_index, content_index=0,
                                                               transcript=text))
                part = ev.ResponsePart(type="audio", transcript=text)
            else:
                item.content = [OutputTextContent(text=text)]
                emit(ev.ResponseOutputTextDoneEvent(response_id=self.id, item_id=item.id,
                                                    output_index=msg.output_index, content_index=0, text=text))
                part = ev.ResponsePart(type="text", text=text)
            emit(ev.ResponseContentPartDoneEvent(response_id=self.id, item_id=item.id, output_index=msg.output_index,
                                                 content_index=0, part=part))
            self._item_done(item, msg.output_index)
        for state in sorted(self.calls.values(), key=lambda s: s.output_index):
            item = state.item
            item.arguments = "".join(state.arguments)
            if isinstance(item, FunctionCallItem):
                item.status = item_status
                emit(ev.ResponseFunctionCallArgumentsDoneEvent(
                    response_id=self.id, item_id=item.id, output_index=state.output_index, call_id=item.call_id,
                    name=item.name, arguments=item.arguments))
            self._item_done(item, state.output_index)
        self.response.finish(status, reason=reason, error=error, usage=self._usage(finished))  # type: ignore[arg-type]
        emit(ev.ResponseDoneEvent(response=self.response))
        if message:
            self.session.send_error(ProtocolError(message, code=code, type="server_error"))
        if self.message is not None and self.audio_mode:
            self.session.end_audio(self, self.message.item.id)
        self.session.response_finished(self)

    def _item_done(self, item: AnyItem, output_index: int) -> None:
        self.session.emit(ev.ResponseOutputItemDoneEvent(response_id=self.id, output_index=output_index, item=item))
        if self.in_conversation:
            self.session.conversation.complete(item)

    def _usage(self, finished: Finished | None) -> ResponseUsage:
        prompt = finished.input_tokens if finished else 0
        cached = finished.cached_tokens if finished else 0
        completion = finished.output_tokens if finished else 0
        return ResponseUsage.from_counts(
            input_text=prompt, input_audio=self.input_audio_ms * AUDIO_TOKENS_PER_SECOND // 1000,
            input_image=self.image_tokens, cached_text=min(cached, prompt),
            output_text=completion, output_audio=self.audio_out_ms * AUDIO_TOKENS_PER_SECOND // 1000)


def spoken_voice(response: RealtimeResponse) -> str:
    """The voice name a response speaks with."""
    voice = response.audio.output.voice
    return voice if isinstance(voice, str) else voice.id


def trim_leading_silence(chunk: Any, rate: int, *, keep_ms: int = 10, level: float = 0.01) -> np.ndarray:
    """The response's first audio starts at the voice, not at the TTS's lead-in (Piper: 35-60 ms)."""
    audio = np.asarray(chunk, dtype=np.float32).reshape(-1)
    loud = np.flatnonzero(np.abs(audio) > level)
    if not loud.size:
        return audio
    return audio[max(0, int(loud[0]) - rate * keep_ms // 1000):]

