"""Beta (`OpenAI-Beta: realtime=v1`) compatibility: translation at the transport edge (spec §8).

The session engine speaks GA only. A connection that asked for the beta interface gets its client
events translated to GA before the engine sees them (`client_to_ga`) and every server event
translated back (`server_to_beta`):

  client → server   `session.update` flat shape (modalities, voice, input/output_audio_format
                    pcm16 | g711_ulaw | g711_alaw, input_audio_transcription, input_audio_noise_reduction,
                    turn_detection, max_response_output_tokens, speed; temperature is dropped) → GA
                    nested shape; `response.create` params likewise; assistant content types
                    `text`/`audio` → `output_text`/`output_audio` in created items.
  server → client   `response.output_audio.*` → `response.audio.*`, `response.output_audio_transcript.*`
                    → `response.audio_transcript.*`, `response.output_text.*` → `response.text.*`,
                    `conversation.item.added` → `conversation.item.created`, `conversation.item.done`
                    dropped, item content types back to `text`/`audio`, session and response objects
                    back to the flat shape, and `conversation.created` after `session.created`.

Not translated (GA shape passes through): transcription sessions (`transcription_session.update`),
`POST /v1/realtime/sessions`, and GA-only events (`input_audio_buffer.timeout_triggered`, MCP events).
"""

from __future__ import annotations

import json
from typing import Any

from .json_limits import loads as loads_limited

BETA_HEADER_VALUE = "realtime=v1"
BETA_SUBPROTOCOL = "openai-beta.realtime-v1"
BETA_TEMPERATURE = 0.8  # what beta sessions reported; our models' sampling is not configurable per session

_FORMAT_TO_GA = {
    "pcm16": {"type": "audio/pcm", "rate": 24000},
    "g711_ulaw": {"type": "audio/pcmu"},
    "g711_alaw": {"type": "audio/pcma"},
}
_FORMAT_TO_BETA = {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw"}

_RENAMES = {
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "conversation.item.added": "conversation.item.created",
}
_DROPPED = {"conversation.item.done"}
_CONTENT_TO_BETA = {"output_text": "text", "output_audio": "audio"}
_CONTENT_TO_GA = {"text": "output_text", "audio": "output_audio"}


def wants_beta(header: str | None, subprotocols: list[str] | tuple[str, ...] = ()) -> bool:
    """Whether a connection selected the beta interface (header or browser subprotocol)."""
    if header and any(part.strip().lower() == BETA_HEADER_VALUE for part in header.split(",")):
        return True
    return BETA_SUBPROTOCOL in subprotocols


# ---- client (beta) → GA ------------------------------------------------------------------------
def _format_to_ga(value: Any) -> Any:
    return _FORMAT_TO_GA.get(value, value) if isinstance(value, str) else value


def _modalities_to_ga(value: Any) -> Any:
    if isinstance(value, list) and all(isinstance(m, str) for m in value):
        return ["audio"] if "audio" in value else list(value)
    return value


def session_to_ga(session: Any) -> Any:
    """A beta `session.update` session (flat) → the GA nested shape; unknown keys pass through."""
    if not isinstance(session, dict):
        return session
    out: dict[str, Any] = {}
    audio_in: dict[str, Any] = {}
    audio_out: dict[str, Any] = {}
    for key, value in session.items():
        if key == "modalities":
            out["output_modalities"] = _modalities_to_ga(value)
        elif key == "voice":
            audio_out["voice"] = value
        elif key == "speed":
            audio_out["speed"] = value
        elif key == "output_audio_format":
            audio_out["format"] = _format_to_ga(value)
        elif key == "input_audio_format":
            audio_in["format"] = _format_to_ga(value)
        elif key == "input_audio_transcription":
            audio_in["transcription"] = value
        elif key == "input_audio_noise_reduction":
            audio_in["noise_reduction"] = value
        elif key == "turn_detection":
            audio_in["turn_detection"] = value
        elif key == "max_response_output_tokens":
            out["max_output_tokens"] = value
        elif key in ("temperature", "client_secret"):
            continue  # no GA equivalent
        else:
            out[key] = value
    if audio_in or audio_out:
        audio = out.setdefault("audio", {})
        if isinstance(audio, dict):  # anything else is left for validation to report
            for key, flat in (("input", audio_in), ("output", audio_out)):
                if flat and isinstance(audio.get(key) or {}, dict):
                    audio[key] = {**(audio.get(key) or {}), **flat}
    out.setdefault("type", "realtime")
    return out


def _item_to_ga(item: Any) -> Any:
    if isinstance(item, dict) and item.get("role") == "assistant" and isinstance(item.get("content"), list):
        item = dict(item)
        item["content"] = [{**p, "type": _CONTENT_TO_GA[p["type"]]} if isinstance(p, dict) and
                           isinstance(p.get("type"), str) and p["type"] in _CONTENT_TO_GA else p
                           for p in item["content"]]
    return item


def _response_params_to_ga(params: Any) -> Any:
    if not isinstance(params, dict):
        return params
    out: dict[str, Any] = {}
    audio_out: dict[str, Any] = {}
    for key, value in params.items():
        if key == "modalities":
            out["output_modalities"] = _modalities_to_ga(value)
        elif key == "voice":
            audio_out["voice"] = value
        elif key == "output_audio_format":
            audio_out["format"] = _format_to_ga(value)
        elif key in ("max_response_output_tokens", "max_output_tokens"):
            out["max_output_tokens"] = value
        elif key == "temperature":
            continue
        elif key == "input" and isinstance(value, list):
            out["input"] = [_item_to_ga(i) for i in value]
        else:
            out[key] = value
    if audio_out:
        audio = out.get("audio")
        if audio is None:
            audio = out["audio"] = {}
        if isinstance(audio, dict) and isinstance(audio.get("output") or {}, dict):  # else: validation reports
            audio["output"] = {**(audio.get("output") or {}), **audio_out}
    return out


def client_to_ga(event: dict[str, Any]) -> dict[str, Any]:
    kind = event.get("type")
    if kind == "session.update" and "session" in event:
        return {**event, "session": session_to_ga(event["session"])}
    if kind == "response.create" and isinstance(event.get("response"), dict):
        return {**event, "response": _response_params_to_ga(event["response"])}
    if kind == "conversation.item.create" and "item" in event:
        return {**event, "item": _item_to_ga(event["item"])}
    return event


def client_text_to_ga(raw: str | bytes, max_bytes: int) -> str | bytes:
    """Translate one raw client message; anything unreadable passes through for the engine to report."""
    if len(raw) > max_bytes:
        return raw
    try:
        data = loads_limited(raw)  # too deep (a ValueError): passed on for the engine to report
    except ValueError:
        return raw
    if not isinstance(data, dict):
        return raw
    translated = client_to_ga(data)
    if translated is data:
        return raw
    return json.dumps(translated, separators=(",", ":"), ensure_ascii=False)


# ---- server (GA) → beta ------------------------------------------------------------------------
def _format_to_beta(value: Any) -> Any:
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        return _FORMAT_TO_BETA.get(value["type"], value["type"])
    return value


def _modalities_to_beta(value: Any) -> Any:
    if isinstance(value, list) and "audio" in value:
        return ["text", "audio"]
    return value


def item_to_beta(item: Any) -> Any:
    if not isinstance(item, dict) or not isinstance(item.get("content"), list):
        return item
    return {**item, "content": [{**p, "type": _CONTENT_TO_BETA[p["type"]]} if isinstance(p, dict) and
                                p.get("type") in _CONTENT_TO_BETA else p for p in item["content"]]}


def session_to_beta(session: Any) -> Any:
    """A GA session object → the beta flat shape (transcription sessions pass through)."""
    if not isinstance(session, dict) or session.get("type") != "realtime":
        return session
    audio = session.get("audio") or {}
    audio_in = audio.get("input") or {}
    audio_out = audio.get("output") or {}
    voice = audio_out.get("voice")
    out = {
        "id": session.get("id"),
        "object": session.get("object", "realtime.session"),
        "model": session.get("model"),
        "expires_at": session.get("expires_at"),
        "modalities": _modalities_to_beta(session.get("output_modalities")),
        "instructions": session.get("instructions"),
        "voice": voice.get("id") if isinstance(voice, dict) else voice,
        "input_audio_format": _format_to_beta(audio_in.get("format")),
        "output_audio_format": _format_to_beta(audio_out.get("format")),
        "input_audio_transcription": audio_in.get("transcription"),
        "input_audio_noise_reduction": audio_in.get("noise_reduction"),
        "turn_detection": audio_in.get("turn_detection"),
        "tools": session.get("tools", []),
        "tool_choice": session.get("tool_choice", "auto"),
        "temperature": BETA_TEMPERATURE,
        "max_response_output_tokens": session.get("max_output_tokens", "inf"),
        "speed": audio_out.get("speed", 1.0),
        "tracing": session.get("tracing"),
        "include": session.get("include"),
    }
    if session.get("prompt") is not None:
        out["prompt"] = session["prompt"]
    return out


def response_to_beta(response: Any) -> Any:
    if not isinstance(response, dict):
        return response
    out = {k: v for k, v in response.items() if k not in ("output_modalities", "audio")}
    out["output"] = [item_to_beta(i) for i in response.get("output") or []]
    out["modalities"] = _modalities_to_beta(response.get("output_modalities"))
    audio_out = (response.get("audio") or {}).get("output") or {}
    voice = audio_out.get("voice")
    out["voice"] = voice.get("id") if isinstance(voice, dict) else voice
    out["output_audio_format"] = _format_to_beta(audio_out.get("format"))
    out["temperature"] = BETA_TEMPERATURE
    return out


def server_to_beta(event: dict[str, Any]) -> dict[str, Any] | None:
    """One GA server event as a beta client expects it; None when beta had no such event."""
    kind = event.get("type")
    if kind in _DROPPED:
        return None
    out = dict(event)
    if kind in _RENAMES:
        out["type"] = _RENAMES[kind]
    if "item" in out:
        out["item"] = item_to_beta(out["item"])
    if kind in ("session.created", "session.updated"):
        out["session"] = session_to_beta(out.get("session"))
    elif kind in ("response.created", "response.done"):
        out["response"] = response_to_beta(out.get("response"))
    return out


def server_text_to_beta(text: str, conversation_id: str | None = None) -> list[str]:
    """One GA server event (JSON text) → the beta messages to send (none, one, or two: beta clients
    also got `conversation.created` right after `session.created`)."""
    event = server_to_beta(json.loads(text))
    if event is None:
        return []
    out = [json.dumps(event, separators=(",", ":"), ensure_ascii=False)]
    if event.get("type") == "session.created" and conversation_id:
        out.append(json.dumps({"type": "conversation.created", "event_id": str(event.get("event_id", "")) + "c",
                               "conversation": {"id": conversation_id, "object": "realtime.conversation"}},
                              separators=(",", ":")))
    return out
