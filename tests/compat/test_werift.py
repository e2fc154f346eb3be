"""A second, independent WebRTC stack (werift, pure TypeScript, from npm) completes offer/answer with
POST /v1/realtime/calls and exchanges events on `oai-events`."""

from tests.compat.conftest import KEY, run_node


async def test_werift_call_exchanges_events(compat_server, node_js):
    result = await run_node("werift_call.mjs", compat_server.url + "/v1/realtime/calls", KEY, timeout=60)
    assert "failure" not in result, result
    assert result["status"] == 201 and result["content_type"].startswith("application/sdp"), result
    assert result["location"].startswith("/v1/realtime/calls/rtc_"), result
    assert result["events"][0] == "session.created", result
    assert result["updated_instructions"] == "Hello from werift.", result
    assert result["error"]["code"] == "invalid_value" and result["error"]["event_id"] == "evt_bad", result
    assert result["connection_state"] == "connected", result
