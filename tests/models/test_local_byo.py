"""Bring-your-own local models: `--llm-model PATH.gguf`, `--stt-model DIR`, `--tts-voice PATH.onnx` without
a URL load those files instead of the profile's (here: the packaged model files, given as paths); the
startup and `models list` name them; a missing or wrong file stops the server, naming the file."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from openrealtime.api.embedded import embedded_server, free_port
from openrealtime.engines import assets
from tests.support import server_settings, ws_event

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def own_files():
    return {"llm_model": str(assets.smollm2_gguf()), "stt_model": str(assets.whisper_tiny_en_dir()),
            "tts_voice": str(assets.piper_joe_paths()[0])}


async def test_the_server_runs_on_model_files_given_by_path(own_files):
    settings = server_settings(engine="local", profile="default", **own_files)
    async with embedded_server(settings) as server:
        described = server.state.models.description
        assert "SmolLM2-135M-Instruct.Q4_1.gguf" in described["llm"]
        assert "en_US-joe-medium" in described["tts"]
        assert server.state.models.stt.model_dir == Path(own_files["stt_model"])
        url = server.url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"
        async with connect(url, additional_headers={"Authorization": "Bearer sk-x"}) as ws:
            await ws_event(ws, "session.created")
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello!"}]}}))
            await ws.send(json.dumps({"type": "response.create"}))
            done = await ws_event(ws, "response.done", timeout=60)
            assert done["response"]["status"] == "completed"
            assert done["response"]["usage"]["output_token_details"]["audio_tokens"] > 0


def test_models_list_names_the_files_in_use(own_files):
    out = subprocess.run([sys.executable, "-m", "openrealtime", "models", "list", "--profile", "default", "--json",
                          "--llm-model", own_files["llm_model"], "--stt-model", own_files["stt_model"],
                          "--tts-voice", own_files["tts_voice"]], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    rows = {r["stage"]: r for r in json.loads(out.stdout)["profiles"]["default"] if r["kind"] == "path"}
    assert rows["llm"]["path"] == own_files["llm_model"] and rows["llm"]["state"] == "external"
    assert rows["stt"]["path"] == own_files["stt_model"]
    assert rows["tts"]["path"] == own_files["tts_voice"]


@pytest.mark.parametrize("flag, make, words", [
    ("--llm-model", lambda d: _file(d / "notes.gguf", b"not a model at all"), "is not a GGUF file"),
    ("--llm-model", lambda d: d / "missing.gguf", "is not a file"),
    ("--stt-model", lambda d: _file(d / "whisper" / "model.bin", b"x").parent, "has no config.json"),
    ("--tts-voice", lambda d: _file(d / "voice.onnx", b"x"), "has no config"),
])
def test_a_wrong_model_file_stops_the_server_naming_it(tmp_path, flag, make, words):
    path = make(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "openrealtime", "serve", "--profile", "test", "--port", str(free_port()),
         "--udp-port", str(free_port(kind=socket.SOCK_DGRAM)), "--tcp-port", str(free_port()), flag, str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode != 0
    assert str(path) in proc.stderr and words in proc.stderr, proc.stderr[-2000:]


def _file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
