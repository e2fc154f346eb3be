"""One Realtime translation session: client events in, transcripts and translated speech out.

Transport-free like the realtime SessionEngine: it is given a transport (`send_text`, `close`), the
model stack and the server's runtime. Input audio (`session.input_audio_buffer.append`, PCM16 24 kHz)
is consumed in 200 ms frames (shorter appends wait for the rest of their frame, longer ones are split);
`elapsed_ms` on every output event is the input audio consumed so far in whole frames.

Each utterance the segmenter cuts (segmenter.py) is, in order:
1. transcribed by the speech-to-text model in whatever language is spoken (multilingual Whisper
   detects it); with `audio.input.transcription` set, its text goes out as `session.input_transcript.delta`;
2. translated by the language model into `audio.output.language` (translator.py), its text streamed as
   `session.output_transcript.delta`;
3. spoken clause by clause (session/clauses.py, the first clause as soon as it is written) by a voice
   that speaks the target language (voices.py) as `session.output_audio.delta`: base64 PCM16 24 kHz
   mono in pieces of at most 200 ms. Without such a voice, text only (the session object says so).

While one utterance is translated the next is already being segmented; utterances are translated one
after another so their output never interleaves. `session.close` takes no more input, flushes the
audio received (speech still going on is cut where the audio ends), lets every utterance finish, then
sends `session.closed` and closes the connection normally.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
from collections.abc import Iterator
from typing import Any, Protocol

from .. import ids
from ..audio.convert import f32_to_canonical, pcm24k_to_f32_16k
from ..audio.format import BYTES_PER_MS
from ..engines.base import ANY_LANGUAGE, Prefilling, SessionAware, TextDelta
from ..engines.foreground import in_foreground
from ..protocol.errors import ProtocolError
from ..protocol.server_events import ErrorEvent, ServerEventBase, to_json
from ..protocol.session import VOICES
from ..protocol.translation import (
    FRAME_MS,
    InputTranscriptDeltaEvent,
    OutputAudioDeltaEvent,
    OutputTranscriptDeltaEvent,
    TranslationAudioAppendEvent,
    TranslationSessionClosedEvent,
    TranslationSessionConfig,
    TranslationSessionCreatedEvent,
    TranslationSessionObject,
    TranslationSessionUpdatedEvent,
    TranslationSessionUpdateEvent,
    apply_translation_update,
    parse_translation_event,
)
from ..runtime import ModelRuntime
from ..session.clauses import ClauseSplitter, announcing_first_clause
from .languages import joiner
from .segmenter import Segment, Segmenter
from .translator import Translator
from .voices import no_voice_notice, voice_for

log = logging.getLogger(__name__)

FRAME_BYTES = FRAME_MS * BYTES_PER_MS
VOICE = VOICES[0]  # translation sessions name no voice: the server's voice (a remote TTS's --tts-voice wins)


def session_object(config: TranslationSessionConfig, models: Any, *, id: str, expires_at: int
                   ) -> TranslationSessionObject:
    """What `session.created`/`updated` and a client secret show, with what the target language gets here."""
    language = config.audio.output.language
    voiced = voice_for(models, language) is not None
    return TranslationSessionObject(**config.model_dump(), id=id, expires_at=expires_at,
                                    output_modalities=["text", "audio"] if voiced else ["text"],
                                    notice=None if voiced else no_voice_notice(models, language))


class TranslationTransport(Protocol):
    def send_text(self, text: str) -> None: ...

    def close(self, reason: str) -> None: ...


class TranslationSession:
    def __init__(self, transport: TranslationTransport, config: TranslationSessionConfig, *, models: Any,
                 runtime: ModelRuntime, session_id: str | None = None, expires_at: int = 0,
                 max_duration_s: float = 3600.0, max_event_bytes: int | None = None) -> None:
        self.id = session_id or ids.session_id()
        self.transport = transport
        self.config = config
        self.models = models
        self.runtime = runtime
        self.expires_at = expires_at
        self.max_duration_s = max_duration_s  # when expire() is due (the server's --max-call-duration)
        self.max_event_bytes = max_event_bytes
        self.elapsed_ms = 0  # input audio consumed, in whole 200 ms frames
        self.stats: dict[str, int] = {"utterances": 0, "vad_frames": 0, "audio_deltas": 0}
        self.closing = False  # session.close received: flushing
        self.closed = False
        self._pending = bytearray()  # input audio short of a whole frame
        self._segments: asyncio.Queue[Segment | None] = asyncio.Queue()
        self._segmenter = Segmenter(models.vad, runtime, self._segments.put_nowait, self.stats)
        self._translator = Translator(self.id)
        self._cancel = threading.Event()  # set when the session ends: model work stops
        self._said: dict[str, bool] = {"input": False, "output": False}  # text sent yet (to join utterances)
        self._worker: asyncio.Task | None = None

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._emit(TranslationSessionCreatedEvent(session=self.session_object()))
        self._worker = self.runtime.spawn(self._work(), name=f"translation-{self.id}")
        self._warm()

    def _warm(self) -> None:
        """Prefill the translator's prompt for the target language (the first utterance's wait gets shorter)."""
        llm, cancel = self.models.llm, self._cancel
        if isinstance(llm, Prefilling) and not self._translator.history:
            request = self._translator.warm_request(self.config.audio.output.language)
            self.runtime.spawn(self.runtime.run("warm", lambda: llm.prefill(request, cancel)),
                               name=f"translation-warm-{self.id}")

    def close(self, reason: str = "closed") -> None:
        """The connection is gone (or the server ends the session): stop all work now."""
        if self.closed:
            return
        self.closed = True
        self._cancel.set()
        self._segmenter.close()
        if self._worker is not None:
            self._worker.cancel()
        if isinstance(self.models.llm, SessionAware):
            self.models.llm.forget_session(self.id)
        log.debug("translation session %s closed (%s): %s", self.id, reason, self.stats)

    def expire(self) -> None:
        self.send_error(ProtocolError(f"Your session hit the maximum duration of {int(self.max_duration_s // 60)} "
                                      "minutes.", code="session_expired"))
        self._end("session_expired")

    def shut_down(self) -> None:
        """The server is shutting down (drain timeout): say so, then close the connection cleanly."""
        self.send_error(ProtocolError("The server is shutting down; connect again to continue (another node will "
                                      "answer).", code="server_shutting_down", type="server_error"))
        self._end("server_shutting_down")

    def _end(self, reason: str) -> None:
        self.transport.close(reason)
        self.close(reason)

    # ---- the session object ------------------------------------------------------------------
    def session_object(self) -> TranslationSessionObject:
        return session_object(self.config, self.models, id=self.id, expires_at=self.expires_at)

    # ---- client events -----------------------------------------------------------------------
    def handle_message(self, text: str) -> None:
        if self.closed:
            return
        try:
            event = parse_translation_event(text, max_bytes=self.max_event_bytes)
            if self.closing:
                raise ProtocolError(f"The session is closing (session.close was received): {event.type} is not "
                                    "taken any more.", code="session_closing", event_id=event.event_id)
            if isinstance(event, TranslationSessionUpdateEvent):
                self._update(event)
            elif isinstance(event, TranslationAudioAppendEvent):
                self._append(base64.b64decode(event.audio))
            else:
                self._finish()
        except ProtocolError as exc:
            self.send_error(exc)

    def _update(self, event: TranslationSessionUpdateEvent) -> None:
        before = self.config.target_language
        self.config = apply_translation_update(self.config, event.session)
        if self.config.target_language != before:
            self._translator.forget()
            self._warm()
        self._emit(TranslationSessionUpdatedEvent(session=self.session_object()))

    def _append(self, pcm: bytes) -> None:
        self._pending += pcm
        while len(self._pending) >= FRAME_BYTES:
            frame = bytes(self._pending[:FRAME_BYTES])
            del self._pending[:FRAME_BYTES]
            self.elapsed_ms += FRAME_MS
            self._segmenter.feed(frame)

    def _finish(self) -> None:
        """`session.close`: flush the input; `session.closed` follows the last translated output."""
        self.closing = True
        if self._pending:
            self._segmenter.feed(bytes(self._pending) + bytes(FRAME_BYTES - len(self._pending)))
            self._pending.clear()
            self.elapsed_ms += FRAME_MS
        self._segmenter.flush()
        self._segments.put_nowait(None)

    # ---- outputs -----------------------------------------------------------------------------
    def _emit(self, event: ServerEventBase) -> None:
        if not self.closed:
            self.transport.send_text(to_json(event))

    def send_error(self, exc: ProtocolError) -> None:
        self._emit(ErrorEvent(error=exc.detail()))

    def _joined(self, side: str, text: str, language: str) -> str:
        """`text` as the next append-only delta of one side: after earlier text, the language's separator."""
        said, self._said[side] = self._said[side], True
        return joiner(language) + text if said else text

    # ---- the pipeline ------------------------------------------------------------------------
    async def _work(self) -> None:
        while (segment := await self._segments.get()) is not None:
            try:
                await self._translate(segment)
            except Exception as exc:  # noqa: BLE001 - one utterance failed: say so, go on with the next
                log.warning("translation session %s: an utterance failed: %s", self.id, exc)
                self.send_error(ProtocolError(f"Translating an utterance failed: {exc}", code="backend_error",
                                              type="server_error"))
        if not self.closed:
            self._emit(TranslationSessionClosedEvent())
            self._end("session_closed")

    async def _translate(self, segment: Segment) -> None:
        stt, gate = self.models.stt, self.runtime.gate
        audio = pcm24k_to_f32_16k(segment.pcm)

        def transcribe() -> Any:
            with gate.hold():  # the words come first: an in-process LLM steps aside (engines/foreground.py)
                return stt.transcribe(audio, language=ANY_LANGUAGE)

        heard = await self.runtime.run("asr", transcribe)
        text = heard.text.strip()
        if not text or self.closed:
            return
        self.stats["utterances"] += 1
        source = heard.language if heard.language != ANY_LANGUAGE else None  # None: a backend that cannot say
        if self.config.audio.input.transcription is not None:
            self._emit(InputTranscriptDeltaEvent(delta=self._joined("input", text, source or "en"),
                                                  elapsed_ms=self.elapsed_ms))
        translation = await self._translate_text(text, source, self.config.audio.output.language)
        self._translator.remember(text, source, translation)

    async def _translate_text(self, text: str, source: str | None, target: str) -> str:
        """Stream the translation of `text` as transcript deltas, speaking it where a voice can."""
        llm, cancel, gate = self.models.llm, self._cancel, self.runtime.gate
        tts = voice_for(self.models, target)
        request = self._translator.request(text, target, source)
        clauses: asyncio.Queue[str | None] = asyncio.Queue()
        speaker = self.runtime.spawn(self._speak(tts, clauses), name=f"translation-speech-{self.id}") \
            if tts is not None else None
        splitter = ClauseSplitter()
        written = ""
        try:
            deltas = self.runtime.stream(
                "llm", lambda: announcing_first_clause(llm.stream_chat(request, cancel), gate, tts is not None), cancel)
            async for delta in deltas:
                if not isinstance(delta, TextDelta) or not delta.text:
                    continue
                piece = delta.text if written else delta.text.lstrip()
                if not piece:
                    continue
                self._emit(OutputTranscriptDeltaEvent(delta=self._joined("output", piece, target) if not written
                                                      else piece, elapsed_ms=self.elapsed_ms))
                written += piece
                if speaker is not None:
                    for clause in splitter.push(piece):
                        clauses.put_nowait(clause)
            if speaker is not None:
                for clause in splitter.flush():
                    clauses.put_nowait(clause)
                clauses.put_nowait(None)
                await speaker
        finally:
            if speaker is not None and not speaker.done():
                speaker.cancel()
        return written.strip()

    async def _speak(self, tts: Any, clauses: asyncio.Queue[str | None]) -> None:
        """Synthesize the clauses in order, each sent as it is made; a failed voice ends this utterance's audio."""
        first = True
        while (clause := await clauses.get()) is not None:
            def synthesize(c: str = clause, hold: bool = first) -> Iterator[Any]:
                chunks = tts.synthesize(c, voice=VOICE, speed=1.0, cancel=self._cancel)
                return in_foreground(chunks, self.runtime.gate) if hold else chunks

            first = False
            try:
                async for chunk in self.runtime.stream("tts", synthesize, threading.Event()):
                    self._send_audio(f32_to_canonical(chunk, tts.sample_rate))
            except Exception as exc:  # noqa: BLE001 - the text goes on; this utterance's audio ends here
                log.warning("translation session %s: speech synthesis failed: %s", self.id, exc)
                self.send_error(ProtocolError(f"Speech synthesis failed, so this translation's audio ends early (its "
                                              f"text is complete): {exc}", code="tts_error", type="server_error"))
                while await clauses.get() is not None:
                    pass
                return

    def _send_audio(self, pcm: bytes) -> None:
        for i in range(0, len(pcm), FRAME_BYTES):
            self.stats["audio_deltas"] += 1
            self._emit(OutputAudioDeltaEvent(delta=base64.b64encode(pcm[i:i + FRAME_BYTES]).decode("ascii"),
                                             elapsed_ms=self.elapsed_ms))
