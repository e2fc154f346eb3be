"""What the tests share, in one package:

* waiting.py: `wait_for` (the one polling helper), `ws_event` (the next event of a type on a WebSocket);
* audio.py: `speechlike` (the one synthetic speech generator), `speech`/`silence` (24 kHz PCM built on
  it), `spoken_wav` (espeak-ng) and `piper_wav` (the server's own voice) for fake microphones;
* servers.py: `server_settings` for in-process servers, `assert_openai_error` for their error replies;
* mcp_servers.py: a real MCP server (FastMCP) and other ASGI apps on a free port, `local_egress`;
* fakes.py: scripted models and a recording transport for the sans-network engine tests;
* fault_backend.py: an OpenAI-compatible model server that misbehaves on request;
* caller_process.py: a WebRTC caller in a process of its own (`python -m tests.support.caller_process`);
* serve_process.py: `openrealtime serve` as a real process (signals, exit codes, its log);
* redis_server.py: a real `redis-server` on a free port, to kill and start again (cluster tests).
* cluster_calls.py: node processes on one Redis, talking aiortc calls, their RTP loss, the call list and
  cluster gauges (cluster tests; tests/net/lan.py puts nodes on a LAN of network namespaces).

Import from here (`from tests.support import wait_for, server_settings`) or from the module.
"""

from tests.support.audio import piper_wav, silence, speech, speechlike, spoken_wav
from tests.support.fakes import (
    EnergyVad,
    QuietingSuppressor,
    RecordingTransport,
    ScriptedLlm,
    ScriptedStt,
    ScriptedTurn,
    ToneTts,
    fake_stack,
)
from tests.support.mcp_servers import (
    LOCAL_ALLOW,
    build_server,
    lingering_stream_app,
    local_egress,
    running_mcp_server,
    serving,
)
from tests.support.servers import assert_openai_error, server_settings
from tests.support.waiting import wait_for, ws_event

__all__ = [
    "LOCAL_ALLOW", "EnergyVad", "QuietingSuppressor", "RecordingTransport", "ScriptedLlm", "ScriptedStt",
    "ScriptedTurn", "ToneTts", "assert_openai_error", "build_server", "fake_stack", "lingering_stream_app",
    "local_egress", "piper_wav", "running_mcp_server", "server_settings", "serving", "silence", "speech",
    "speechlike", "spoken_wav", "wait_for", "ws_event",
]
