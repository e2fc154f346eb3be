"""The 11 GA client events (spec §3), discriminated by `type`.

`session.update.session` stays a raw dict: the update is partial and only meaningful against the
current config, so it is validated by `SessionUpdateEvent.apply()` (→ `apply_session_update`),
which reports errors with `param` under `session.` and this event's `event_id`.
"""

from __future__ import annotations

import binascii
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field

from .errors import ProtocolError
from .items import Base64Audio, ClientItem
from .responses import ResponseCreateParams
from .session import RealtimeSessionConfig, TranscriptionSessionConfig, apply_session_update

SessionConfigT = Union[RealtimeSessionConfig, TranscriptionSessionConfig]


class ClientEventBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    event_id: str | None = Field(None, max_length=512)


class SessionUpdateEvent(ClientEventBase):
    type: Literal["session.update"] = "session.update"
    session: dict[str, Any]

    def apply(self, current: SessionConfigT, *, voice_locked: bool = False) -> SessionConfigT:
        """The new effective config; ProtocolError carries this event's id."""
        try:
            return apply_session_update(current, self.session, voice_locked=voice_locked)
        except ProtocolError as exc:
            exc.event_id = self.event_id
            raise


class InputAudioBufferAppendEvent(ClientEventBase):
    type: Literal["input_audio_buffer.append"] = "input_audio_buffer.append"
    audio: Base64Audio

    def audio_bytes(self) -> bytes:
        """The decoded audio (already validated as base64)."""
        return binascii.a2b_base64(self.audio)


class InputAudioBufferCommitEvent(ClientEventBase):
    type: Literal["input_audio_buffer.commit"] = "input_audio_buffer.commit"


class InputAudioBufferClearEvent(ClientEventBase):
    type: Literal["input_audio_buffer.clear"] = "input_audio_buffer.clear"


class ConversationItemCreateEvent(ClientEventBase):
    type: Literal["conversation.item.create"] = "conversation.item.create"
    previous_item_id: str | None = None  # absent: append; "root": insert first; else insert after
    item: ClientItem


class ConversationItemRetrieveEvent(ClientEventBase):
    type: Literal["conversation.item.retrieve"] = "conversation.item.retrieve"
    item_id: str


class ConversationItemTruncateEvent(ClientEventBase):
    type: Literal["conversation.item.truncate"] = "conversation.item.truncate"
    item_id: str
    content_index: int = Field(ge=0)
    audio_end_ms: int = Field(ge=0)


class ConversationItemDeleteEvent(ClientEventBase):
    type: Literal["conversation.item.delete"] = "conversation.item.delete"
    item_id: str


class ResponseCreateEvent(ClientEventBase):
    type: Literal["response.create"] = "response.create"
    response: ResponseCreateParams | None = None


class ResponseCancelEvent(ClientEventBase):
    type: Literal["response.cancel"] = "response.cancel"
    response_id: str | None = None  # default: the in-progress response of the default conversation


class OutputAudioBufferClearEvent(ClientEventBase):
    type: Literal["output_audio_buffer.clear"] = "output_audio_buffer.clear"


ClientEvent = Annotated[
    Union[SessionUpdateEvent, InputAudioBufferAppendEvent, InputAudioBufferCommitEvent, InputAudioBufferClearEvent,
          ConversationItemCreateEvent, ConversationItemRetrieveEvent, ConversationItemTruncateEvent,
          ConversationItemDeleteEvent, ResponseCreateEvent, ResponseCancelEvent, OutputAudioBufferClearEvent],
    Field(discriminator="type")]

CLIENT_EVENT_TYPES: dict[str, type[ClientEventBase]] = {
    cls.model_fields["type"].default: cls for cls in get_args(get_args(ClientEvent)[0])}
