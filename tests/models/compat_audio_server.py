"""A minimal OpenAI-compatible speech server over OUR local engines (real models, real HTTP).

    python -m tests.models.compat_audio_server --port 8100 [--whisper tiny.en]

Routes (the subset of OpenAI's API the remote clients use):

* `GET  /v1/models` — {"data": [{"id": "whisper-1"}, {"id": "tts-1"}, {"id": "tts-wav-only"}]}
* `POST /v1/audio/transcriptions` — multipart `file` (WAV), `model`, `language`, `prompt`,
  `response_format` (json | text | verbose_json), `include[]=logprobs` → {"text": ..., "logprobs": [...]};
  faster-whisper underneath.
* `POST /v1/audio/speech` — JSON {model, input, voice, response_format, speed}. `pcm`: raw 24 kHz
  s16le mono, streamed one Piper chunk at a time; `wav`: a *streamed* WAV (placeholder sizes) at
  22.05 kHz (so clients must read the header and resample). Model "tts-wav-only" rejects `pcm`
  with a 400, like servers that only write container formats. Other formats: 400.

Errors use OpenAI's shape. A bearer token is required when `--api-key` is set. It exists for the
tests of `openrealtime.engines.openai_compat` (no speech server ships on PyPI here); it is not
part of the product.
"""

from __future__ import annotations

import argparse
import io
import struct
import threading
import wave

import numpy as np
from fastapi import FastAPI, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from openrealtime.audio.resample import resample

WAV_RATE = 22_050


def _error(status: int, message: str, param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": param,
                                   "code": None}}, status_code=status)


def _decode_wav(data: bytes) -> np.ndarray:
    with wave.open(io.BytesIO(data), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError("only 16-bit WAV is supported")
        audio = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
        if wav.getnchannels() > 1:
            audio = audio.reshape(-1, wav.getnchannels()).mean(axis=1)
        return resample(audio, wav.getframerate(), 16_000)


def _streamed_wav_header(rate: int) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"data" + struct.pack("<I", 0xFFFFFFFF))


def create_app(stt, tts, *, api_key: str | None = None) -> FastAPI:
    """`stt`/`tts`: our `SpeechToText` / `TextToSpeech` engines."""
    app = FastAPI()
    app.state.requests = []  # (path, fields) for tests that inspect what clients sent

    @app.middleware("http")
    async def auth(request: Request, call_next):
        if api_key and request.headers.get("authorization") != f"Bearer {api_key}":
            return _error(401, "Incorrect API key provided.")
        return await call_next(request)

    @app.get("/debug/requests")
    def debug_requests():
        return app.state.requests

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "openrealtime-tests"}
                                           for m in ("whisper-1", "tts-1", "tts-wav-only")]}

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request):
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile) and not hasattr(upload, "read"):
            return _error(400, "file is required", "file")
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        app.state.requests.append(("transcriptions", fields))
        if fields.get("model") != "whisper-1":
            return _error(404, f"The model '{fields.get('model')}' does not exist", "model")
        try:
            audio = _decode_wav(await upload.read())
        except (wave.Error, ValueError, EOFError) as exc:
            return _error(400, f"could not decode the audio file: {exc}", "file")
        want_logprobs = "logprobs" in form.getlist("include[]")
        transcript = stt.transcribe(audio, language=fields.get("language") or None, prompt=fields.get("prompt") or None,
                                    logprobs=want_logprobs)
        fmt = fields.get("response_format", "json")
        if fmt == "text":
            return PlainTextResponse(transcript.text)
        body = {"text": transcript.text}
        if want_logprobs and fmt == "json":
            body["logprobs"] = transcript.logprobs
        if fmt == "verbose_json":
            body.update(language=transcript.language, duration=transcript.audio_seconds)
        return body

    @app.post("/v1/audio/speech")
    async def speech(request: Request):
        body = await request.json()
        app.state.requests.append(("speech", body))
        text = str(body.get("input") or "")
        fmt = body.get("response_format", "mp3")
        model = body.get("model")
        if model not in ("tts-1", "tts-wav-only"):
            return _error(404, f"The model '{model}' does not exist", "model")
        if not text:
            return _error(400, "input is required", "input")
        if fmt not in ("pcm", "wav") or (model == "tts-wav-only" and fmt == "pcm"):
            return _error(400, f"response_format {fmt!r} is not supported by {model}", "response_format")
        speed = float(body.get("speed") or 1.0)
        cancel = threading.Event()

        def chunks():
            if fmt == "wav":
                yield _streamed_wav_header(WAV_RATE)
            try:  # no lock held across yields: a client that hangs up leaves this generator suspended
                for audio in tts.synthesize(text, voice=str(body.get("voice") or ""), speed=speed, cancel=cancel):
                    if fmt == "wav":
                        audio = resample(audio, tts.sample_rate, WAV_RATE)
                    yield (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
            finally:
                cancel.set()

        media = "audio/wav" if fmt == "wav" else "audio/pcm"
        return StreamingResponse(chunks(), media_type=media)

    return app


def main() -> None:
    import uvicorn

    from openrealtime.engines.local.asr import WhisperSTT
    from openrealtime.engines.local.tts import PiperTTS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--whisper", default="tiny.en")
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args()
    stt = WhisperSTT(args.whisper, cpu_threads=2)
    tts = PiperTTS(threads=1)
    tts.noise_scale = tts.noise_w = 0.0  # the same speech every run: the tests transcribe it back
    uvicorn.run(create_app(stt, tts, api_key=args.api_key), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
