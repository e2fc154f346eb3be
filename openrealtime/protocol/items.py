"""Conversation items (spec §6.1), discriminated by `type`; messages further by `role`.

Two unions exist because clients may not write everything the server can:
`Item` is any item held in a conversation; `ClientItem` is what `conversation.item.create`
accepts (assistant messages limited to `output_text`); `ResponseInputItem` adds `item_reference`
for `response.create.input`. Item models keep audio bytes (base64); `item_to_wire()` drops them
for `conversation.item.added/done` and `response.*`, and keeps them for `conversation.item.retrieved`.
"""

from __future__ import annotations

import binascii
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from .. import ids
from ..limits import IMAGE_TYPES, MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from ..media.image_header import read_header

ItemStatus = Literal["completed", "incomplete", "in_progress"]
MAX_AUDIO_BASE64_CHARS = 15 * 1024 * 1024
_MAX_IMAGE_BASE64_CHARS = (MAX_IMAGE_BYTES + 2) // 3 * 4


class WireModel(BaseModel):
    """Base of every wire object: unknown fields are an error (OpenAI's `unknown_parameter`)."""

    model_config = ConfigDict(extra="forbid")


def validate_base64(value: str, *, max_chars: int = MAX_AUDIO_BASE64_CHARS) -> str:
    """Check that `value` is strict base64 of at most `max_chars` characters; return it unchanged."""
    if len(value) > max_chars:
        raise PydanticCustomError(
            "invalid_value", "base64 data too large ({size} characters; the limit is {limit}).",
            {"size": len(value), "limit": max_chars})
    try:
        binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        raise PydanticCustomError("invalid_value", "expected base64-encoded data.") from None
    return value


def _validate_image_url(value: str) -> str:
    """A base64 data URL of a PNG, JPEG, WebP or GIF within limits.MAX_IMAGE_BYTES whose header declares
    at most limits.MAX_IMAGE_PIXELS (decompression bombs are refused here, before any decoder sees them)."""
    head = value[:64].lower()
    if not head.startswith("data:image/") or ";base64," not in value[:128].lower():
        raise PydanticCustomError(
            "invalid_value", "expected a base64 data URL such as 'data:image/jpeg;base64,...'.")
    media, _, payload = value.partition(",")
    subtype = media[len("data:image/"):].split(";", 1)[0].lower()
    if subtype not in IMAGE_TYPES:
        raise PydanticCustomError(
            "invalid_value", "unsupported image type 'image/{subtype}': send PNG, JPEG, WebP or GIF.",
            {"subtype": subtype[:32]})
    if len(payload) > _MAX_IMAGE_BASE64_CHARS:
        raise PydanticCustomError(
            "invalid_value", "image too large ({size} bytes of base64; the limit is {limit} bytes of image "
            "data). Downscale it first.", {"size": len(payload), "limit": MAX_IMAGE_BYTES})
    try:
        data = binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError):
        raise PydanticCustomError("invalid_value", "the image data is not valid base64.") from None
    header = read_header(data)
    if header is None or header.width <= 0 or header.height <= 0:
        raise PydanticCustomError(
            "invalid_value", "the image data is not a PNG, JPEG, WebP or GIF whose size can be read "
            "(truncated or another format).")
    if header.decoded_pixels > MAX_IMAGE_PIXELS:
        frames = f" × {header.frames} frames" if header.frames > 1 else ""
        raise PydanticCustomError(
            "invalid_value", "image too large: it declares {width}×{height}{frames}, {pixels} pixels to decode; "
            "the limit is {limit}. Downscale it first.",
            {"width": header.width, "height": header.height, "frames": frames, "pixels": header.decoded_pixels,
             "limit": MAX_IMAGE_PIXELS})
    return value


Base64Audio = Annotated[str, AfterValidator(validate_base64)]
ImageDataUrl = Annotated[str, AfterValidator(_validate_image_url)]


# ---- content parts ----------------------------------------------------------------------------
class InputTextContent(WireModel):
    type: Literal["input_text"] = "input_text"
    text: str


class InputAudioContent(WireModel):
    type: Literal["input_audio"] = "input_audio"
    audio: Base64Audio | None = None
    transcript: str | None = None


class InputImageContent(WireModel):
    type: Literal["input_image"] = "input_image"
    image_url: ImageDataUrl
    detail: Literal["auto", "low", "high"] = "auto"


class OutputTextContent(WireModel):
    type: Literal["output_text"] = "output_text"
    text: str


class OutputAudioContent(WireModel):
    type: Literal["output_audio"] = "output_audio"
    audio: Base64Audio | None = None
    transcript: str | None = None


UserContent = Annotated[Union[InputTextContent, InputAudioContent, InputImageContent], Field(discriminator="type")]
AssistantContent = Annotated[Union[OutputTextContent, OutputAudioContent], Field(discriminator="type")]
ContentPart = Union[InputTextContent, InputAudioContent, InputImageContent, OutputTextContent, OutputAudioContent]
_AUDIO_PARTS = (InputAudioContent, OutputAudioContent)


# ---- items ------------------------------------------------------------------------------------
class ItemBase(WireModel):
    """Fields shared by all conversation items; `id` is assigned by the server when absent."""

    id: str | None = Field(None, min_length=1, max_length=64)
    object: Literal["realtime.item"] = "realtime.item"
    type: str


class _StatusItem(ItemBase):
    status: ItemStatus = "completed"


class MessageItem(_StatusItem):
    """Base of the three message roles; use `isinstance(item, MessageItem)`."""

    type: Literal["message"] = "message"
    role: Literal["system", "user", "assistant"]
    content: list[Any]

    def text(self) -> str:
        """Concatenated text of the message (text parts and audio transcripts)."""
        return "".join(getattr(p, "text", None) or getattr(p, "transcript", None) or "" for p in self.content)


class SystemMessageItem(MessageItem):
    role: Literal["system"] = "system"
    content: list[InputTextContent]


class UserMessageItem(MessageItem):
    role: Literal["user"] = "user"
    content: list[UserContent]


class AssistantMessageItem(MessageItem):
    role: Literal["assistant"] = "assistant"
    content: list[AssistantContent]


class ClientAssistantMessageItem(AssistantMessageItem):
    """An assistant message written by a client: text only (spec §3, no audio messages)."""

    content: list[OutputTextContent]


class FunctionCallItem(_StatusItem):
    type: Literal["function_call"] = "function_call"
    call_id: str | None = None
    name: str
    arguments: str


class FunctionCallOutputItem(_StatusItem):
    type: Literal["function_call_output"] = "function_call_output"
    call_id: str
    output: str


class McpToolInfo(WireModel):
    name: str
    input_schema: dict[str, Any]
    description: str | None = None
    annotations: dict[str, Any] | None = None


class McpListToolsItem(ItemBase):
    type: Literal["mcp_list_tools"] = "mcp_list_tools"
    server_label: str
    tools: list[McpToolInfo] = Field(default_factory=list)


class McpProtocolError(WireModel):
    type: Literal["protocol_error"] = "protocol_error"
    code: int
    message: str


class McpToolExecutionError(WireModel):
    type: Literal["tool_execution_error"] = "tool_execution_error"
    message: str


class McpHttpError(WireModel):
    type: Literal["http_error"] = "http_error"
    code: int
    message: str


McpError = Annotated[Union[McpProtocolError, McpToolExecutionError, McpHttpError], Field(discriminator="type")]


class McpCallItem(ItemBase):
    type: Literal["mcp_call"] = "mcp_call"
    server_label: str
    name: str
    arguments: str
    approval_request_id: str | None = None
    output: str | None = None
    error: McpError | None = None


class McpApprovalRequestItem(ItemBase):
    type: Literal["mcp_approval_request"] = "mcp_approval_request"
    server_label: str
    name: str
    arguments: str


class McpApprovalResponseItem(ItemBase):
    type: Literal["mcp_approval_response"] = "mcp_approval_response"
    approval_request_id: str
    approve: bool
    reason: str | None = None


class ItemReference(WireModel):
    """`{"type":"item_reference","id":...}`: only valid inside `response.create.input`."""

    type: Literal["item_reference"] = "item_reference"
    id: str = Field(min_length=1)


_Message = Annotated[Union[SystemMessageItem, UserMessageItem, AssistantMessageItem], Field(discriminator="role")]
_ClientMessage = Annotated[
    Union[SystemMessageItem, UserMessageItem, ClientAssistantMessageItem], Field(discriminator="role")]

Item = Annotated[
    Union[_Message, FunctionCallItem, FunctionCallOutputItem, McpListToolsItem, McpCallItem,
          McpApprovalRequestItem, McpApprovalResponseItem],
    Field(discriminator="type")]
ClientItem = Annotated[
    Union[_ClientMessage, FunctionCallItem, FunctionCallOutputItem, McpListToolsItem, McpCallItem,
          McpApprovalRequestItem, McpApprovalResponseItem],
    Field(discriminator="type")]
ResponseInputItem = Annotated[
    Union[_ClientMessage, FunctionCallItem, FunctionCallOutputItem, McpListToolsItem, McpCallItem,
          McpApprovalRequestItem, McpApprovalResponseItem, ItemReference],
    Field(discriminator="type")]

# A plain alias for annotations in engine code (no validation semantics).
AnyItem = Union[MessageItem, FunctionCallItem, FunctionCallOutputItem, McpListToolsItem, McpCallItem,
                McpApprovalRequestItem, McpApprovalResponseItem]

_NO_AUDIO = {"content": {"__all__": {"audio"}}}


def item_to_wire(item: AnyItem, *, include_audio: bool = False) -> dict[str, Any]:
    """JSON-ready dict of an item; audio bytes only when `include_audio` (conversation.item.retrieved)."""
    if include_audio or not isinstance(item, MessageItem):
        return item.model_dump(mode="json")
    return item.model_dump(mode="json", exclude=_NO_AUDIO)  # type: ignore[arg-type]


def prepare_client_item(item: AnyItem) -> AnyItem:
    """Fill server-owned fields of a client-supplied item in place: id, call_id, status (spec §6.1)."""
    if item.id is None:
        item.id = ids.item_id()
    if isinstance(item, _StatusItem):
        item.status = "completed"
    if isinstance(item, FunctionCallItem) and item.call_id is None:
        item.call_id = ids.call_tool_id()
    return item


def audio_parts(item: AnyItem) -> list[InputAudioContent | OutputAudioContent]:
    """The audio content parts of a message item (empty for other items)."""
    if not isinstance(item, MessageItem):
        return []
    return [p for p in item.content if isinstance(p, _AUDIO_PARTS)]
