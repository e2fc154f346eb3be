"""`SpeechToText` over `POST {base}/audio/transcriptions` (multipart), as OpenAI, speaches,
vLLM (Whisper models) and LocalAI serve it.

The 16 kHz float32 turn is packed as a 16-bit mono WAV in memory and sent as `file`, with
`model`, `response_format=json` and, when given, `language` (ISO-639-1: "en-US" is sent as "en")
and `prompt`. The reply's `text` becomes the `Transcript`; token usage comes from the reply's
`usage` when the server reports it (OpenAI's gpt-4o-transcribe does), otherwise it follows the
local engine's convention (audio_seconds * 10 in, text characters / 4 out).
"""

from __future__ import annotations

import io
import logging
import time
import wave

import httpx
import numpy as np

from ..base import ANY_LANGUAGE, Transcript
from .http import RemoteEndpoint, RemoteEngineError, connection_error, status_error

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
AUDIO_TOKENS_PER_SECOND = 10
DEFAULT_MODEL = "whisper-1"


def wav_bytes(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """float32 mono in [-1, 1] → a 16-bit PCM mono WAV file."""
    pcm = (np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0) * 32767.0).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm.tobytes())
    return out.getvalue()


class OpenAICompatSTT:
    """`SpeechToText` client of an OpenAI-compatible transcription endpoint."""

    sample_rate = SAMPLE_RATE

    def __init__(self, endpoint: RemoteEndpoint, *, language: str | None = None,
                 client: httpx.Client | None = None) -> None:
        self.endpoint = endpoint
        self.model = endpoint.model or DEFAULT_MODEL
        self.language = language
        self.max_concurrency = 8
        self._client = client or endpoint.client()
        self._own_client = client is None

    def describe(self) -> str:
        return f"OpenAI-compatible transcription {self.model} at {self.endpoint.base_url}"

    def transcribe(self, audio: np.ndarray, *, language: str | None = None, prompt: str | None = None,
                   languages: list[str] | None = None,
                   logprobs: bool = False) -> Transcript:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        seconds = audio.size / SAMPLE_RATE
        if language == ANY_LANGUAGE:  # whatever is spoken: the server detects it
            language = None
        # the transcription API takes one language: a single candidate is that language, several are left
        # to the server's own detection
        lang = language or (languages[0] if languages and len(languages) == 1 else None) or self.language
        if lang:
            lang = lang.split("-")[0].split("_")[0].lower()
        if audio.size < SAMPLE_RATE // 10:  # OpenAI rejects audio under 0.1 s; nothing to read anyway
            return Transcript(text="", language=lang, audio_seconds=seconds,
                              input_tokens=round(seconds * AUDIO_TOKENS_PER_SECOND))
        data = {"model": self.model, "response_format": "json"}
        if lang:
            data["language"] = lang
        if prompt:
            data["prompt"] = prompt
        if logprobs:
            data["include[]"] = "logprobs"  # OpenAI: gpt-4o(-mini)-transcribe with json; others ignore it
        started = time.monotonic()
        try:
            response = self._client.post(self.endpoint.url("audio/transcriptions"), data=data,
                                         files={"file": ("audio.wav", wav_bytes(audio), "audio/wav")})
        except httpx.HTTPError as exc:
            raise connection_error(self.endpoint, exc) from exc
        if response.status_code >= 400:
            raise status_error(self.endpoint, "audio/transcriptions", response.status_code, response.content)
        try:
            body = response.json()
        except ValueError:
            body = {"text": response.text}  # a server that answered response_format=text anyway
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            raise RemoteEngineError(f"{self.endpoint.label}: the transcription reply has no 'text': {response.text[:200]!r}")
        text = body["text"].strip()
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        input_tokens = usage.get("input_tokens") if usage.get("type", "tokens") == "tokens" else None
        output_tokens = usage.get("output_tokens") if usage.get("type", "tokens") == "tokens" else None
        log.debug("remote transcription of %.2f s in %.3f s: %r", seconds, time.monotonic() - started, text)
        return Transcript(
            text=text,
            language=lang or (body.get("language") if isinstance(body.get("language"), str) else None),
            audio_seconds=seconds,
            input_tokens=input_tokens if isinstance(input_tokens, int) else round(seconds * AUDIO_TOKENS_PER_SECOND),
            output_tokens=output_tokens if isinstance(output_tokens, int) else (len(text) + 3) // 4,
            logprobs=_logprobs(body.get("logprobs")) if logprobs else None,
        )

    def warmup(self) -> None:
        """Half a second of silence (loads the model on servers that load lazily, e.g. speaches)."""
        self.transcribe(np.zeros(SAMPLE_RATE // 2, dtype=np.float32))

    def close(self) -> None:
        if self._own_client:
            self._client.close()


def _logprobs(value: object) -> list[dict] | None:
    """The reply's `logprobs` ([{token, logprob, bytes}]) if it has well-formed ones."""
    if not isinstance(value, list):
        return None
    out = []
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("token"), str) \
                or not isinstance(entry.get("logprob"), (int, float)):
            return None
        raw = entry.get("bytes")
        out.append({"token": entry["token"], "logprob": float(entry["logprob"]),
                    "bytes": raw if isinstance(raw, list) else list(entry["token"].encode())})
    return out
