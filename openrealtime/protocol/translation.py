"""Realtime translation sessions (openai-python 3.63 `realtime_translation_*`), defined once.

A translation session turns speech in one language into text and speech in another:
`GET /v1/realtime/translations?model=…` and `POST /v1/realtime/translations/client_secrets`.

Client events: `session.update {session: {audio}}`, `session.input_audio_buffer.append {audio}`
(base64 PCM16 24 kHz mono), `session.close`. Server events: `error`, `session.created`,
`session.updated`, `session.closed`, `session.input_transcript.delta`, `session.output_transcript.delta`,
`session.output_audio.delta`. Deltas are append-only text; `elapsed_ms` advances in 200 ms steps of input
audio and may repeat.

Beyond OpenAI's session object, ours says what this server can do for the target language:
`output_modalities` (`["text", "audio"]`, or `["text"]` where no voice speaks it) and `notice` (a plain
sentence saying so, or null). openai-python keeps such extra fields (its models allow extras).
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .client_events import ClientEventBase
from .errors import ProtocolError, pydantic_error_to_protocol
from .items import Base64Audio
from .parse import parse_client_event
from .server_events import ServerEventBase
from .session import LanguageCode

DEFAULT_TARGET_LANGUAGE = "en"
FRAME_MS = 200  # translation consumes input audio in 200 ms frames; `elapsed_ms` counts them
OUTPUT_SAMPLE_RATE = 24000
MAX_MODEL_CHARS = 128


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- the session -------------------------------------------------------------------------------
class TranslationNoiseReduction(_Strict):
    type: Literal["near_field", "far_field"]
    strength: float = Field(1.0, ge=0.0)  # 1 when first enabled; an update without it keeps the current one


class TranslationTranscription(_Strict):
    model: Annotated[str, Field(min_length=1, max_length=MAX_MODEL_CHARS)]  # any name: the server's one STT


class TranslationAudioInput(_Strict):
    noise_reduction: TranslationNoiseReduction | None = None
    transcription: TranslationTranscription | None = None  # set: `session.input_transcript.delta` events


class TranslationAudioOutput(_Strict):
    language: LanguageCode = DEFAULT_TARGET_LANGUAGE  # the target language (ISO 639-1, e.g. "es", "ja")


class TranslationAudio(_Strict):
    input: TranslationAudioInput = Field(default_factory=TranslationAudioInput)
    output: TranslationAudioOutput = Field(default_factory=TranslationAudioOutput)


class TranslationSessionConfig(_Strict):
    """The effective configuration of a translation session (a client secret stores one)."""

    type: Literal["translation"] = "translation"
    model: Annotated[str, Field(min_length=1, max_length=MAX_MODEL_CHARS)] = "gpt-realtime-translate"
    audio: TranslationAudio = Field(default_factory=TranslationAudio)

    @property
    def target_language(self) -> str:
        return self.audio.output.language.replace("_", "-").split("-")[0].lower()


class TranslationSessionObject(TranslationSessionConfig):
    """What `session.created` / `session.updated` and a client secret show."""

    id: str
    expires_at: int
    output_modalities: list[Literal["text", "audio"]] = Field(default_factory=lambda: ["text", "audio"])
    notice: str | None = None


def parse_translation_session(data: Any, *, param: str = "session") -> TranslationSessionConfig:
    """A complete translation session request (`client_secrets.create(session=…)`): `model` is required."""
    if not isinstance(data, dict):
        raise ProtocolError(f"Invalid type for '{param}': expected an object.", code="invalid_type", param=param)
    if "model" not in data:
        raise ProtocolError(f"Missing required parameter: '{param}.model'.", code="missing_required_parameter",
                            param=f"{param}.model")
    data = {k: v for k, v in data.items() if k not in ("id", "expires_at", "object")}
    try:
        return TranslationSessionConfig.model_validate(data, strict=True)
    except ValidationError as exc:
        raise pydantic_error_to_protocol(exc, prefix=param, data=data) from None


# ---- session.update ------------------------------------------------------------------------------
class _NoiseReductionUpdate(_Strict):
    type: Literal["near_field", "far_field"]
    strength: float | None = Field(None, ge=0.0)


class _AudioInputUpdate(_Strict):
    noise_reduction: _NoiseReductionUpdate | None = None
    transcription: TranslationTranscription | None = None


class _AudioOutputUpdate(_Strict):
    language: LanguageCode | None = None


class _AudioUpdate(_Strict):
    input: _AudioInputUpdate | None = None
    output: _AudioOutputUpdate | None = None


class TranslationSessionUpdate(_Strict):
    """`session.update`'s `session`: only `audio` (the type and model are set at creation)."""

    audio: _AudioUpdate | None = None


def _merge(base: Any, patch: Any) -> Any:
    """`patch` (fields the client sent) over `base`: objects merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(patch, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in patch.items()}}
    return copy.deepcopy(patch)


def apply_translation_update(current: TranslationSessionConfig, update: TranslationSessionUpdate
                             ) -> TranslationSessionConfig:
    """The configuration after a `session.update`: fields sent change, `null` clears `noise_reduction` or
    `transcription` (a null `language` keeps the current one), a `noise_reduction` without `strength` keeps
    the current strength (1 when it is first enabled)."""
    patch = update.model_dump(exclude_unset=True)
    output = (patch.get("audio") or {}).get("output") or {}
    if output.get("language", "") is None:
        del output["language"]
    noise = ((patch.get("audio") or {}).get("input") or {}).get("noise_reduction")
    if isinstance(noise, dict) and noise.get("strength") is None:
        noise.pop("strength", None)
    merged = _merge(current.model_dump(), patch)
    return TranslationSessionConfig.model_validate(merged)


# ---- client events -------------------------------------------------------------------------------
class TranslationSessionUpdateEvent(ClientEventBase):
    type: Literal["session.update"] = "session.update"
    session: TranslationSessionUpdate


class TranslationAudioAppendEvent(ClientEventBase):
    type: Literal["session.input_audio_buffer.append"] = "session.input_audio_buffer.append"
    audio: Base64Audio


class TranslationSessionCloseEvent(ClientEventBase):
    type: Literal["session.close"] = "session.close"


TranslationClientEvent = Annotated[
    Union[TranslationSessionUpdateEvent, TranslationAudioAppendEvent, TranslationSessionCloseEvent],
    Field(discriminator="type")]
TRANSLATION_CLIENT_EVENT_TYPES: dict[str, type[ClientEventBase]] = {
    "session.update": TranslationSessionUpdateEvent,
    "session.input_audio_buffer.append": TranslationAudioAppendEvent,
    "session.close": TranslationSessionCloseEvent,
}
_FIXED_AT_CREATION = ("type", "model")


def parse_translation_event(raw: str | bytes, *, max_bytes: int | None = None) -> ClientEventBase:
    """One translation client event, validated; ProtocolError in OpenAI's shape otherwise."""
    try:
        return parse_client_event(raw, max_bytes=max_bytes, event_types=TRANSLATION_CLIENT_EVENT_TYPES)
    except ProtocolError as exc:
        field = (exc.param or "").removeprefix("session.")
        if exc.code == "unknown_parameter" and field in _FIXED_AT_CREATION and exc.param == f"session.{field}":
            exc.message = (f"The session's '{field}' is set when it is created and cannot be changed with "
                           "session.update; only 'session.audio' can.")
        raise


# ---- server events -------------------------------------------------------------------------------
class TranslationSessionCreatedEvent(ServerEventBase):
    type: Literal["session.created"] = "session.created"
    session: TranslationSessionObject


class TranslationSessionUpdatedEvent(ServerEventBase):
    type: Literal["session.updated"] = "session.updated"
    session: TranslationSessionObject


class TranslationSessionClosedEvent(ServerEventBase):
    type: Literal["session.closed"] = "session.closed"


class InputTranscriptDeltaEvent(ServerEventBase):
    type: Literal["session.input_transcript.delta"] = "session.input_transcript.delta"
    delta: str
    elapsed_ms: int | None = None


class OutputTranscriptDeltaEvent(ServerEventBase):
    type: Literal["session.output_transcript.delta"] = "session.output_transcript.delta"
    delta: str
    elapsed_ms: int | None = None


class OutputAudioDeltaEvent(ServerEventBase):
    type: Literal["session.output_audio.delta"] = "session.output_audio.delta"
    delta: str  # base64 PCM16 LE
    format: Literal["pcm16"] = "pcm16"
    sample_rate: int = OUTPUT_SAMPLE_RATE
    channels: int = 1
    elapsed_ms: int | None = None
