"""Conformance on the current SDK: openai-python 3.63.0 (pinned in pyproject.toml) sends every documented
session field and every client event type through `realtime.connect()`, and every server event our server
sends is validated against the SDK's own pydantic types, strictly: required fields present, types right,
and no field the SDK does not define (except the ones listed in SDK_GAPS, which OpenAI sends too).

The same recorded events are then validated against the older openai-python 2.14.0 (installed apart by
.ci/run into .sdk/openai-2.14.0, run in a subprocess), so both SDK generations read what we send.

The models are scripted (tests/support/fakes.py): this is about the wire, and scripted turns make the
server emit every event type deterministically (function and MCP calls, cancellation, idle timeout);
the real-model turns through the same SDK are in test_openai_python.py.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI
from openai.types.realtime import RealtimeServerEvent
from pydantic import BaseModel, TypeAdapter

from openrealtime.api.embedded import embedded_server
from tests.compat.conftest import KEY
from tests.support import LOCAL_ALLOW, ScriptedLlm, ScriptedStt, fake_stack, running_mcp_server, server_settings
from tests.support.audio import silence, speech

PINNED = "3.63.0"
OLDER = "2.14.0"
OLDER_DIR = Path(__file__).resolve().parents[2] / ".sdk" / f"openai-{OLDER}"
SERVER_EVENT = TypeAdapter(RealtimeServerEvent)
# fields we send that openai-python 3.63 does not define where we send them, and OpenAI sends too
# (../shared/spec/openai-realtime-deltas.md §3, §6): the session events' session object is typed as the
# session *request* (no id/object/expires_at [26], no parallel_tool_calls), and some item types lack the
# common `object: "realtime.item"`
SDK_GAPS = (re.compile(r"^session\.(id|object|expires_at|parallel_tool_calls)$"),
            re.compile(r"(^|\.)(item|output\.\d+)\.object$"))

WEATHER = {"type": "function", "name": "get_forecast", "description": "Get the forecast for a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def every_session_field(mcp_url: str) -> dict[str, Any]:
    """Every field of the 3.63 realtime session (realtime_session_create_request.py), each set."""
    return {
        "type": "realtime", "model": "gpt-realtime-2", "instructions": "Answer briefly.",
        "output_modalities": ["audio"], "max_output_tokens": 400,
        "include": ["item.input_audio_transcription.logprobs"],
        "parallel_tool_calls": True, "reasoning": {"effort": "low"},
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "noise_reduction": {"type": "near_field", "strength": 0.8},
                "transcription": {"model": "gpt-transcribe", "language": "en", "languages": ["en", "fr"],
                                  "keywords": ["Paris"], "delay": "low", "prompt": "Travel questions."},
                "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                                   "silence_duration_ms": 500, "idle_timeout_ms": 5000, "create_response": True,
                                   "interrupt_response": True},
            },
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin", "speed": 1.1},
        },
        "tool_choice": "auto",
        "tools": [WEATHER, {"type": "mcp", "server_label": "weather", "server_url": mcp_url,
                            "server_description": "Weather by city.", "allowed_tools": ["get_weather"],
                            "require_approval": "never", "allowed_callers": ["direct"], "defer_loading": False,
                            "headers": {"X-Team": "conformance"}}],
        "tracing": {"workflow_name": "conformance", "group_id": "g1", "metadata": {"suite": "compat"}},
        "truncation": {"type": "retention_ratio", "retention_ratio": 0.8, "token_limits": {"post_instructions": 2000}},
    }


def extras(model: Any, path: str = "") -> list[str]:
    """Fields present in the data that the SDK type does not define, anywhere in the model."""
    found: list[str] = []
    if isinstance(model, BaseModel):
        for key in (model.model_extra or {}):
            where = f"{path}.{key}".lstrip(".")
            if not any(gap.search(where) for gap in SDK_GAPS):
                found.append(where)
        for name in type(model).model_fields:
            found += extras(getattr(model, name), f"{path}.{name}")
    elif isinstance(model, (list, tuple)):
        for i, value in enumerate(model):
            found += extras(value, f"{path}.{i}")
    elif isinstance(model, dict):
        for key, value in model.items():
            found += extras(value, f"{path}.{key}")
    return found


class Recorder:
    def __init__(self, conn) -> None:
        self.conn = conn
        self.events: list[dict[str, Any]] = []

    async def until(self, type_: str, timeout: float = 30.0, **match: Any) -> dict[str, Any]:
        import asyncio

        async with asyncio.timeout(timeout):
            while True:
                data = json.loads(await self.conn.recv_bytes())
                self.events.append(data)
                if data["type"] == type_ and all(data.get(k) == v for k, v in match.items()):
                    return data


@pytest.fixture
async def scripted_server():
    llm = ScriptedLlm(
        "Paris is lovely in spring.",  # the spoken turn's automatic response
        "Are you still there?",  # the idle timeout's response
        {"name": "get_forecast", "arguments": '{"city": "Paris"}'},  # a function call
        {"name": "get_weather", "arguments": '{"city": "Rome"}'},  # an MCP call (the MCP tool of the same name)
        "It is sunny and twenty one degrees in Rome today, a fine day for a long walk by the river.",
        delay=0.01)
    stack = fake_stack(llm=llm, stt=ScriptedStt("What is the weather in Paris?"))
    settings = server_settings(engine="local", api_keys=[KEY], mcp_allow=list(LOCAL_ALLOW))
    async with embedded_server(settings, models=stack) as server:
        yield server


def test_the_pinned_sdk_is_installed():
    assert openai.__version__ == PINNED, f"tests/compat pins openai=={PINNED} (pyproject.toml); found {openai.__version__}"


async def test_every_client_event_and_every_server_event_on_the_current_sdk(scripted_server, tmp_path):
    ws = scripted_server.url.replace("http://", "ws://") + "/v1"
    client = AsyncOpenAI(base_url=scripted_server.url + "/v1", api_key=KEY, websocket_base_url=ws, max_retries=0)
    sent: set[str] = set()
    with running_mcp_server() as mcp_url:
        async with client.realtime.connect(model="gpt-realtime-2") as conn:
            rec = Recorder(conn)
            await rec.until("session.created")
            # session.update with every documented field
            await conn.session.update(session=every_session_field(mcp_url))
            sent.add("session.update")
            updated = await rec.until("session.updated")
            assert updated["session"]["reasoning"] == {"effort": "low"}
            await rec.until("mcp_list_tools.completed")

            # a spoken turn: VAD, commit, transcription (with logprobs, languages), an automatic spoken response
            await conn.input_audio_buffer.append(audio=base64.b64encode(speech(1200) + silence(900)).decode())
            sent.add("input_audio_buffer.append")
            done = await rec.until("response.done")
            assert done["response"]["status"] == "completed", done
            spoken = next(o for o in done["response"]["output"] if o["type"] == "message")
            completed = next(e for e in rec.events
                             if e["type"] == "conversation.item.input_audio_transcription.completed")
            assert completed["languages"] == [{"code": "en"}] and completed["logprobs"]

            # the idle timeout: silence after the answer → input_audio_buffer.timeout_triggered + a response
            await conn.input_audio_buffer.append(audio=base64.b64encode(silence(5600)).decode())
            await rec.until("input_audio_buffer.timeout_triggered")
            await rec.until("response.done")

            # manual commit and clear
            await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": None}}})
            await rec.until("session.updated")
            await conn.input_audio_buffer.append(audio=base64.b64encode(speech(600)).decode())
            await conn.input_audio_buffer.commit()
            sent.add("input_audio_buffer.commit")
            await rec.until("input_audio_buffer.committed")
            await conn.input_audio_buffer.append(audio=base64.b64encode(speech(300)).decode())
            await conn.input_audio_buffer.clear()
            sent.add("input_audio_buffer.clear")
            await rec.until("input_audio_buffer.cleared")
            await conn.output_audio_buffer.clear()  # WebRTC only: an error, in the SDK's error shape
            sent.add("output_audio_buffer.clear")
            await rec.until("error")

            # a text turn with a function call, then an MCP call run by the server
            await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "Weather in Paris?"}]})
            sent.add("conversation.item.create")
            await conn.response.create(response={"output_modalities": ["text"], "parallel_tool_calls": False,
                                                 "reasoning": {"effort": "minimal"},
                                                 "tool_choice": {"type": "function", "name": "get_forecast"},
                                                 "metadata": {"turn": "function"}})
            sent.add("response.create")
            done = await rec.until("response.done")
            call = done["response"]["output"][0]
            assert call["type"] == "function_call" and call["name"] == "get_forecast"
            await conn.conversation.item.create(item={"type": "function_call_output", "call_id": call["call_id"],
                                                      "output": '{"sky": "sunny"}'})
            await conn.response.create(response={"output_modalities": ["text"],
                                                 "tool_choice": {"type": "mcp", "server_label": "weather"}})
            done = await rec.until("response.done")
            assert done["response"]["output"][0]["type"] == "mcp_call", done
            await conn.response.create(response={"output_modalities": ["text"], "tool_choice": "none"})
            done = await rec.until("response.done")
            assert done["response"]["output"][0]["content"][0]["type"] == "output_text", done

            # a response cancelled while it speaks
            await conn.response.create(response={"output_modalities": ["audio"]})
            await rec.until("response.output_audio.delta")
            await conn.response.cancel()
            sent.add("response.cancel")
            cancelled = await rec.until("response.done")
            assert cancelled["response"]["status"] == "cancelled", cancelled

            # retrieve, truncate and delete the spoken answer
            await conn.conversation.item.retrieve(item_id=spoken["id"])
            sent.add("conversation.item.retrieve")
            await rec.until("conversation.item.retrieved")
            await conn.conversation.item.truncate(item_id=spoken["id"], content_index=0, audio_end_ms=100)
            sent.add("conversation.item.truncate")
            await rec.until("conversation.item.truncated")
            await conn.conversation.item.delete(item_id=spoken["id"])
            sent.add("conversation.item.delete")
            await rec.until("conversation.item.deleted")

    client_types = set(_client_event_types())
    assert sent == client_types, f"client event types not sent: {sorted(client_types - sent)}"

    problems = []
    for data in rec.events:
        try:
            event = SERVER_EVENT.validate_python(data)
        except Exception as exc:  # noqa: BLE001 - collected and reported together
            problems.append(f"{data['type']}: {exc}")
            continue
        problems += [f"{data['type']}: unknown field {path}" for path in extras(event)]
    assert not problems, "\n".join(problems)

    expected = {  # what this conversation must have produced (every type the GA union has that a WebSocket
        # session on a local stack can produce: not output_audio_buffer.* (WebRTC), segment (diarize), DTMF (SIP),
        # rate_limits.updated (not sent by this server), conversation.created / .item.created (beta names))
        "error", "session.created", "session.updated", "conversation.item.added", "conversation.item.done",
        "conversation.item.retrieved", "conversation.item.truncated", "conversation.item.deleted",
        "conversation.item.input_audio_transcription.delta", "conversation.item.input_audio_transcription.completed",
        "input_audio_buffer.committed", "input_audio_buffer.cleared", "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped", "input_audio_buffer.timeout_triggered", "response.created",
        "response.done", "response.output_item.added", "response.output_item.done", "response.content_part.added",
        "response.content_part.done", "response.output_text.delta", "response.output_text.done",
        "response.output_audio.delta", "response.output_audio.done", "response.output_audio_transcript.delta",
        "response.output_audio_transcript.done", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done", "response.mcp_call.in_progress", "response.mcp_call.completed",
        "mcp_list_tools.in_progress", "mcp_list_tools.completed"}
    missing = expected - {e["type"] for e in rec.events}
    assert not missing, f"server event types never sent: {sorted(missing)}"

    # the older SDK generation reads the same events
    recorded = tmp_path / "events.json"
    recorded.write_text(json.dumps(rec.events))
    if not (OLDER_DIR / "openai").is_dir():
        pytest.fail(f"openai-python {OLDER} is missing at {OLDER_DIR}: run .ci/run (it installs it with "
                    f"pip install --no-deps --target .sdk/openai-{OLDER} openai=={OLDER})")
    check = subprocess.run(
        [sys.executable, "-c", OLDER_CHECK, str(recorded)], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(OLDER_DIR)})
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == f"{OLDER} {len(rec.events)} ok", check.stdout + check.stderr


def _client_event_types() -> list[str]:
    """Every client event type of openai-python 3.63's union (realtime_client_event.py)."""
    from typing import get_args

    from openai.types.realtime import RealtimeClientEvent

    union = get_args(RealtimeClientEvent)[0]
    return [get_args(cls.model_fields["type"].annotation)[0] for cls in get_args(union)]


OLDER_CHECK = """
import json, sys
import openai
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter
events = json.load(open(sys.argv[1]))
adapter = TypeAdapter(RealtimeServerEvent)
bad = []
for data in events:
    try:
        adapter.validate_python(data)
    except Exception as exc:
        bad.append(f"{data['type']}: {exc}")
if bad:
    print("\\n".join(bad)); sys.exit(1)
print(openai.__version__, len(events), "ok")
"""
