"""Secrets kept out of what the server shows: log records (observability/redact.py), session objects
(MCP credentials are write-only) and the call monitor's recent events."""

from __future__ import annotations

import io
import json
import logging

import pytest

from openrealtime.observability.logs import JsonFormatter, TextFormatter
from openrealtime.observability.monitor import _shorten
from openrealtime.observability.redact import REDACTED, RedactSecrets, redact
from openrealtime.protocol.session import (RealtimeSessionConfig, apply_session_update, override_session,
                                           parse_session_config, session_object)

TOOL = {"type": "mcp", "server_label": "crm", "server_url": "https://mcp.example.com/mcp",
        "authorization": "tok-1234567890", "headers": {"X-Api-Key": "hdr-abcdef"}}


@pytest.mark.parametrize("line, secret", [
    ("< authorization: Bearer sk-abcdef123456", "sk-abcdef123456"),
    ("< sec-websocket-protocol: realtime, openai-insecure-api-key.ek_0123456789abcdef", "0123456789abcdef"),
    ("minted ek_0123456789abcdef for a browser", "0123456789abcdef"),
    ("webhook secret whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ= loaded", "c2VjcmV0LXNlY3JldC1zZWNyZXQ="),
    ("> Cookie: session=s3cr3t-value", "s3cr3t-value"),
    ("x-api-key: k-0987654321", "k-0987654321"),
    ('< TEXT \'{"type":"session.update","session":{"tools":[{"authorization":"tok-1234567890"}]}}\' [90 bytes]',
     "tok-1234567890"),
    ("< TEXT '{\"type\":\"session.update\",\"session\":{...en-9876543210\"}]}}' [4000 bytes]", "9876543210"),
    ('{"headers": {"X-Api-Key": "hdr-abcdef"}}', "hdr-abcdef"),
    ("GET https://user:p4ssw0rd@mcp.example.com/mcp", "p4ssw0rd"),
])
def test_patterns_are_redacted(line, secret):
    clean = redact(line)
    assert secret not in clean and REDACTED in clean


def test_plain_lines_and_server_frames_stay():
    for line in ("websocket session=sess_1 state=open model=gpt-realtime",
                 "> TEXT '{\"type\":\"session.created\"}' [25 bytes]", "models stage=llm loaded"):
        assert redact(line) == line


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()])
def test_the_filter_redacts_messages_arguments_and_tracebacks(formatter):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets(["sk-configured-key"]))
    handler.setFormatter(formatter)
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("key %s and %s", "sk-configured-key", "Bearer abc.def.ghi")
        try:
            raise RuntimeError("backend refused sk-configured-key")
        except RuntimeError:
            logger.exception("call failed")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "sk-configured-key" not in out and "abc.def.ghi" not in out
    assert "RuntimeError" in out and out.count(REDACTED) >= 3


def test_session_objects_show_mcp_credentials_as_set_not_their_values():
    config = parse_session_config({"type": "realtime", "tools": [TOOL]})
    shown = session_object(config, id="sess_1", expires_at=0).model_dump(mode="json")
    assert shown["tools"][0]["authorization"] == REDACTED and shown["tools"][0]["headers"] == {"X-Api-Key": REDACTED}
    assert config.tools[0].authorization == "tok-1234567890"  # the session itself keeps them
    text = json.dumps(shown)
    assert "tok-1234567890" not in text and "hdr-abcdef" not in text


def test_redacted_values_sent_back_keep_the_stored_ones():
    config = parse_session_config({"type": "realtime", "tools": [TOOL]})
    shown = session_object(config, id="sess_1", expires_at=0).model_dump(mode="json")
    echoed = {"type": "realtime", "tools": shown["tools"]}
    for updated in (apply_session_update(config, echoed), override_session(config, echoed)):
        tool = updated.tools[0]
        assert (tool.authorization, tool.headers) == ("tok-1234567890", {"X-Api-Key": "hdr-abcdef"})
    # new values replace them; a redacted value with no stored tool of that label stays as sent
    changed = apply_session_update(config, {"type": "realtime", "tools": [{**TOOL, "authorization": "tok-new"}]})
    assert changed.tools[0].authorization == "tok-new"
    other = apply_session_update(RealtimeSessionConfig(), echoed)
    assert other.tools[0].authorization == REDACTED


def test_the_call_monitor_redacts_credentials_in_recorded_events():
    event = {"type": "session.update", "session": {"type": "realtime", "tools": [TOOL]}}
    shown = _shorten(event)
    assert shown["session"]["tools"][0]["authorization"] == REDACTED
    assert shown["session"]["tools"][0]["headers"] == {"X-Api-Key": REDACTED}
    assert shown["session"]["tools"][0]["server_url"] == TOOL["server_url"]


def test_credentials_in_url_queries_are_redacted_and_other_queries_kept():
    line = "MCP server w (https://mcp.example/sse?token=abc123secret&x=1&api_key=zzz999): listing failed"
    clean = redact(line)
    assert "abc123secret" not in clean and "zzz999" not in clean
    assert clean == ("MCP server w (https://mcp.example/sse?token=[redacted]&x=1&api_key=[redacted]): "
                     "listing failed")
    assert redact("GET /v1/realtime?model=gpt-realtime&call_id=rtc_1") == \
        "GET /v1/realtime?model=gpt-realtime&call_id=rtc_1"
