"""Phone calls over SIP: server CPU per G.711 call against a WebRTC Opus call, and voice latency over SIP.

    python bench/sip.py [--ns 1,10,20] [--window 8] [--questions 4] [--silence-ms 300] [--skip-cpu]
                        [--skip-latency] [--deadline 900]

1. CPU (echo engine, `python -m openrealtime serve` as a subprocess with --sip-port; the webhook answered
   by this process with the stock openai-python SDK: `webhooks.unwrap`, `realtime.calls.accept`):
   * SIP: SIPp (Debian sip-tester, its own process) places N calls (PCMU + telephone-event) that play a
     speechlike G.711 pcap; the server decodes, resamples to 24 kHz, echoes through the paced player,
     resamples to 8 kHz, encodes and sends one RTP packet per 20 ms;
   * WebRTC: bench/media_plane.py's stock-aiortc client workers place N Opus calls on the same server
     (DTLS-SRTP, Opus FEC receive buffer, Opus encoder).
   Per N, after the calls are up and 2 s of settling: server CPU-s (utime+stime, all threads) over a
   `--window`-second window, per call-second, and the RTP packets each call received and sent per second
   (50 = real time): for SIP from the server's operator call list, for WebRTC the echoed packets as the
   client workers counted them.
2. Voice latency over SIP (the default local stack, in this process): SIPp makes the call (signalling only),
   its SDP names this process's RTP socket, and a thread here sends Piper-spoken questions as PCMU, 20 ms
   apart, then silence, as a phone does; end of speech in the audio → arrival of the first voiced
   (> -40 dBFS) reply packet. Also printed: the server's own voice-to-voice figure (speech_stopped →
   output_audio_buffer.started) from the call list. The caller thread shares the process and the 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import queue
import socket
import statistics
import string
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._server import ServerProcess, die_with_parent, run_bounded  # noqa: E402
from bench.media_plane import SETTLE_S, Workers  # noqa: E402
from openrealtime.api.embedded import embedded_server, free_port  # noqa: E402
from openrealtime.audio.convert import g711_to_pcm8k, pcm8k_to_g711  # noqa: E402
from openrealtime.audio.resample import resample  # noqa: E402
from openrealtime.config import Settings  # noqa: E402
from openrealtime.sip.webhook import new_secret  # noqa: E402
from tests.support.mcp_servers import serving  # noqa: E402
from tests.support.sip import PhoneApp, free_sip_port, rtp_pcap  # noqa: E402
from tests.support.audio import speechlike  # noqa: E402

SCENARIO = Path(__file__).with_name("_sip_call.xml")
KEY = "local"  # a loopback server without API keys takes any bearer (PhoneApp's SDK client sends its own)
QUESTIONS = ["What is the capital of France?", "How many days are in a week?",
             "What color is the sky on a clear day?", "Who wrote Romeo and Juliet?",
             "What language is spoken in Brazil?", "How many legs does a spider have?"]
VOICED = 0.01 * 32768  # -40 dBFS
PACKET = 160  # 20 ms at 8 kHz


def auto_answer(secret: str, config: dict) -> tuple[PhoneApp, queue.Queue]:
    """The app's webhook (tests/support/sip.py `PhoneApp`: verified with the SDK), accepting every call with
    `config`; the accepted call ids arrive on the queue."""
    app, accepted = PhoneApp(secret), queue.Queue()

    def accept(client, event) -> None:
        client.realtime.calls.accept(event.data.call_id, type="realtime", **config)
        accepted.put(event.data.call_id)

    app.on_call = accept
    return app, accepted


def sipp(sip_port: int, logdir: Path, *, calls: int, hold_ms: int, pcap: Path | None = None,
         rtp: tuple[str, str] = ("[media_ip]", "[media_port]")) -> subprocess.Popen:
    play = f'<nop><action><exec play_pcap_audio="{pcap}"/></action></nop>' if pcap else ""
    text = string.Template(SCENARIO.read_text()).substitute(rtp_ip=rtp[0], rtp_port=rtp[1], play=play,
                                                           hold_ms=hold_ms)
    path = logdir / f"call-{calls}.xml"
    path.write_text(text)
    return subprocess.Popen(["sipp", "-sf", str(path), "-m", str(calls), "-l", str(calls), "-r", "20", "-i",
                             "127.0.0.1", "-p", str(free_port(kind=socket.SOCK_DGRAM)), "-mp",
                             str(free_port(kind=socket.SOCK_DGRAM)), f"127.0.0.1:{sip_port}", "-nostdin",
                             "-timeout", f"{hold_ms // 1000 + 120}s", "-trace_err", "-error_file",
                             str(logdir / f"sipp-{calls}.errors")],
                            stdout=subprocess.DEVNULL, stderr=open(logdir / f"sipp-{calls}.log", "wb"),
                            preexec_fn=die_with_parent)


async def live_calls(url: str) -> list[dict]:
    async with httpx.AsyncClient(timeout=10) as http:
        return (await http.get(url + "/v1/realtime/calls", headers={"Authorization": f"Bearer {KEY}"})).json()["data"]


def packets(calls: list[dict]) -> dict[str, tuple[int, int]]:
    return {c["id"]: (c["rtp"]["audio"]["packets_in"], c["rtp"]["audio"]["packets_out"]) for c in calls if c["rtp"]}


# ---- 1. CPU per call ----------------------------------------------------------------------------------
async def cpu_rows(args, logdir: Path) -> list[str]:
    secret = new_secret()
    app, _ = auto_answer(secret, {"instructions": "echo"})
    sip_port, port = free_sip_port(), free_port()
    out = ["transport     N  server core %  CPU ms per call-s  RTP in/out per call-s  calls"]
    with serving(app, path="/hook") as hook:
        server = ServerProcess("ours", [sys.executable, "-m", "openrealtime", "serve", "--engine", "echo",
                                        "--port", str(port), "--udp-port", str(free_port(kind=socket.SOCK_DGRAM)),
                                        "--tcp-port", "0", "--sip-port", str(sip_port), "--webhook-url", hook,
                                        "--max-calls", "400", "--max-conversations", "0", "--log-level",
                                        "warning"], port)
        server.start(logdir, env={"OPENREALTIME_WEBHOOK_SECRET": secret})
        try:
            await server.wait_ready()
            app.base_url = server.url + "/v1"
            pcap = rtp_pcap(logdir / "speech.pcap", speechlike(60.0, rate=8000))
            for n in args.ns:
                out.append(await sip_row(server, n, pcap, args.window, sip_port, logdir))
                out.append(await webrtc_row(server, n, args.window, logdir))
        finally:
            server.stop()
    return out


async def sip_row(server: ServerProcess, n: int, pcap: Path, window: float, sip_port: int, logdir: Path) -> str:
    hold_ms = int((n / 20 + 10 + SETTLE_S + window) * 1000)
    proc = sipp(sip_port, logdir, calls=n, hold_ms=hold_ms, pcap=pcap)
    try:
        deadline = time.monotonic() + 30 + n
        while len([c for c in await live_calls(server.url) if c["transport"] == "sip"]) < n:
            if time.monotonic() > deadline or proc.poll() is not None:
                return f"sip G.711  {n:3d}  failed: calls did not come up (see {logdir})"
            await asyncio.sleep(0.2)
        await asyncio.sleep(SETTLE_S)
        p0, cpu0, t0 = packets(await live_calls(server.url)), server.cpu_s(), time.monotonic()
        await asyncio.sleep(window)
        cpu1, t1, p1 = server.cpu_s(), time.monotonic(), packets(await live_calls(server.url))
    finally:
        proc.wait(hold_ms / 1000 + 60)
    wall = t1 - t0
    rates = [((p1[k][0] - p0[k][0]) / wall, (p1[k][1] - p0[k][1]) / wall) for k in p0 if k in p1]
    rin = statistics.mean(r[0] for r in rates)
    rout = statistics.mean(r[1] for r in rates)
    return (f"sip G.711   {n:3d}  {(cpu1 - cpu0) / wall * 100:13.1f}  {(cpu1 - cpu0) / (n * wall) * 1000:17.1f}"
            f"  {rin:10.1f} / {rout:5.1f}  {len(rates)}/{n}")


async def webrtc_row(server: ServerProcess, n: int, window: float, logdir: Path) -> str:
    async with Workers(server.url, n, 2, logdir) as workers:
        ready = await workers.lines(20 + 0.5 * n + SETTLE_S + 10)
        ok = sum(r["ready"] for r in ready)
        cpu0, t0 = server.cpu_s(), time.monotonic()
        workers.go(window)
        results = await workers.lines(window + 30 + 0.2 * n)
        cpu1, t1 = server.cpu_s(), time.monotonic()
    wall = t1 - t0
    calls = [c for r in results for c in r["calls"]]
    elapsed = max(r["elapsed"] for r in results)
    rout = sum(c["frames"] for c in calls) / max(1, len(calls)) / elapsed  # as the clients counted them
    return (f"webrtc Opus {n:3d}  {(cpu1 - cpu0) / wall * 100:13.1f}  {(cpu1 - cpu0) / (n * elapsed) * 1000:17.1f}"
            f"         - / {rout:5.1f}  {ok}/{n}")


# ---- 2. voice latency over SIP -------------------------------------------------------------------------
class RtpCaller(threading.Thread):
    """A phone's media: sends PCMU every 20 ms (a question when given one, else silence) and times the first
    voiced packet it receives after each question's end of speech."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.target: tuple[str, int] | None = None
        self.questions: queue.Queue[np.ndarray] = queue.Queue()
        self.results: queue.Queue[float] = queue.Queue()
        self.stop_flag = threading.Event()

    def run(self) -> None:
        seq, ts, t0, n = 1, 0, time.monotonic(), 0
        playing = np.zeros(0, dtype=np.int16)
        voiced_left = 0  # samples to send until the question's last voiced one is out
        speech_end: float | None = None
        while not self.stop_flag.is_set():
            n += 1
            delay = t0 + n * 0.02 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if playing.size == 0 and speech_end is None and not self.questions.empty():
                playing = self.questions.get()
                voiced_left = int(np.flatnonzero(np.abs(playing) > VOICED)[-1]) + 1
            chunk, playing = playing[:PACKET], playing[PACKET:]
            if voiced_left > 0:
                voiced_left -= chunk.size
                if voiced_left <= 0:  # the packet with the last voiced sample leaves now
                    speech_end = time.monotonic() + voiced_left / 8000
            chunk = np.pad(chunk, (0, PACKET - chunk.size))
            if self.target is not None:
                packet = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, ts & 0xFFFFFFFF, 0xCA11E5) + \
                    pcm8k_to_g711(chunk, "pcmu")
                self.sock.sendto(packet, self.target)
            seq, ts = seq + 1, ts + PACKET
            while True:
                try:
                    data, _ = self.sock.recvfrom(2048)
                except BlockingIOError:
                    break
                pcm = g711_to_pcm8k(data[12:], "pcmu").astype(np.float32)
                if speech_end is not None and playing.size == 0 and pcm.size and \
                        float(np.sqrt(np.mean(pcm * pcm))) > VOICED:
                    self.results.put(time.monotonic() - speech_end)
                    speech_end = None


async def latency_rows(args, logdir: Path) -> list[str]:
    from openrealtime.engines.stack import load_model_stack
    from openrealtime.runtime import Runtime, call_in_model_thread

    runtime = Runtime()
    stack = call_in_model_thread(lambda: load_model_stack("default", gate=runtime.gate))
    secret = new_secret()
    config = {"instructions": "You answer the phone. Answer in one short sentence.",
              "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": args.silence_ms}}}}
    app, accepted = auto_answer(secret, config)
    caller = RtpCaller()
    sip_port = free_sip_port()
    questions = [_spoken(stack, q) for q in QUESTIONS[:args.questions]]
    try:
        with serving(app, path="/hook") as hook:
            settings = Settings(engine="local", port=0, udp_port=free_port(kind=socket.SOCK_DGRAM), tcp_port=0,
                                sip_port=sip_port, webhook_url=hook, webhook_secret=secret, max_conversations=0)
            async with embedded_server(settings, models=stack, runtime=runtime) as server:
                app.base_url = server.url + "/v1"
                caller.start()
                proc = sipp(sip_port, logdir, calls=1, hold_ms=len(questions) * 25_000 + 10_000,
                            rtp=("127.0.0.1", str(caller.port)))
                loop = asyncio.get_running_loop()
                call_id = await loop.run_in_executor(None, lambda: accepted.get(timeout=30))
                call = server.state.calls.get(call_id)
                caller.target = ("127.0.0.1", call.leg.local_port)
                await asyncio.sleep(1.0)
                latencies = []
                for audio in questions:
                    caller.questions.put(audio)
                    latencies.append(await loop.run_in_executor(None, lambda: caller.results.get(timeout=60)))
                    await asyncio.sleep(6.0)  # the answer plays out
                described = await live_calls(server.url)
                v2v = next((c["voice_to_voice_ms"] for c in described if c["id"] == call_id), [])
                await call.hangup("hangup")
                proc.kill()
    finally:
        caller.stop_flag.set()
        stack.close()
        runtime.close()
    ms = sorted(1000 * x for x in latencies)
    return [f"voice latency over SIP (default stack, PCMU, silence_duration_ms {args.silence_ms}, "
            f"{len(ms)} questions): p50 {statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms; each: "
            + ", ".join(f"{x:.0f}" for x in ms),
            f"server voice-to-voice (speech_stopped → first answer frame to the RTP leg): {v2v} ms"]


def _spoken(stack, text: str) -> np.ndarray:
    audio = np.concatenate(list(stack.tts.synthesize(text, voice="alloy", speed=1.0, cancel=threading.Event())))
    return (np.clip(resample(audio, stack.tts.sample_rate, 8000), -1, 1) * 32767).astype(np.int16)


async def run(args, logdir: Path) -> list[str]:
    lines = [f"load average {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f}"]
    if not args.skip_cpu:
        lines += await cpu_rows(args, logdir)
    if not args.skip_latency:
        lines += await latency_rows(args, logdir)
    lines.append(f"load average {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ns", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10, 20])
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument("--questions", type=int, default=4)
    parser.add_argument("--silence-ms", type=int, default=300)
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--deadline", type=float, default=900)
    args = parser.parse_args()
    for line in run_bounded("sip", lambda logdir: run(args, logdir), args.deadline):
        print(line)


if __name__ == "__main__":
    main()
