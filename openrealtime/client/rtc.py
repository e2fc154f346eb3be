"""Connect to a Realtime server over WebRTC exactly like a browser running the seed demo:
an offer with a data channel `oai-events` and a microphone track, POSTed as multipart
(`sdp` + `session`), answer applied, events read from the channel."""

from __future__ import annotations

import asyncio
import fractions
import json
import time
import wave
from dataclasses import dataclass, field
from typing import Any

import av
import httpx
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..audio.convert import f32_to_pcm16
from ..audio.resample import resample

SAMPLE_RATE = 48000
FRAME = 960  # 20 ms at 48 kHz


class PcmSourceTrack(MediaStreamTrack):
    """A microphone stand-in: plays queued 48 kHz mono PCM, silence otherwise, clock-paced."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._buf = bytearray()
        self._start: float | None = None
        self._pts = 0
        self.drop_next = 0

    def play(self, pcm48k: bytes) -> None:
        self._buf += pcm48k

    def play_wav(self, path: str) -> float:
        """Queue a WAV file (any rate, mono/stereo); returns its duration in seconds."""
        pcm = load_wav_48k(path)
        self.play(pcm)
        return len(pcm) / 2 / SAMPLE_RATE

    @property
    def pending_s(self) -> float:
        return len(self._buf) / 2 / SAMPLE_RATE

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._pts += FRAME
            delay = self._start + self._pts / SAMPLE_RATE - now
            if delay > 0:
                await asyncio.sleep(delay)
        chunk = bytes(self._buf[: FRAME * 2])
        del self._buf[: FRAME * 2]
        chunk += bytes(FRAME * 2 - len(chunk))
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME)
        frame.planes[0].update(chunk)
        frame.pts = self._pts
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        return frame


def load_wav_48k(path: str) -> bytes:
    with wave.open(path, "rb") as w:
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        raw = w.readframes(w.getnframes())
    if width != 2:
        raise ValueError(f"{path}: only 16-bit WAV is supported")
    samples = np.frombuffer(raw, dtype=np.int16).reshape(-1, channels).mean(axis=1) / 32768.0
    return f32_to_pcm16(resample(samples, rate, SAMPLE_RATE))


@dataclass
class ReceivedAudio:
    frames: int = 0
    voiced_frames: int = 0
    # when the RTP packet carrying the first voiced frame arrived (before aiortc's jitter buffer,
    # which holds 4 frames = 80 ms; a browser's adaptive one holds ≈ 20-40 ms on a LAN)
    first_voiced_at: float | None = None
    first_voiced_decoded_at: float | None = None  # when that frame left aiortc's decoder
    arrivals: dict[int, float] = field(default_factory=dict)  # RTP timestamp → arrival time (recent)

    def note_arrival(self, rtp_timestamp: int) -> None:
        self.arrivals.setdefault(rtp_timestamp, time.monotonic())
        if len(self.arrivals) > 500:
            for key in list(self.arrivals)[:250]:
                del self.arrivals[key]
    pcm: bytearray = field(default_factory=bytearray)
    keep_pcm: bool = False


class RealtimeRtcClient:
    def __init__(self, base_url: str, api_key: str = "test", *, session: dict[str, Any] | None = None,
                 video: bool = False, encoding: str = "multipart") -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.session = session
        self.encoding = encoding
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = PcmSourceTrack()
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.log: list[dict[str, Any]] = []
        self.audio = ReceivedAudio()
        self.call_id: str | None = None
        self.channel = self.pc.createDataChannel("oai-events")
        self.opened = asyncio.Event()
        self.timings: dict[str, float] = {}
        self._tasks: list[asyncio.Task] = []
        self.pc.addTrack(self.mic)
        self._audio_receiver = self.pc.getTransceivers()[-1].receiver
        self._time_arrivals(self._audio_receiver)
        if video:
            self.pc.addTransceiver("video", direction="sendonly")

        @self.channel.on("open")
        def _open() -> None:
            self.opened.set()

        @self.channel.on("message")
        def _message(message: str) -> None:
            event = json.loads(message)
            event["_t"] = time.monotonic()
            if "session.created" == event.get("type"):
                self.timings.setdefault("session_created", time.monotonic())
            self.log.append(event)
            self.events.put_nowait(event)

        @self.pc.on("track")
        def _track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._tasks.append(asyncio.create_task(self._consume_audio(track)))

    def _time_arrivals(self, receiver: Any) -> None:
        """Note when each audio RTP packet arrives (aiortc hands packets to this receiver method;
        without it, the first voiced frame is timed when decoded)."""
        handle = getattr(receiver, "_handle_rtp_packet", None)
        if handle is None:
            return

        async def timed(packet: Any, arrival_time_ms: int) -> None:
            self.audio.note_arrival(packet.timestamp)
            await handle(packet, arrival_time_ms)

        receiver._handle_rtp_packet = timed

    def _arrival_of(self, pts: int | None) -> float | None:
        """Arrival time of the packet behind a decoded frame: aiortc numbers frames from the first
        RTP timestamp it decoded (its private TimestampMapper); None when that is not known."""
        mapper = getattr(self._audio_receiver, "_RTCRtpReceiver__timestamp_mapper", None)
        origin = getattr(mapper, "_origin", None)
        if pts is None or origin is None:
            return None
        return self.audio.arrivals.get((pts + origin) % (1 << 32))

    async def _consume_audio(self, track: MediaStreamTrack) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=24000)
        try:
            while True:
                frame = await track.recv()
                arrived = self._arrival_of(frame.pts)
                for out in resampler.resample(frame):
                    pcm = bytes(out.planes[0])[: out.samples * 2]
                    samples = np.frombuffer(pcm, dtype=np.int16)
                    self.audio.frames += 1
                    if samples.size and np.sqrt(np.mean(samples.astype(np.float32) ** 2)) > 100:
                        self.audio.voiced_frames += 1
                        if self.audio.first_voiced_at is None:
                            self.audio.first_voiced_decoded_at = time.monotonic()
                            self.audio.first_voiced_at = arrived or self.audio.first_voiced_decoded_at
                    if self.audio.keep_pcm:
                        self.audio.pcm += pcm
        except MediaStreamError:
            return

    async def connect(self, http: httpx.AsyncClient | None = None, path: str = "/v1/realtime/calls") -> httpx.Response:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = self.pc.localDescription.sdp
        own = http is None
        http = http or httpx.AsyncClient(timeout=30)
        headers = {"Authorization": f"Bearer {self.api_key}"}
        url = self.base_url + path
        self.timings["post"] = time.monotonic()
        try:
            if self.encoding == "multipart":
                files = {"sdp": (None, offer)}
                if self.session is not None:
                    files["session"] = (None, json.dumps(self.session))
                resp = await http.post(url, headers=headers, files=files)
            elif self.encoding == "sdp":
                resp = await http.post(url, headers={**headers, "Content-Type": "application/sdp"}, content=offer)
            else:
                resp = await http.post(url, headers=headers, json={"sdp": offer, "session": self.session})
        finally:
            if own:
                await http.aclose()
        self.timings["answer"] = time.monotonic()
        if resp.status_code != 201:
            return resp
        self.call_id = resp.headers["location"].rsplit("/", 1)[-1]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=resp.text, type="answer"))
        return resp

    def send(self, event: dict[str, Any]) -> None:
        self.channel.send(json.dumps(event))

    async def next_event(self, type_: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
        """The next event (of `type_`, skipping others)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise asyncio.TimeoutError(f"no {type_ or 'event'} within {timeout}s; got {[e['type'] for e in self.log]}")
            event = await asyncio.wait_for(self.events.get(), remaining)
            if type_ is None or event["type"] == type_:
                return event

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
