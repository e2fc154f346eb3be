"""One caller process of bench/soak.py: `--slots` callers that call, talk, hang up and call again until
stdin closes (then every live call is hung up and the process exits). bench/soak.py SIGKILLs some of
these processes to make their callers vanish without a goodbye, and starts new ones (callers coming back).

    python bench/_soak_caller.py --url URL --slots K [--mode echo|voice] [--loss 0.05] [--speech WAV]
                                 [--hold 4,16] [--pause 0.2,2] [--stall-s 8] [--fail-s 20] [--seed N]

One call: offer (data channel `oai-events` + a microphone track), multipart POST, answer, wait for
`session.created`, hold for a random time in --hold seconds, leave (half the callers close their peer
connection, which sends a DTLS close; the other half POST /v1/realtime/calls/{id}/hangup first), pause.
The microphone sends pre-encoded Opus (no client-side encoder): a tone in `echo` mode (the echo engine
plays it back); in `voice` mode a spoken question (--speech WAV) every few seconds with encoded silence
between, and every other turn a typed question (`conversation.item.create` + `response.create`).
Received RTP is counted as it leaves SRTP (no jitter buffer or decoder), so callers stay cheap.
--loss drops that share of RTP/RTCP datagrams in both directions at this caller's ICE transport
(ICE, DTLS and SCTP pass: setup and events are not what the loss is about).

One JSON line per event on stdout (times are time.monotonic(), which is system-wide on Linux):
  {"ev": "attempt", "slot"}                    an offer is about to be POSTed
  {"ev": "posted", "slot", "call_id", "t"}     201: the server has the call
  {"ev": "created", "call_id", "ms"}           POST → session.created
  {"ev": "stall", "call_id"}                   no session.created within --stall-s (keeps waiting)
  {"ev": "failed", "call_id", "why"}           non-201, or no session.created within --fail-s
  {"ev": "down", "call_id", "how", "rx", "gaps", "responses"}   the caller left (how: close | api)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FRAME_S = 0.020
GAP_S = 0.060
SESSION_ECHO = {"type": "realtime"}
SESSION_VOICE = {"type": "realtime", "instructions": "Answer in one short sentence.", "max_output_tokens": 24}
TYPED = "What is the capital of France?"


def emit(record: dict) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def opus_packets(pcm48: "bytes") -> list[bytes]:
    """20 ms Opus packets (mono 32 kbps voip) of 48 kHz s16 mono PCM."""
    import av
    import numpy as np

    enc = av.CodecContext.create("libopus", "w")
    enc.bit_rate, enc.sample_rate, enc.format, enc.layout = 32000, 48000, "s16", "mono"
    enc.time_base = fractions.Fraction(1, 48000)
    enc.options = {"application": "voip"}
    samples = np.frombuffer(pcm48, dtype=np.int16)
    samples = np.concatenate([samples, np.zeros(-len(samples) % 960, dtype=np.int16)])
    packets: list[bytes] = []
    for i in range(0, len(samples), 960):
        frame = av.AudioFrame.from_ndarray(samples[i:i + 960].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48000, i
        packets += [bytes(p) for p in enc.encode(frame)]
    packets += [bytes(p) for p in enc.encode(None)]
    return packets


def load_wav_48k(path: str) -> bytes:
    from openrealtime.client.rtc import load_wav_48k as load

    return load(path)


class Mic:
    """What the microphone sends: a looping tone (echo), or silence with a question queued on demand."""

    def __init__(self, mode: str, speech: list[bytes] | None) -> None:
        from bench.media_plane import _tone_packets

        self.mode = mode
        self.loop = _tone_packets() if mode == "echo" else [opus_packets(bytes(1920 * 10))[5]]  # silence
        self.speech = speech or []
        self.queue: list[bytes] = []
        self.i = 0

    def say(self) -> float:
        self.queue = list(self.speech)
        return len(self.queue) * FRAME_S

    def next(self) -> bytes:
        if self.queue:
            return self.queue.pop(0)
        self.i += 1
        return self.loop[self.i % len(self.loop)]


def make_track(mic: Mic):
    from media_plane import paced_opus_track  # bench/ is this script's directory

    return paced_opus_track(lambda _n: mic.next())


@dataclass
class Counts:
    rx: int = 0
    gaps: int = 0  # inter-arrival gaps > 60 ms
    last: float | None = None
    responses: int = 0
    created: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def on_rtp(self) -> None:
        now = time.monotonic()
        if self.last is not None and now - self.last > GAP_S:
            self.gaps += 1
        self.last = now
        self.rx += 1


def count_received_rtp() -> None:
    """Count RTP packets as they leave SRTP instead of buffering and decoding them (callers stay cheap)."""
    from aiortc.rtcrtpreceiver import RTCRtpReceiver

    async def _count(self, packet, arrival_time_ms) -> None:
        counts = getattr(self, "_soak_counts", None)
        if counts is not None:
            counts.on_rtp()

    RTCRtpReceiver._handle_rtp_packet = _count


def lossy(pc, share: float, rng: random.Random) -> None:
    """Drop `share` of RTP/RTCP datagrams (RFC 7983: first byte 128-191) both ways at the ICE transport."""
    seen = set()
    transports = [t.sender.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    for dtls in transports:
        ice = getattr(dtls, "transport", None)
        if ice is None or id(ice) in seen:
            continue
        seen.add(id(ice))
        send, recv = ice._send, ice._recv

        async def lossy_send(data: bytes, send=send) -> None:
            if data and 128 <= data[0] <= 191 and rng.random() < share:
                return
            await send(data)

        async def lossy_recv(recv=recv) -> bytes:
            while True:
                data = await recv()
                if data and 128 <= data[0] <= 191 and rng.random() < share:
                    continue
                return data

        ice._send, ice._recv = lossy_send, lossy_recv


class Caller:
    def __init__(self, slot: int, args: argparse.Namespace, http, speech: list[bytes] | None,
                 rng: random.Random) -> None:
        self.slot, self.args, self.http, self.speech, self.rng = slot, args, http, speech, rng
        self.stopping = asyncio.Event()
        self.pc = None

    async def run(self) -> None:
        await asyncio.sleep(self.rng.uniform(0, self.args.pause[1] * 2))  # stagger the first calls
        while not self.stopping.is_set():
            try:
                await self.one_call()
            except Exception as exc:  # noqa: BLE001 - reported, then the caller calls again
                emit({"ev": "failed", "slot": self.slot, "call_id": None, "why": f"{type(exc).__name__}: {exc}"[:300]})
            await self.pause(self.rng.uniform(*self.args.pause))

    async def pause(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def one_call(self) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        args = self.args
        mic = Mic(args.mode, self.speech)
        counts = Counts()
        pc = self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        channel = pc.createDataChannel("oai-events")

        @channel.on("message")
        def _message(message) -> None:
            text = str(message)
            if '"session.created"' in text:
                counts.created.set()
            elif '"response.done"' in text:
                counts.responses += 1
                counts.done.set()

        pc.addTrack(make_track(mic))
        pc.getTransceivers()[0].receiver._soak_counts = counts
        call_id = None
        how = "close"
        try:
            await pc.setLocalDescription(await pc.createOffer())
            session = SESSION_VOICE if args.mode == "voice" else SESSION_ECHO
            emit({"ev": "attempt", "slot": self.slot})
            t_post = time.monotonic()
            resp = await self.http.post(args.url + "/v1/realtime/calls", headers={"Authorization": "Bearer soak"},
                                        files={"sdp": (None, pc.localDescription.sdp),
                                               "session": (None, json.dumps(session))})
            if resp.status_code != 201:
                emit({"ev": "failed", "slot": self.slot, "call_id": None,
                      "why": f"POST → {resp.status_code}: {resp.text[:200]}"})
                return
            call_id = resp.headers["location"].rsplit("/", 1)[-1]
            emit({"ev": "posted", "slot": self.slot, "call_id": call_id, "t": t_post})
            await pc.setRemoteDescription(RTCSessionDescription(sdp=resp.text, type="answer"))
            if args.loss > 0:
                lossy(pc, args.loss, self.rng)
            try:
                await asyncio.wait_for(counts.created.wait(), args.stall_s)
            except asyncio.TimeoutError:
                emit({"ev": "stall", "slot": self.slot, "call_id": call_id})
                try:
                    await asyncio.wait_for(counts.created.wait(), args.fail_s - args.stall_s)
                except asyncio.TimeoutError:
                    emit({"ev": "failed", "slot": self.slot, "call_id": call_id,
                          "why": f"no session.created within {args.fail_s:.0f} s (pc {pc.connectionState})"})
                    return
            emit({"ev": "created", "slot": self.slot, "call_id": call_id, "ms": (time.monotonic() - t_post) * 1000})
            await self.hold(mic, channel, counts, self.rng.uniform(*args.hold))
            how = "api" if self.rng.random() < 0.5 else "close"
            if how == "api":
                with contextlib.suppress(Exception):
                    await self.http.post(f"{args.url}/v1/realtime/calls/{call_id}/hangup",
                                         headers={"Authorization": "Bearer soak"})
        finally:
            self.pc = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), 10)
            if call_id is not None:
                emit({"ev": "down", "slot": self.slot, "call_id": call_id, "how": how, "rx": counts.rx,
                      "gaps": counts.gaps, "responses": counts.responses})

    async def hold(self, mic: Mic, channel, counts: Counts, seconds: float) -> None:
        """Stay on the call; in voice mode ask a question (spoken or typed, alternating) every few seconds."""
        end = time.monotonic() + seconds
        turn = 0
        while not self.stopping.is_set() and time.monotonic() < end:
            if self.args.mode != "voice":
                await self.pause(end - time.monotonic())
                return
            await self.pause(min(self.rng.uniform(1.0, 3.0), max(0.0, end - time.monotonic())))
            if self.stopping.is_set() or time.monotonic() >= end:
                return
            counts.done.clear()
            if turn % 2 == 0 and self.speech:
                mic.say()
            elif channel.readyState == "open":
                channel.send(json.dumps({"type": "conversation.item.create", "item": {
                    "type": "message", "role": "user", "content": [{"type": "input_text", "text": TYPED}]}}))
                channel.send(json.dumps({"type": "response.create"}))
            turn += 1
            with contextlib.suppress(asyncio.TimeoutError):  # the answer, or the end of the call
                await asyncio.wait_for(counts.done.wait(), max(0.1, end - time.monotonic()))


async def main_async(args: argparse.Namespace) -> None:
    import httpx

    count_received_rtp()
    rng = random.Random(args.seed)
    speech = opus_packets(load_wav_48k(args.speech)) if args.speech else None
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    limits = httpx.Limits(max_connections=args.slots * 2 + 4, keepalive_expiry=2.0)  # < uvicorn's 5 s keep-alive
    async with httpx.AsyncClient(timeout=args.fail_s, limits=limits) as http:
        callers = [Caller(i, args, http, speech, random.Random(rng.random())) for i in range(args.slots)]
        tasks = [asyncio.create_task(c.run()) for c in callers]
        await reader.read()  # until stdin closes: then everyone hangs up
        for c in callers:
            c.stopping.set()
        await asyncio.wait(tasks, timeout=30)
    emit({"ev": "bye"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--mode", choices=("echo", "voice"), default="echo")
    parser.add_argument("--speech", help="a WAV of a spoken question (voice mode)")
    parser.add_argument("--loss", type=float, default=0.0, help="share of RTP/RTCP dropped each way")
    parser.add_argument("--hold", type=lambda s: tuple(float(x) for x in s.split(",")), default=(4.0, 16.0))
    parser.add_argument("--pause", type=lambda s: tuple(float(x) for x in s.split(",")), default=(0.2, 2.0))
    parser.add_argument("--stall-s", type=float, default=8.0)
    parser.add_argument("--fail-s", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nice", type=int, default=0, help="os.nice() increment for this caller")
    args = parser.parse_args()
    if args.nice:
        os.nice(args.nice)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
