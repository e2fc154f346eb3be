"""Client events for fuzzing: valid instances of every client event type (openrealtime/protocol/client_events.py),
mutated field by field around their schema, then sometimes mutated as text."""

from __future__ import annotations

import base64
import random
from typing import Any

from openrealtime.protocol.client_events import CLIENT_EVENT_TYPES

from .body_cases import VALID_SESSIONS
from .core import choice, dumps, huge_text, mutate_json, mutate_json_text

# ids the harness creates before fuzzing, so that valid references exist
USER_ITEM = "item_fuzz_user"
ASSISTANT_ITEM = "item_fuzz_assistant"
CALL_ID = "call_fuzz"
PNG_1PX = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAAB"
           "JRU5ErkJggg==")
_PCM = bytes(range(256)) * 19  # 4864 bytes ≈ 101 ms of PCM16 24 kHz
AUDIO_B64 = base64.b64encode(_PCM).decode()

_ITEMS: tuple[dict[str, Any], ...] = (
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello there."}]},
    {"type": "message", "role": "user", "content": [{"type": "input_audio", "audio": AUDIO_B64}]},
    {"type": "message", "role": "user", "content": [{"type": "input_audio", "transcript": "hi"},
                                                    {"type": "input_image", "image_url": PNG_1PX, "detail": "low"}]},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sure."}]},
    {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "Be brief."}]},
    {"type": "function_call", "name": "get_weather", "arguments": "{\"city\": \"Paris\"}", "call_id": "call_f2"},
    {"type": "function_call_output", "call_id": CALL_ID, "output": "{\"temp\": 21}"},
    {"type": "mcp_approval_response", "approval_request_id": "mcpr_unknown", "approve": True},
    {"type": "message", "role": "user", "id": "item_client_chosen", "status": "incomplete",
     "content": [{"type": "input_text", "text": "x"}]},
)
_RESPONSES: tuple[dict[str, Any], ...] = (
    {},
    {"instructions": "Answer in French.", "output_modalities": ["text"], "max_output_tokens": 50},
    {"conversation": "none", "metadata": {"topic": "fuzz"}, "output_modalities": ["text"],
     "input": [{"type": "item_reference", "id": USER_ITEM},
               {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}]},
    {"tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
     "tool_choice": {"type": "function", "name": "get_weather"}, "audio": {"output": {"voice": "marin",
                                                                                         "format": {"type": "audio/pcma"}}}},
    {"max_output_tokens": "inf", "tool_choice": "none", "prompt": {"id": "pmpt_1", "variables": {"a": "b"}}},
)
_SESSION_UPDATES: tuple[dict[str, Any], ...] = VALID_SESSIONS[:2] + VALID_SESSIONS[3:] + (
    {"type": "realtime", "audio": {"input": {"turn_detection": None, "noise_reduction": {"type": "near_field"}}}},
    {"type": "realtime", "tracing": {"workflow_name": "w", "metadata": {"k": 1}}, "tool_choice": "required"},
    {"type": "realtime", "audio": {"output": {"voice": {"id": "voice_custom"}}}},
)


# beta (OpenAI-Beta: realtime=v1) shapes: what a beta connection translates (protocol/beta.py)
_BETA: dict[str, list[dict[str, Any]]] = {
    "session.update": [{"type": "session.update", "session": {
        "modalities": ["text", "audio"], "voice": "alloy", "input_audio_format": "g711_ulaw",
        "output_audio_format": "pcm16", "input_audio_transcription": {"model": "whisper-1"},
        "turn_detection": {"type": "server_vad"}, "max_response_output_tokens": "inf", "temperature": 0.8,
        "speed": 1.1, "audio": {"input": {"noise_reduction": None}}}}],
    "response.create": [{"type": "response.create", "response": {
        "modalities": ["text"], "voice": "alloy", "output_audio_format": "g711_alaw", "temperature": 0.7,
        "max_response_output_tokens": 40, "audio": {"output": {}},
        "input": [{"type": "message", "role": "assistant", "content": [{"type": "text", "text": "Hi"}]}]}}],
    "conversation.item.create": [{"type": "conversation.item.create", "item": {
        "type": "message", "role": "assistant", "content": [{"type": "text", "text": "Earlier answer."}]}}],
}


def valid_events() -> dict[str, list[dict[str, Any]]]:
    """Valid instances of each client event type (some depend on the harness's prepared items)."""
    events: dict[str, list[dict[str, Any]]] = {
        "session.update": [{"type": "session.update", "session": s} for s in _SESSION_UPDATES],
        "input_audio_buffer.append": [{"type": "input_audio_buffer.append", "audio": AUDIO_B64},
                                      {"type": "input_audio_buffer.append", "audio": ""}],
        "input_audio_buffer.commit": [{"type": "input_audio_buffer.commit"}],
        "input_audio_buffer.clear": [{"type": "input_audio_buffer.clear"}],
        "conversation.item.create": [{"type": "conversation.item.create", "item": i} for i in _ITEMS] +
                                    [{"type": "conversation.item.create", "previous_item_id": p, "item": _ITEMS[0]}
                                     for p in ("root", USER_ITEM, "item_missing")],
        "conversation.item.retrieve": [{"type": "conversation.item.retrieve", "item_id": USER_ITEM}],
        "conversation.item.truncate": [{"type": "conversation.item.truncate", "item_id": ASSISTANT_ITEM,
                                        "content_index": 0, "audio_end_ms": ms} for ms in (0, 100, 10**9)],
        "conversation.item.delete": [{"type": "conversation.item.delete", "item_id": "item_missing"}],
        "response.create": [{"type": "response.create", "response": r} for r in _RESPONSES] +
                           [{"type": "response.create"}],
        "response.cancel": [{"type": "response.cancel"}, {"type": "response.cancel", "response_id": "resp_x"}],
        "output_audio_buffer.clear": [{"type": "output_audio_buffer.clear"}],
    }
    for kind, extra in _BETA.items():
        events[kind] += extra
    assert set(events) == set(CLIENT_EVENT_TYPES), "every client event type needs valid instances"
    for kind, instances in events.items():
        for n, event in enumerate(instances):
            event.setdefault("event_id", f"evt_{kind.replace('.', '_')}_{n}")
    return events


VALID = valid_events()
ALL_VALID = [e for instances in VALID.values() for e in instances]


def event_case(rng: random.Random, *, huge: int = 1 << 16, kind: str | None = None) -> tuple[str, str | bytes]:
    """(event type it started from, raw message). Mostly schema-level mutations of a valid event of that
    type, sometimes the valid event itself or a textual mutation."""
    kind = kind or choice(rng, sorted(VALID))
    event = choice(rng, VALID[kind])
    r = rng.random()
    if r < 0.1:
        value = event
    elif r < 0.25:
        value = mutate_json(rng, event, huge=huge, splice=ALL_VALID)  # may change the type itself
    else:
        value = mutate_json(rng, event, huge=huge, splice=ALL_VALID, keep_root_type=True)
    if rng.random() < 0.1 and isinstance(value, dict):
        _set_audio(value, bad_base64(rng))
    text = dumps(rng, value)
    if rng.random() < 0.15:
        return kind, mutate_json_text(rng, text)
    if rng.random() < 0.03:
        return kind, text.encode("utf-8", "surrogatepass")
    if rng.random() < 0.01:
        return kind, '{"type":"input_audio_buffer.append","audio":"' + huge_text(rng, huge) + '"}'
    return kind, text


def _set_audio(event: dict[str, Any], audio: str) -> None:
    if "audio" in event:
        event["audio"] = audio
    item = event.get("item")
    if isinstance(item, dict) and isinstance(item.get("content"), list):
        for part in item["content"]:
            if isinstance(part, dict) and "audio" in part:
                part["audio"] = audio


def bad_base64(rng: random.Random) -> str:
    """Audio that is not strict base64 (or decodes to an odd number of bytes)."""
    return choice(rng, ("A", "AA", "AAA", "AAAAA", "====", "AA=A", "AA==AA==", "A===", "@@@@", "AAAA\n", " AAAA",
                        "AAAAé", "AQ==", "AQI=", "AAEC", "-_-_", "AAAA" * 3 + "A", "\x00\x00\x00\x00", "ＡＡＡＡ"))
