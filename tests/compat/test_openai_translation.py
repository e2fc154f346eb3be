"""openai-python's Realtime translation surface (3.63: `realtime.translations`) against our server on the real
local models: a translation client secret, a WebSocket session opened with it through the SDK's helper
(`openai.lib.realtime_translation`), spoken Spanish (espeak-ng) → Spanish input transcript deltas, English
output transcript deltas and English speech (Piper); then a target without a voice (French: text only, said
in the session object), bad events answered with errors, English speech → Japanese text and speech (the
Kokoro voices; Whisper hears Japanese in it), and `session.close` → `session.closed`. Every server event
is validated strictly against the SDK's own types."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess

from openai import AsyncOpenAI
from openai.lib.realtime_translation import AsyncTranslationSession
from openai.types.realtime import RealtimeTranslationServerEvent
from pydantic import TypeAdapter

from openrealtime.audio.convert import pcm24k_to_f32_16k
from tests.compat.conftest import KEY, pcm24k_from_wav
from tests.support import spoken_wav

SERVER_EVENT = TypeAdapter(RealtimeTranslationServerEvent)
FRAME = 9600  # 200 ms of PCM16 24 kHz
SPANISH = "Buenos días. Me gustaría un café con leche, por favor."


def client_for(server, key: str = KEY) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0,
                       websocket_base_url=server.url.replace("http://", "ws://") + "/v1")


def spanish_pcm(tmp_path) -> bytes:
    """SPANISH spoken by espeak-ng's Spanish voice (no Spanish voice ships for the server itself)."""
    raw = tmp_path / "es.raw.wav"
    subprocess.run(["espeak-ng", "-v", "es", "-s", "130", "-w", str(raw), SPANISH], check=True)
    return pcm24k_from_wav(raw)


async def receive_until(conn, type_: str, seen: list, *, timeout: float = 240.0):
    """Events until one of `type_`, each validated strictly as the SDK's own model."""
    async with asyncio.timeout(timeout):
        while True:
            event = await conn.recv()
            data = event.model_dump(mode="json", exclude_unset=True) if hasattr(event, "model_dump") else event
            SERVER_EVENT.validate_python(json.loads(json.dumps(data)), strict=True)
            seen.append(event)
            if event.type == type_:
                return event


async def send_audio(conn, pcm: bytes) -> None:
    for i in range(0, len(pcm), FRAME):
        await conn.send({"type": "session.input_audio_buffer.append",
                         "audio": base64.b64encode(pcm[i:i + FRAME]).decode()})


def text_of(seen: list, type_: str) -> str:
    return "".join(e.delta for e in seen if e.type == type_)


async def test_spoken_spanish_translated_to_english_speech_with_a_client_secret(compat_server, tmp_path):
    api = client_for(compat_server)
    secret = await api.realtime.translations.client_secrets.create(
        session={"model": "gpt-realtime-translate", "audio": {
            "input": {"transcription": {"model": "gpt-realtime-whisper"}}, "output": {"language": "en"}}},
        expires_after={"anchor": "created_at", "seconds": 120})
    assert secret.value.startswith("ek_") and secret.session.type == "translation"
    assert secret.session.audio.output.language == "en" and secret.session.model == "gpt-realtime-translate"

    browser = client_for(compat_server, key=secret.value)  # what a browser holding only the secret can do
    seen: list = []
    async with AsyncTranslationSession(browser.realtime.translations, model="gpt-realtime-translate") as conn:
        created = await receive_until(conn, "session.created", seen)
        assert created.session.audio.input.transcription.model == "gpt-realtime-whisper"
        assert created.session.model_extra["output_modalities"] == ["text", "audio"]
        speech = bytes(FRAME * 2) + spanish_pcm(tmp_path) + bytes(FRAME * 6)
        await send_audio(conn, speech)
        await receive_until(conn, "session.output_audio.delta", seen)
        await conn.send({"type": "session.close"})
        await receive_until(conn, "session.closed", seen)

    heard, said = text_of(seen, "session.input_transcript.delta"), text_of(seen, "session.output_transcript.delta")
    print(f"heard {heard!r} → said {said!r}")
    assert "café" in heard.lower() or "leche" in heard.lower(), heard
    assert "coffee" in said.lower(), said
    audio = [e for e in seen if e.type == "session.output_audio.delta"]
    assert sum(len(base64.b64decode(e.delta)) for e in audio) > 24000 * 2  # over a second of speech
    assert all(e.format == "pcm16" and e.sample_rate == 24000 and e.channels == 1 for e in audio)
    elapsed = [e.elapsed_ms for e in seen if getattr(e, "elapsed_ms", None) is not None]
    assert elapsed == sorted(elapsed) and all(ms % 200 == 0 for ms in elapsed)


async def test_japanese_speech_a_text_only_target_bad_events_and_close(compat_server, model_stack, tmp_path):
    api = client_for(compat_server)
    seen: list = []
    async with api.realtime.translations.connect(model="gpt-realtime-translate") as conn:
        await receive_until(conn, "session.created", seen)
        await conn.session.update(session={"audio": {"output": {"language": "fr"}}})
        updated = await receive_until(conn, "session.updated", seen)
        assert updated.session.model_extra["output_modalities"] == ["text"]  # no French voice ships
        assert "French" in updated.session.model_extra["notice"]

        await conn.send({"type": "session.update", "event_id": "bad1", "session": {"model": "other"}})
        error = await receive_until(conn, "error", seen)
        assert error.error.event_id == "bad1" and error.error.param == "session.model"
        await conn.send_raw('{"type": "response.create"}')
        error = await receive_until(conn, "error", seen)
        assert error.error.param == "type" and error.error.code == "invalid_value"

        await conn.session.update(session={"audio": {"output": {"language": "ja"}}})
        updated = await receive_until(conn, "session.updated", seen)
        assert updated.session.model_extra["output_modalities"] == ["text", "audio"]  # the Kokoro voices
        pcm = pcm24k_from_wav(spoken_wav(tmp_path / "en.wav", "Good morning. I would like a cup of tea, please."))
        await send_audio(conn, bytes(FRAME) + pcm + bytes(FRAME * 6))
        await conn.session.close()
        await receive_until(conn, "session.closed", seen)
    said = text_of(seen, "session.output_transcript.delta")
    spoken = b"".join(base64.b64decode(e.delta) for e in seen if e.type == "session.output_audio.delta")
    # what the Japanese voice said, as Whisper hears it
    heard = model_stack.stt.transcribe(pcm24k_to_f32_16k(spoken), language="ja").text if spoken else ""
    print(f"said {said!r}, heard back {heard!r}")
    assert any("\u3040" <= c <= "\u30ff" or "\u4e00" <= c <= "\u9fff" for c in said), said
    assert len(spoken) > 24000 * 2 and any("\u3040" <= c <= "\u9fff" for c in heard), heard
