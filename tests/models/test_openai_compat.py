"""The OpenAI-compatible HTTP backends against real servers.

* LLM: llama-cpp-python's own OpenAI-compatible server (`python -m llama_cpp.server`, needs its
  `server` extra's dependencies) serving the shipped Qwen2.5-Coder-0.5B GGUF twice: as "qwen"
  (the GGUF's chat template; the server does not parse tool calls, so they arrive as text) and as
  "qwen-fc" (`chat_format: chatml-function-calling`: native streamed `delta.tool_calls`, but only
  for a *named* tool_choice — that server refuses streamed "auto" tool choice).
* STT/TTS: `compat_audio_server.py`, a minimal OpenAI-compatible server over our local Whisper
  tiny.en and Piper engines, as a subprocess.
* One stub: OpenAI's exact streaming format (parallel tool calls, a usage chunk, a 400 naming a
  parameter) replayed by a tiny SSE server — protocol parsing only; no model there.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest

from openrealtime.engines.base import (ChatRequest, Finished, LanguageModel, SpeechToText, TextDelta,
                                       TextToSpeech, ToolCallDelta)
from openrealtime.audio.resample import resample
from openrealtime.engines.openai_compat import (OpenAICompatLLM, OpenAICompatSTT, OpenAICompatTTS, RemoteEndpoint,
                                                RemoteEngineError, list_models)
from tests.support.fault_backend import FaultBackend

pytestmark = pytest.mark.models

REPO = Path(__file__).resolve().parents[2]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: list[str], log_path: Path, ready_url: str, timeout_s: float = 90.0,
                 headers: dict[str, str] | None = None) -> subprocess.Popen:
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(ready_url, timeout=1.0, headers=headers).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError(f"server not ready in {timeout_s} s:\n{log_path.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(llm, request, cancel=None):
    events = list(llm.stream_chat(request, cancel or threading.Event()))
    assert isinstance(events[-1], Finished), events
    assert not any(isinstance(e, Finished) for e in events[:-1])
    return events


def text(events) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


# ---- a real OpenAI-compatible LLM server -------------------------------------------------
@pytest.fixture(scope="module")
def llm_server(tmp_path_factory):
    pytest.importorskip("sse_starlette", reason="llama_cpp.server needs: pip install sse-starlette "
                        "starlette-context pydantic-settings")
    from openrealtime.engines import assets

    gguf = str(assets.qwen_gguf("0.5b"))
    cores = len(os.sched_getaffinity(0))
    common = {"model": gguf, "n_ctx": 2048, "n_threads": max(1, cores - 1), "n_threads_batch": cores,
              "verbose": False}
    port = free_port()
    tmp = tmp_path_factory.mktemp("llm-server")
    config = tmp / "config.json"
    config.write_text(json.dumps({"host": "127.0.0.1", "port": port, "models": [
        {**common, "model_alias": "qwen"},
        {**common, "model_alias": "qwen-fc", "chat_format": "chatml-function-calling"},
    ]}))
    log = tmp / "server.log"
    proc = start_server(["-m", "llama_cpp.server", "--config_file", str(config)], log,
                        f"http://127.0.0.1:{port}/v1/models")
    yield {"url": f"http://127.0.0.1:{port}/v1", "log": log}
    stop_server(proc)


@pytest.fixture(scope="module")
def remote_llm(llm_server):
    llm = OpenAICompatLLM(RemoteEndpoint(llm_server["url"], model="qwen"))
    yield llm
    llm.close()


def test_streams_an_answer(remote_llm):
    assert isinstance(remote_llm, LanguageModel) and remote_llm.supports_images is True
    started = time.monotonic()
    events = run(remote_llm, ChatRequest(messages=[{"role": "user", "content": "What is the capital of France? One word."}],
                                         temperature=0.0, max_tokens=16))
    assert "Paris" in text(events)
    done = events[-1]
    assert done.reason == "stop"
    # llama_cpp.server sends no usage: estimated from the prompt and the streamed chunks
    assert done.input_tokens > 5 and done.output_tokens >= 1
    print(f"remote answer in {time.monotonic() - started:.2f} s")


def test_tool_call_written_as_text_becomes_a_tool_call(remote_llm):
    """"qwen" renders tools with the GGUF template and returns the model's call as plain content
    (the server even strips the <tool_call> tokens): the client still yields a ToolCallDelta."""
    events = run(remote_llm, ChatRequest(messages=[{"role": "user", "content": "What is the weather in Paris?"}],
                                         tools=[WEATHER_TOOL], temperature=0.0, max_tokens=60))
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert calls and calls[0].name == "get_weather" and calls[0].call_id
    args = json.loads("".join(c.arguments for c in calls if c.index == 0))
    assert args["city"].lower().startswith("paris")
    assert text(events) == ""  # no JSON read aloud
    assert events[-1].reason == "tool_calls"


def test_cancel_closes_the_stream(remote_llm, llm_server):
    # mid-stream: cancel after a few deltas; the stream ends at the next delta and the server sees the
    # client disconnect (it stops generating: "disconnected" in its log)
    cancel = threading.Event()
    request = ChatRequest(messages=[{"role": "user", "content": "Count from 1 to 300, separated by commas."}],
                          temperature=0.0, max_tokens=600)
    events = []
    for event in remote_llm.stream_chat(request, cancel):
        events.append(event)
        if isinstance(event, TextDelta) and len(events) == 3:
            cancel.set()
    assert events[-1] == Finished(reason="cancelled", input_tokens=events[-1].input_tokens,
                                  output_tokens=events[-1].output_tokens)
    assert len(events) <= 5, events

    # the server noticed the closed connection and stopped generating the 600 tokens
    deadline = time.monotonic() + 30
    while "disconnected" not in llm_server["log"].read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "disconnected" in llm_server["log"].read_text()


def test_cancel_before_the_first_byte_releases_the_caller():
    """A server that never answers (FaultBackend "hang"), as one still evaluating a long prompt: a cancel
    releases the caller as "cancelled" without waiting for the server (a caller left waiting would get
    the first-token timeout's error instead)."""
    backend = FaultBackend()
    backend.set(llm="hang")
    llm = OpenAICompatLLM(RemoteEndpoint(backend.url, model="fault-llm", first_token_timeout_s=60.0))
    try:
        cancel = threading.Event()
        threading.Timer(0.05, cancel.set).start()
        events = run(llm, ChatRequest(messages=[{"role": "user", "content": "Write a long poem about the sea."}],
                                      max_tokens=200), cancel)
        assert events[-1].reason == "cancelled" and not any(isinstance(e, TextDelta) for e in events), events
        assert backend.count("llm") == 1, "the request had reached the server"
    finally:
        llm.close()
        backend.close()


def test_errors_name_the_flag_to_fix(llm_server):
    base = llm_server["url"].removesuffix("/v1")
    no_v1 = OpenAICompatLLM(RemoteEndpoint(base, model="qwen"))
    with pytest.raises(RemoteEngineError, match=r"404.*check --llm-url ends with /v1"):
        run(no_v1, ChatRequest(messages=[{"role": "user", "content": "Hi"}], max_tokens=1))
    with pytest.raises(RemoteEngineError, match=r"set --llm-url .*/v1"):
        list_models(RemoteEndpoint(base))
    nobody = OpenAICompatLLM(RemoteEndpoint(f"http://127.0.0.1:{free_port()}/v1", role="llm"))
    with pytest.raises(RemoteEngineError, match=r"cannot reach the LLM server .* check --llm-url"):
        run(nobody, ChatRequest(messages=[{"role": "user", "content": "Hi"}], max_tokens=1))
    with pytest.raises(ValueError, match="--stt-url must be an http"):
        RemoteEndpoint("localhost:8000/v1", role="stt")
    assert list_models(RemoteEndpoint(llm_server["url"])) == ["qwen", "qwen-fc"]


def test_native_streamed_tool_calls(llm_server):
    """"qwen-fc" streams real `delta.tool_calls` (repeating name and id on every chunk)."""
    llm = OpenAICompatLLM(RemoteEndpoint(llm_server["url"], model="qwen-fc"), parse_text_tool_calls=False)
    try:
        events = run(llm, ChatRequest(messages=[{"role": "user", "content": "What is the weather in Paris?"}],
                                      tools=[WEATHER_TOOL], temperature=0.0, max_tokens=40,
                                      tool_choice={"type": "function", "function": {"name": "get_weather"}}))
    finally:
        llm.close()
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert calls[0].name == "get_weather" and calls[0].call_id
    assert all(c.name is None and c.call_id is None for c in calls[1:])  # announced once
    assert len(calls) > 2  # arguments arrived in fragments
    assert json.loads("".join(c.arguments for c in calls))["city"] == "Paris"
    assert events[-1].reason == "tool_calls"


# ---- OpenAI's own stream format, replayed (protocol parsing only) -------------------------
OPENAI_TOOL_STREAM = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]},
        "finish_reason": None}], "usage": None},
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"ci"}}]},
                  "finish_reason": None}], "usage": None},
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "ty\": \"Paris\"}"}}]},
                  "finish_reason": None}], "usage": None},
    {"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 1, "id": "call_def", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]},
        "finish_reason": None}], "usage": None},
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 1, "function": {"arguments": "{\"city\": \"Tokyo\"}"}}]},
                  "finish_reason": None}], "usage": None},
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}], "usage": None},
    {"choices": [], "usage": {"prompt_tokens": 80, "completion_tokens": 36, "total_tokens": 116,
                              "prompt_tokens_details": {"cached_tokens": 64}}},
]
OPENAI_MAX_TOKENS_ERROR = {"error": {
    "message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
    "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}}


@pytest.fixture
def stub():
    """Replays scripted replies: (status, body) pairs; SSE bodies are sent in 7-byte pieces."""
    script: list[tuple[int, bytes]] = []
    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            status, body = script.pop(0)
            self.send_response(status)
            self.send_header("Content-Type", "text/event-stream" if status == 200 else "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(0, len(body), 7):
                self.wfile.write(body[i:i + 7])
                self.wfile.flush()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"url": f"http://127.0.0.1:{server.server_address[1]}/v1", "script": script, "bodies": bodies}
    server.shutdown()


def sse(chunks, *, crlf=False) -> bytes:
    nl = "\r\n" if crlf else "\n"
    out = ": keep-alive" + nl + nl
    out += "".join(f"data: {json.dumps(c)}{nl}{nl}" for c in chunks) + f"data: [DONE]{nl}{nl}"
    return out.encode()


def test_openai_stream_format_and_parameter_adaptation(stub):
    stub["script"] += [(400, json.dumps(OPENAI_MAX_TOKENS_ERROR).encode()), (200, sse(OPENAI_TOOL_STREAM, crlf=True)),
                       (200, sse(OPENAI_TOOL_STREAM))]
    llm = OpenAICompatLLM(RemoteEndpoint(stub["url"], model="gpt-x"))
    request = ChatRequest(messages=[{"role": "user", "content": [
        {"type": "text", "text": "Weather in Paris and Tokyo?"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}}]}],
        tools=[WEATHER_TOOL], max_tokens=50)
    events = run(llm, request)
    assert [(e.index, e.call_id, e.name, e.arguments) for e in events[:-1]] == [
        (0, "call_abc", "get_weather", ""), (0, None, None, "{\"ci"), (0, None, None, "ty\": \"Paris\"}"),
        (1, "call_def", "get_weather", ""), (1, None, None, "{\"city\": \"Tokyo\"}")]
    assert events[-1] == Finished(reason="tool_calls", input_tokens=80, output_tokens=36, cached_tokens=64)
    first, retried = stub["bodies"]
    assert first["max_tokens"] == 50 and "max_completion_tokens" not in first
    assert retried["max_completion_tokens"] == 50 and "max_tokens" not in retried
    assert retried["stream"] is True and retried["stream_options"] == {"include_usage": True}
    assert retried["tools"] == [WEATHER_TOOL] and retried["tool_choice"] == "auto"
    assert retried["messages"][0]["content"][1]["type"] == "image_url"  # images pass through
    run(llm, request)  # the adaptation is remembered: no second 400
    assert "max_tokens" not in stub["bodies"][2]
    llm.close()


# ---- STT / TTS against our local engines behind real HTTP -----------------------------------
@pytest.fixture(scope="module")
def audio_server(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("audio-server") / "server.log"
    proc = start_server(["-m", "tests.models.compat_audio_server", "--port", str(port), "--api-key", "sk-test"], log,
                        f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": "Bearer sk-test"})
    yield f"http://127.0.0.1:{port}/v1"
    stop_server(proc)


def sent_requests(audio_server: str) -> list:
    """What the audio server received: [(route, fields), ...]."""
    return httpx.get(audio_server.removesuffix("/v1") + "/debug/requests",
                     headers={"Authorization": "Bearer sk-test"}).json()


@pytest.fixture(scope="module")
def spoken(audio_server):
    """'What is the capital of France?' from the remote TTS (PCM), with arrival times."""
    tts = OpenAICompatTTS(RemoteEndpoint(audio_server, api_key="sk-test", role="tts"))
    started = time.monotonic()
    chunks, times = [], []
    for chunk in tts.synthesize("What is the capital of France? I would like to know, please.", voice="alloy",
                                speed=1.0, cancel=threading.Event()):
        chunks.append(chunk)
        times.append(time.monotonic() - started)
    tts.close()
    return chunks, times


def test_tts_streams_pcm(spoken, audio_server):
    chunks, times = spoken
    assert len(chunks) >= 2, [c.size for c in chunks]
    assert all(c.dtype == np.float32 for c in chunks)
    assert all(c.size >= 2880 for c in chunks[:-1])  # ~120 ms pieces
    audio = np.concatenate(chunks)
    assert 1.5 < audio.size / 24000 < 8 and np.abs(audio).max() > 0.1
    assert times[0] < times[-1]  # the first audio came before the end of the reply
    sent = sent_requests(audio_server)
    assert sent[-1][1]["response_format"] == "pcm" and sent[-1][1]["voice"] == "alloy"
    assert "speed" not in sent[-1][1]


def test_tts_falls_back_to_streamed_wav(spoken, audio_server):
    tts = OpenAICompatTTS(RemoteEndpoint(audio_server, api_key="sk-test", model="tts-wav-only", role="tts"),
                          voice="echo")
    assert isinstance(tts, TextToSpeech) and tts.sample_rate == 24000
    chunks = list(tts.synthesize("What is the capital of France? I would like to know, please.", voice="alloy",
                                 speed=1.25, cancel=threading.Event()))
    assert tts.response_format == "wav"  # after the server's 400 to "pcm"
    sent = sent_requests(audio_server)
    assert [s[1]["response_format"] for s in sent[-2:]] == ["pcm", "wav"]
    assert sent[-1][1]["voice"] == "echo" and sent[-1][1]["speed"] == 1.25  # --tts-voice wins
    audio = np.concatenate(chunks)  # 22.05 kHz WAV resampled to 24 kHz; faster speech is shorter
    pcm_seconds = np.concatenate(spoken[0]).size / 24000
    assert 0.6 < (audio.size / 24000) / (pcm_seconds / 1.25) < 1.4
    # cancel stops a synthesis
    cancel = threading.Event()
    gen = tts.synthesize("One, two, three, four, five, six, seven, eight, nine, ten.", voice="", speed=1.0,
                         cancel=cancel)
    next(gen)
    cancel.set()
    assert list(gen) == []
    tts.close()


def test_stt_transcribes_over_http(spoken, audio_server):
    stt = OpenAICompatSTT(RemoteEndpoint(audio_server, api_key="sk-test", role="stt"))
    assert isinstance(stt, SpeechToText) and stt.sample_rate == 16000
    audio16 = resample(np.concatenate(spoken[0]), 24000, 16000)
    transcript = stt.transcribe(audio16, language="en-US", prompt="Geography questions.")
    words = "".join(c for c in transcript.text.lower() if c.isalnum() or c.isspace())
    assert "capital" in words and "france" in words, transcript
    assert transcript.language == "en" and transcript.audio_seconds == pytest.approx(audio16.size / 16000)
    assert transcript.input_tokens == round(transcript.audio_seconds * 10) and transcript.output_tokens > 0
    sent = sent_requests(audio_server)[-1][1]
    assert sent == {"model": "whisper-1", "response_format": "json", "language": "en", "prompt": "Geography questions."}
    with_logprobs = stt.transcribe(audio16, language="en", logprobs=True)
    assert sent_requests(audio_server)[-1][1]["include[]"] == "logprobs"
    assert "".join(lp["token"] for lp in with_logprobs.logprobs).strip() == with_logprobs.text
    assert all(lp["logprob"] <= 0 and isinstance(lp["bytes"], list) for lp in with_logprobs.logprobs)
    assert transcript.logprobs is None
    bad_key = OpenAICompatSTT(RemoteEndpoint(audio_server, api_key="wrong", role="stt"))
    with pytest.raises(RemoteEngineError, match="401.*check --stt-key"):
        bad_key.transcribe(audio16)
    stt.close()
    bad_key.close()


def test_load_model_stack_with_remote_stages(llm_server, audio_server):
    from openrealtime.engines.remote import remote_backends
    from openrealtime.engines.stack import load_model_stack

    def load(**remote):
        return load_model_stack("test", remote=remote_backends(**remote), progress=progress)

    steps = []

    def progress(stage, message):
        steps.append(stage)

    # mistakes fail fast, naming the flag, before any local model is loaded
    with pytest.raises(RemoteEngineError, match="choose one with --llm-model"):
        load(llm_url=llm_server["url"])
    with pytest.raises(RemoteEngineError, match="--tts-url"):
        load(llm_url=llm_server["url"], llm_model="qwen", tts_url=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(RemoteEngineError, match="--stt-key"):
        load(stt_url=audio_server)
    assert "vad" not in steps

    stack = load(llm_url=llm_server["url"], llm_model="qwen-fc", stt_url=audio_server, stt_key="sk-test",
                 tts_url=audio_server, tts_key="sk-test", tts_voice="nova")
    try:
        assert isinstance(stack.llm, OpenAICompatLLM) and stack.llm.model == "qwen-fc"
        assert isinstance(stack.stt, OpenAICompatSTT) and stack.stt.model == "whisper-1"
        assert isinstance(stack.tts, OpenAICompatTTS) and stack.tts.model == "tts-1" and stack.tts.voice == "nova"
        assert "Silero" in stack.description["vad"] and "OpenAI-compatible" in stack.description["llm"]
        assert {"vad", "stt", "llm", "tts", "stack"} <= set(steps)
    finally:
        stack.close()


async def test_server_routes_a_turn_to_the_remote_llm(llm_server):
    """`openrealtime serve --llm-url …`: a text turn over WebRTC is answered by the remote server."""
    from openrealtime.api.embedded import embedded_server
    from openrealtime.client.rtc import RealtimeRtcClient
    from tests.support import server_settings

    settings = server_settings(engine="local", profile="test", llm_url=llm_server["url"], llm_model="qwen")
    async with embedded_server(settings) as server:
        assert "OpenAI-compatible" in server.state.models.description["llm"]
        client = RealtimeRtcClient(server.url, session={"type": "realtime", "output_modalities": ["text"],
                                                        "instructions": "Answer in one word."})
        await client.connect()
        await client.next_event("session.created")
        client.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "What is the capital of France?"}]}})
        client.send({"type": "response.create"})
        done = await client.next_event("response.done", timeout=60)
        assert "paris" in done["response"]["output"][0]["content"][0]["text"].lower()
        await client.close()
