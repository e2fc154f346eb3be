"""Input audio transcription: the turn's words for the model, and the transcription events.

`Transcriber.transcribe` runs the speech-to-text stage. A turn's final transcription holds the
foreground gate (the reply waits for it), starts before the partial ones queued for prefix warm-ups
(urgent), and goes in one batch with the other sessions' final transcriptions queued at the same time
(`runtime.run_batch`; a backend with `transcribe_many`, such as local Whisper, decodes them together).
`Transcriber.start` transcribes a committed user item in the background: its audio part gets the
transcript, the item's `transcript_future` (conversation.py) resolves, and, when the session asked
for input transcription, the `...input_audio_transcription.delta/completed/failed` events follow.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from ..audio.convert import pcm24k_to_f32_16k
from ..audio.format import BYTES_PER_MS
from ..engines.base import Transcript
from ..protocol import server_events as ev
from ..protocol.items import InputAudioContent, UserMessageItem
from ..protocol.session import SemanticVad
from ..runtime import ModelRuntime
from .conversation import Conversation
from .response import AUDIO_TOKENS_PER_SECOND

log = logging.getLogger(__name__)

LOGPROBS = "item.input_audio_transcription.logprobs"


class Transcriber:
    def __init__(self, runtime: ModelRuntime, models: Any, conversation: Conversation, *, config: Callable[[], Any],
                 emit: Callable[[Any], None], spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task]) -> None:
        self.runtime = runtime
        self.models = models
        self.conversation = conversation
        self._config = config  # the session's current configuration (session.update changes it)
        self._emit = emit
        self._spawn = spawn

    @property
    def available(self) -> bool:
        return self.models is not None and self.models.stt is not None

    def wants_logprobs(self) -> bool:
        return LOGPROBS in (self._config().include or [])

    async def transcribe(self, pcm: bytes, *, partial: bool = False) -> Transcript:
        stt = self.models.stt
        tc = self._config().audio.input.transcription
        language = tc.language if tc else None
        prompt = whisper_prompt(tc.prompt, tc.keywords) if tc else None
        audio = pcm24k_to_f32_16k(pcm)
        # semantic_vad judges a pause's words by how sure the transcriber was of them (turn_text.py): asked of a
        # backend that computes logprobs itself (a remote server may refuse them for its model); the events
        # carry them only when the session asked (wants_logprobs)
        semantic = isinstance(self._config().audio.input.turn_detection, SemanticVad) \
            and getattr(stt, "logprobs_on_any_model", False)
        extra: dict[str, Any] = {"logprobs": True} if self.wants_logprobs() or semantic else {}
        if tc is not None and tc.languages and not language:
            extra["languages"] = list(tc.languages)  # detection limited to them (a backend that cannot: ignores)
        request = dict(audio=audio, language=language, prompt=prompt, **extra)
        if partial:  # a prefix warm-up: after the final transcriptions queued in the stage
            return await self.runtime.run("asr", lambda: stt.transcribe(**request))
        gate = self.runtime.gate
        many = getattr(stt, "transcribe_many", None)

        def run_many(requests: list[dict[str, Any]]) -> list[Transcript]:
            # the turns' words: their replies wait for them, other replies' first words need not
            # (engines/foreground.py)
            with gate.hold(first_words=False):
                return many(requests) if many is not None else [stt.transcribe(**r) for r in requests]

        if many is None:  # e.g. a remote server: each request on its own (a wider pool runs them at once)
            return (await self.runtime.run("asr", run_many, [request], urgent=True))[0]
        # final transcriptions queued together (several sessions' turns ending at once) are one batch
        return await self.runtime.run_batch("asr", run_many, request, key=("final", stt), urgent=True)

    def start(self, item: UserMessageItem, pcm: bytes, *, content_index: int,
              speculative: asyncio.Future | None = None) -> None:
        """Transcribe `item`'s audio part `content_index` (`speculative`: a transcription of the same
        speech already under way, used when it succeeds)."""
        if not self.available:
            return
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self.conversation.audio_of(item.id or "").transcript_future = future
        self._spawn(self._run(item, pcm, content_index, future, speculative))

    async def _run(self, item: UserMessageItem, pcm: bytes, content_index: int, future: asyncio.Future,
                   speculative: asyncio.Future | None) -> None:
        report = self._config().audio.input.transcription is not None
        try:
            result = None
            if speculative is not None:
                try:
                    result = await speculative
                except Exception:
                    result = None
            if result is None:
                result = await self.transcribe(pcm)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            log.exception("transcription failed for %s", item.id)
            future.set_result("")
            if report:
                self._emit(ev.ConversationItemInputAudioTranscriptionFailedEvent(
                    item_id=item.id, content_index=content_index,
                    error=ev.TranscriptionError(code="transcription_failed", message=str(exc))))
            return
        text = result.text.strip()
        part = item.content[content_index]
        if isinstance(part, InputAudioContent):
            part.transcript = text
        future.set_result(text)
        if report:
            self._report(item, content_index, text, result, pcm)

    def _report(self, item: UserMessageItem, content_index: int, text: str, result: Transcript, pcm: bytes) -> None:
        audio_tokens = int(len(pcm) / BYTES_PER_MS * AUDIO_TOKENS_PER_SECOND / 1000)
        logprobs = [ev.LogProb(token=lp["token"], bytes=lp["bytes"], logprob=lp["logprob"])
                    for lp in result.logprobs] if self.wants_logprobs() and result.logprobs is not None else None
        tc = self._config().audio.input.transcription
        languages = None
        if tc is not None and tc.languages is not None:
            languages = [ev.DetectedLanguage(code=result.language.split("-")[0].lower())] if result.language else []
        self._emit(ev.ConversationItemInputAudioTranscriptionDeltaEvent(
            item_id=item.id, content_index=content_index, delta=text, logprobs=logprobs))
        self._emit(ev.ConversationItemInputAudioTranscriptionCompletedEvent(
            item_id=item.id, content_index=content_index, transcript=text, logprobs=logprobs, languages=languages,
            usage=ev.TranscriptionTokenUsage(
                input_tokens=audio_tokens, output_tokens=result.output_tokens,
                total_tokens=audio_tokens + result.output_tokens,
                input_token_details={"text_tokens": 0, "audio_tokens": audio_tokens})))


def whisper_prompt(prompt: str | None, keywords: list[str] | None) -> str | None:
    """The transcription prompt with the session's `keywords` appended as a keyword list (how Whisper is
    biased towards words: its prompt is text it believes came before)."""
    if not keywords:
        return prompt
    listed = ", ".join(k.strip() for k in keywords if k.strip())
    return f"{prompt.strip()} {listed}" if prompt and prompt.strip() else listed
