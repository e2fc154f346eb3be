"""Admission of conversations (api/admission.py): beyond `--max-conversations`, a new WebSocket session or
WebRTC call gets 429 `too_many_conversations` with Retry-After in OpenAI's error shape; once a conversation
ends, the next one is admitted. `auto` follows what the in-process language model declares it decodes at
once, and sets no limit with a remote one or the echo engine."""

import json
from types import SimpleNamespace

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from openrealtime.api.admission import RETRY_AFTER_S, conversation_limit
from openrealtime.api.embedded import embedded_server
from tests.support import ScriptedLlm, assert_openai_error, fake_stack, server_settings, wait_for, ws_event

KEY = "sk-test-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def server():
    settings = server_settings(engine="local", api_keys=[KEY], max_conversations=1)
    async with embedded_server(settings, models=fake_stack(llm=ScriptedLlm())) as srv:
        yield srv


def ws_url(srv) -> str:
    return srv.url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"


async def test_beyond_the_limit_new_sessions_and_calls_get_429_until_one_ends(server):
    async with connect(ws_url(server), additional_headers=HEADERS) as first:
        await ws_event(first, "session.created")
        with pytest.raises(InvalidStatus) as info:
            async with connect(ws_url(server), additional_headers=HEADERS):
                pass
        response = info.value.response
        assert response.status_code == 429
        assert response.headers["Retry-After"] == str(RETRY_AFTER_S)
        body = json.loads(response.body)
        assert body["error"]["code"] == "too_many_conversations" and body["error"]["type"] == "rate_limit_exceeded"
        async with httpx.AsyncClient(base_url=server.url, headers=HEADERS) as http:
            resp = await http.post("/v1/realtime/calls", content=b"v=0\r\n",
                                   headers={"Content-Type": "application/sdp"})
        assert_openai_error(resp, 429, "too_many_conversations")
        assert resp.headers["Retry-After"] == str(RETRY_AFTER_S)
    await wait_for(lambda: server.state.live_sessions() == 0, timeout=10, what="the first session ended")
    async with connect(ws_url(server), additional_headers=HEADERS) as again:
        await ws_event(again, "session.created")


def test_auto_follows_the_in_process_language_model():
    local = SimpleNamespace(llm=SimpleNamespace(max_concurrency=4), remote={})
    assert conversation_limit(None, "local", local) == 4
    assert conversation_limit(None, "local", SimpleNamespace(llm=SimpleNamespace(max_concurrency=8),
                                                             remote={"llm": object()})) is None
    assert conversation_limit(None, "local", SimpleNamespace(llm=object(), remote={})) is None  # declares none
    assert conversation_limit(None, "echo", local) is None
    assert conversation_limit(0, "local", local) is None
    assert conversation_limit(2, "local", local) == 2
