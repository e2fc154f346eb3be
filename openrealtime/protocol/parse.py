"""Client event parsing with OpenAI's error codes (spec §3, §4.1).

Error codes (all `type: invalid_request_error`; `event_id` = the client's, when readable):
  message_too_large            raw message longer than `max_bytes` (our code; OpenAI's is undocumented)
  invalid_json                 not UTF-8, not JSON, JSON that is not an object, or JSON nested deeper
                               than limits.MAX_JSON_DEPTH
  invalid_event                no `type` field
  invalid_type (param "type")  `type` is not a string
  invalid_value (param "type") unknown event type
  unknown_parameter / missing_required_parameter / invalid_type / invalid_value
                               a bad field, `param` = dotted path such as `item.content.0.type`
Validation is strict as in OpenAI's JSON API: no coercion of "1" to 1 or of 1.0 to an int.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import TypeAdapter, ValidationError

from .client_events import CLIENT_EVENT_TYPES, ClientEvent
from .errors import ProtocolError, json_kind, quoted_list, pydantic_error_to_protocol
from .json_limits import JsonTooDeep
from .json_limits import loads as loads_limited
from .server_events import ErrorEvent, ServerEvent

MAX_EVENT_ID_CHARS = 512
_SUPPORTED_TYPES = quoted_list(", ".join(f"'{t}'" for t in CLIENT_EVENT_TYPES))
_EVENT_ID_RE = re.compile(r'"event_id"\s*:\s*("(?:[^"\\]|\\.){0,512}")')
_SNIFF_CHARS = 4096
_SERVER_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(ServerEvent)


def _sniff_event_id(raw: str | bytes) -> str | None:
    """Best-effort `event_id` from a message that cannot be (or is not) fully parsed."""
    for chunk in (raw[:_SNIFF_CHARS], raw[-_SNIFF_CHARS:]):
        text = chunk.decode("utf-8", "replace") if isinstance(chunk, bytes) else chunk
        match = _EVENT_ID_RE.search(text)
        if match:
            try:
                value = json.loads(match.group(1))
                value.encode("utf-8")  # a lone surrogate escape could never be sent back
            except (ValueError, UnicodeEncodeError):
                return None
            return value
    return None


def _byte_length(raw: str | bytes, limit: int) -> int:
    if isinstance(raw, bytes) or len(raw) > limit or len(raw) * 4 <= limit:
        return len(raw)  # exact for bytes; for str, chars <= bytes <= 4 * chars decides it
    return len(raw.encode("utf-8", "surrogatepass"))


def parse_client_event(raw: str | bytes, *, max_bytes: int | None = None,
                       event_types: dict[str, type[Any]] | None = None) -> ClientEvent:
    """Parse and validate one client event; raises ProtocolError (see module docstring). `event_types`:
    another table of event models by `type` (translation sessions, protocol/translation.py)."""
    if max_bytes is not None and _byte_length(raw, max_bytes) > max_bytes:
        raise ProtocolError(
            f"Message too large: the limit is {max_bytes} bytes per event.",
            code="message_too_large", event_id=_sniff_event_id(raw))
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
        data = loads_limited(text)
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"Invalid JSON: the message is not valid UTF-8 ({exc.reason} at byte {exc.start}).",
                            code="invalid_json", event_id=_sniff_event_id(raw)) from None
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"Invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}.",
                            code="invalid_json", event_id=_sniff_event_id(raw)) from None
    except JsonTooDeep as exc:
        raise ProtocolError(f"Invalid JSON: {exc}.", code="invalid_json", event_id=_sniff_event_id(raw)) from None
    if not isinstance(data, dict):
        raise ProtocolError(f"Invalid JSON: expected an object, but got {json_kind(data)}.", code="invalid_json")

    event_id = data.get("event_id")
    if not isinstance(event_id, str) or len(event_id) > MAX_EVENT_ID_CHARS:
        event_id = None
    kind = data.get("type")
    if kind is None:
        raise ProtocolError("The 'type' field is missing.", code="invalid_event", event_id=event_id)
    if not isinstance(kind, str):
        raise ProtocolError(f"Invalid type for 'type': expected a string, but got {json_kind(kind)} instead.",
                            code="invalid_type", param="type", event_id=event_id)
    table = CLIENT_EVENT_TYPES if event_types is None else event_types
    model = table.get(kind)
    if model is None:
        supported = _SUPPORTED_TYPES if event_types is None else quoted_list(", ".join(f"'{t}'" for t in table))
        raise ProtocolError(f"Invalid value: '{kind}'. Supported values are: {supported}.",
                            code="invalid_value", param="type", event_id=event_id)
    try:
        return model.model_validate(data, strict=True)  # type: ignore[return-value]
    except ValidationError as exc:
        raise pydantic_error_to_protocol(exc, event_id=event_id, data=data) from None


def error_event(exc: ProtocolError) -> ErrorEvent:
    """The `error` server event for a ProtocolError (its `event_id` is echoed in `error.event_id`)."""
    return ErrorEvent(error=exc.detail())


def parse_server_event(raw: str | bytes | dict[str, Any]) -> ServerEvent:
    """Validate a server event (for test clients and tools); raises pydantic.ValidationError."""
    if isinstance(raw, dict):
        return _SERVER_EVENT_ADAPTER.validate_python(raw)
    return _SERVER_EVENT_ADAPTER.validate_json(raw)
