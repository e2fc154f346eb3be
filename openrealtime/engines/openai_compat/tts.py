"""`TextToSpeech` over `POST {base}/audio/speech`, streamed (OpenAI, speaches, Kokoro-FastAPI,
LocalAI, openedai-speech).

Request: `{"model", "input", "voice", "response_format": "pcm", "speed"}` (speed only when it is
not 1.0). `pcm` is OpenAI's raw 24 kHz signed 16-bit little-endian mono; servers whose raw PCM
has another rate are handled with `pcm_sample_rate=`. The body is read as it arrives and yielded
as float32 chunks of about `chunk_ms` (120 ms) — the first audio plays while the server is still
synthesising the rest. `response_format="wav"` (or "auto", the default, which falls back to WAV
after a 400/422 to "pcm") reads the WAV header from the stream (a streamed WAV's sizes are
placeholders) and supports 16-bit integer and 32-bit float samples at any rate. Audio whose rate
is not 24 kHz is resampled with a streaming polyphase filter (identical to resampling the whole
clip). A body that starts with "RIFF" is parsed as WAV whatever was asked for.

Voice: `voice=` in the constructor (the --tts-voice flag) wins; otherwise the session's voice
("alloy", "marin", ...) is sent as is, "alloy" when empty.
"""

from __future__ import annotations

import logging
import math
import struct
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np

from ...audio.resample import _table, resample
from ..local.tts import clean_text
from .http import BackgroundStream, RemoteEndpoint, RemoteEngineError

log = logging.getLogger(__name__)

OUTPUT_RATE = 24_000
DEFAULT_MODEL = "tts-1"
DEFAULT_VOICE = "alloy"


class StreamResampler:
    """`resample` for audio arriving in pieces: output identical to resampling it in one go."""

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        self.src, self.dst = int(src_rate), int(dst_rate)
        g = math.gcd(self.src, self.dst)
        self.up, self.down = self.dst // g, self.src // g
        taps = _table(self.up, self.down)[0].shape[1] if self.src != self.dst else 0
        self.ctx = math.ceil(taps / self.down) * self.down  # history and look-ahead, whole phase cycles
        self._buf = np.zeros(self.ctx, dtype=np.float32)  # silence before the start, as `resample` pads
        self._emitted = 0
        self._pushed = 0

    def push(self, x: np.ndarray) -> np.ndarray:
        if self.src == self.dst:
            return np.asarray(x, dtype=np.float32)
        self._pushed += x.size
        self._buf = np.concatenate([self._buf, np.asarray(x, dtype=np.float32)])
        ready = (self._buf.size - 2 * self.ctx) // self.down * self.down
        if ready <= 0:
            return np.zeros(0, dtype=np.float32)
        y = resample(self._buf[: self.ctx + ready + self.ctx], self.src, self.dst)
        start = self.ctx * self.up // self.down
        out = y[start : start + ready * self.up // self.down]
        self._buf = self._buf[ready:]
        self._emitted += out.size
        return out

    def flush(self) -> np.ndarray:
        if self.src == self.dst:
            return np.zeros(0, dtype=np.float32)
        total = math.ceil(self._pushed * self.up / self.down)
        y = resample(np.concatenate([self._buf, np.zeros(self.ctx, dtype=np.float32)]), self.src, self.dst)
        start = self.ctx * self.up // self.down
        out = y[start : start + max(0, total - self._emitted)]
        self._buf = np.zeros(self.ctx, dtype=np.float32)
        self._emitted += out.size
        return out


class _Decoder:
    """Raw PCM s16le or a streamed WAV → float32 mono at OUTPUT_RATE, incrementally."""

    def __init__(self, fmt: str, pcm_rate: int) -> None:
        self.fmt = fmt  # "pcm" | "wav" (a RIFF header switches "pcm" to "wav")
        self.rate = pcm_rate
        self.channels = 1
        self.sample_width = 2
        self.float_samples = False
        self._header_done = False
        self._buf = b""
        self._resampler: StreamResampler | None = None

    def feed(self, data: bytes) -> np.ndarray:
        self._buf += data
        if not self._header_done:
            if len(self._buf) < 4:
                return np.zeros(0, dtype=np.float32)
            if self._buf[:4] == b"RIFF":
                self.fmt = "wav"
            elif self.fmt == "wav" or self._buf[:3] == b"ID3" or self._buf[:2] in (b"\xff\xfb", b"\xff\xf3"):
                raise RemoteEngineError("the speech server did not send PCM or WAV audio (mp3?); "
                                        "it must support response_format 'pcm' or 'wav'")
            if self.fmt == "wav" and not self._parse_header():
                return np.zeros(0, dtype=np.float32)
            self._header_done = True
            self._resampler = StreamResampler(self.rate, OUTPUT_RATE)
        frame = self.sample_width * self.channels
        usable = len(self._buf) // frame * frame
        raw, self._buf = self._buf[:usable], self._buf[usable:]
        if not raw:
            return np.zeros(0, dtype=np.float32)
        if self.float_samples:
            audio = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        else:
            audio = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
        if self.channels > 1:
            audio = audio.reshape(-1, self.channels).mean(axis=1)
        assert self._resampler is not None
        return self._resampler.push(audio)

    def finish(self) -> np.ndarray:
        if self._resampler is None:
            if self._buf:
                raise RemoteEngineError("the speech server's WAV stream ended inside its header")
            return np.zeros(0, dtype=np.float32)
        return self._resampler.flush()

    def _parse_header(self) -> bool:
        """Consume the RIFF header up to the `data` chunk; False if more bytes are needed."""
        data = self._buf
        if len(data) < 12:
            return False
        if data[8:12] != b"WAVE":
            raise RemoteEngineError("the speech server sent a RIFF file that is not WAVE")
        pos = 12
        while pos + 8 <= len(data):
            chunk_id, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
            body = pos + 8
            if chunk_id == b"data":
                self._buf = data[body:]
                return True
            if body + size > len(data):
                return False
            if chunk_id == b"fmt ":
                fmt_tag, self.channels, self.rate, _byte_rate, _align, bits = struct.unpack_from("<HHIIHH", data, body)
                if fmt_tag == 0xFFFE and size >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag is in the GUID
                    fmt_tag = struct.unpack_from("<H", data, body + 24)[0]
                if (fmt_tag, bits) == (1, 16):
                    self.float_samples, self.sample_width = False, 2
                elif (fmt_tag, bits) == (3, 32):
                    self.float_samples, self.sample_width = True, 4
                else:
                    raise RemoteEngineError(f"unsupported WAV encoding from the speech server (format {fmt_tag}, "
                                            f"{bits} bits); 16-bit PCM or 32-bit float expected")
            pos = body + size + (size & 1)
        return False


class OpenAICompatTTS:
    """`TextToSpeech` client of an OpenAI-compatible `/audio/speech` endpoint (24 kHz out)."""

    sample_rate = OUTPUT_RATE

    def __init__(self, endpoint: RemoteEndpoint, *, voice: str | None = None, response_format: str = "auto",
                 pcm_sample_rate: int = OUTPUT_RATE, chunk_ms: int = 120,
                 client: httpx.Client | None = None) -> None:
        if response_format not in ("auto", "pcm", "wav"):
            raise ValueError("response_format must be 'auto', 'pcm' or 'wav'")
        self.endpoint = endpoint
        self.model = endpoint.model or DEFAULT_MODEL
        self.voice = voice or None
        self.response_format = response_format
        self.pcm_sample_rate = int(pcm_sample_rate)
        self.chunk_samples = max(1, OUTPUT_RATE * chunk_ms // 1000)
        self.max_concurrency = 8
        self._client = client or endpoint.client()
        self._own_client = client is None

    def describe(self) -> str:
        voice = f", voice {self.voice}" if self.voice else ""
        return f"OpenAI-compatible speech {self.model}{voice} at {self.endpoint.base_url}"

    def _format(self) -> str:
        return "pcm" if self.response_format == "auto" else self.response_format

    def synthesize(self, text: str, *, voice: str = "", speed: float = 1.0,
                   cancel: threading.Event | None = None) -> Iterator[np.ndarray]:
        cancel = cancel or threading.Event()
        text = clean_text(text)
        if not text or cancel.is_set():
            return
        speed = min(4.0, max(0.25, float(speed or 1.0)))
        started = time.monotonic()
        for _attempt in range(2):
            fmt = self._format()
            body: dict[str, object] = {"model": self.model, "input": text,
                                       "voice": self.voice or voice or DEFAULT_VOICE, "response_format": fmt}
            if abs(speed - 1.0) > 1e-3:
                body["speed"] = round(speed, 3)
            with BackgroundStream(self._client, self.endpoint, "POST", "audio/speech", cancel, json=body) as stream:
                try:
                    response = stream.open()
                except RemoteEngineError:
                    if self.response_format == "auto" and fmt == "pcm" and stream.status in (400, 422):
                        log.warning("%s rejected response_format 'pcm'; using 'wav' from now on", self.endpoint.label)
                        self.response_format = "wav"
                        continue
                    raise
                if response is None:
                    return
                ctype = response.headers.get("content-type", "")
                if "json" in ctype or "text/" in ctype:
                    raise RemoteEngineError(f"{self.endpoint.label} answered /audio/speech with {ctype}, not audio")
                decoder = _Decoder(fmt, self.pcm_sample_rate)
                pending: list[np.ndarray] = []
                held = 0
                first = True
                for chunk in stream.chunks():
                    audio = decoder.feed(chunk)
                    if audio.size:
                        pending.append(audio)
                        held += audio.size
                    if held >= self.chunk_samples:
                        if first:
                            log.debug("tts first audio after %.3f s", time.monotonic() - started)
                            first = False
                        yield np.concatenate(pending)
                        pending, held = [], 0
                    if cancel.is_set():
                        return
                if cancel.is_set():
                    return
                tail = decoder.finish()
                if tail.size:
                    pending.append(tail)
                if pending:
                    yield np.concatenate(pending)
                return

    def warmup(self) -> None:
        for _chunk in self.synthesize("Hello.", voice="", speed=1.0, cancel=threading.Event()):
            pass

    def close(self) -> None:
        if self._own_client:
            self._client.close()
