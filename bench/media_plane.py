"""Media-plane capacity: N concurrent bidirectional Opus calls, openrealtime vs plain aiortc.

    python bench/media_plane.py [--ns 1,5,10,20,40] [--window 8] [--client-procs 2]
                                [--profile-n 10] [--profile-s 10] [--deadline 480]
                                [--opus-complexity 5]
    python bench/media_plane.py --costs-only   # just the in-process per-packet costs (a few seconds)

Servers (subprocesses, 127.0.0.1 only):
  ours   `python -m openrealtime serve --engine echo` (shared ICE port, FEC Opus 32 kbps mono,
         our receive buffer, echo engine: decode → 24 kHz PCM → 0.3 s later → paced track → encode);
  plain  stock aiortc answerer (this file, `--serve-plain`): per-call sockets, default codecs,
         the remote track handed straight back to `addTrack` (decode → encode, no delay).
Clients: `--client-procs` worker processes (this file, `--client-worker`), stock aiortc. Each
call sends a pre-encoded Opus tone (no client-side encoding) and counts the echoed RTP packets
(one per 20 ms frame) as they leave SRTP, without aiortc's jitter buffer and decoder thread (so
clients stay cheap and the timing is the server's, not the client's buffering).

Per N, ours and plain interleaved (same background load); a server stops once it is overloaded:
  connect N calls, settle 2 s, then a `--window`-second measurement window:
  * server CPU-s per call-second: utime+stime of the server process (/proc/<pid>/stat, all threads);
  * lost %: frames missing from the received RTP sequence-number range;
  * deficit %: 1 − frames received / (window / 20 ms): the server falling behind real time;
  * late %: frames arriving > 60 ms after the previous one (a gap a listener hears);
  * RTT: remote-inbound-rtp roundTripTime (from the server's RTCP receiver reports), median;
  * echo %: packets of tone size (≥ 40 bytes; silence encodes smaller): the path carries the audio;
  * ours only, from its /metrics: srv def % (frames it sent vs real time) and resyncs (its
    outbound clock restarted after a > 200 ms stall: those frames are skipped, not sent late).
"Overloaded" (the scan stops) = a failed call, lost > 5 %, deficit > 25 %, or the server above 90 %
of a core. Late frames alone do not stop it: on a shared box they measure the box as much as us.
Calls per core (by CPU) = (100 % − fitted base) / fitted marginal core % per call, a least-squares
line through the rows that were not overloaded; also printed: the largest N with < 1 % late+lost.
Target: ≥ 40 calls per core with < 1 % late frames.

Then (`--profile-n`, 0 = off) one more window at that N on our server under py-spy
(`record --nonblocking --format raw`): top self-time and inclusive functions, and self time per
package. The whole run is bounded by `--deadline`; every subprocess is killed on exit.
On a shared, busy box the late/deficit columns include the contention (a starved server shows as
resyncs), and CPU-s per call-s varies ±30 % from run to run: compare ours and plain within a run.
Load averages are printed with the results.

First, in this process, the per-packet cost of three pieces every packet or event goes through (µs,
median of 5 runs): TWCC record + feedback built every 5 packets, the Opus receive path (24 kHz out,
10 % loss recovered with FEC), and parsing a client event (an audio append and an item).
"""

import argparse
import asyncio
import contextlib
import fractions
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._server import ServerProcess, die_with_parent, run_bounded  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
FRAME_S = 0.020
GAP_LATE_S = 0.060
TARGET_CALLS_PER_CORE = 40
TARGET_LATE_PCT = 1.0
OVERLOAD_PCT = 5.0
SATURATED_CORE_PCT = 90.0
SETTLE_S = 2.0
VOICED_BYTES = 40


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- plain aiortc echo answerer (subprocess) ------------------------------------------------------

def serve_plain(port: int) -> None:
    """Stock aiortc: per-call sockets, default codecs, the caller's track sent straight back."""
    import uvicorn
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from fastapi import FastAPI, Request
    from fastapi.responses import Response

    app = FastAPI()
    pcs: set = set()

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "calls": len(pcs)}

    @app.post("/v1/realtime/calls", status_code=201)
    async def calls(request: Request) -> Response:
        form = await request.form()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pcs.add(pc)

        @pc.on("datachannel")
        def _dc(channel) -> None:
            channel.send(json.dumps({"type": "session.created", "session": {"id": "plain"}}))

        @pc.on("track")
        def _track(track) -> None:
            if track.kind == "audio":
                pc.addTrack(track)  # echo: the decoded frames go straight to the encoder

        @pc.on("connectionstatechange")
        async def _state() -> None:
            if pc.connectionState in ("failed", "closed"):
                pcs.discard(pc)
                await pc.close()

        await pc.setRemoteDescription(RTCSessionDescription(sdp=str(form["sdp"]), type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return Response(content=pc.localDescription.sdp, status_code=201, media_type="application/sdp",
                        headers={"Location": "/v1/realtime/calls/rtc_" + secrets.token_hex(8)})

    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, log_level="warning")


# ---- in-process per-packet costs ------------------------------------------------------------------

def per_packet_costs(repeats: int = 5) -> list[str]:
    """µs per packet (or event) of the hot receive-path pieces, median of `repeats` timed runs."""
    import av
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters
    from aiortc.rtp import RtpPacket

    from openrealtime.media.opus_fec import FecOpusEncoder, OpusReceiveBuffer, configure_track
    from openrealtime.media.twcc import TwccRecorder
    from openrealtime.protocol import parse_client_event
    from tests.support.audio import speechlike

    def median_us(run, count: int) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run()
            times.append((time.perf_counter() - t0) / count * 1e6)
        return statistics.median(times)

    def twcc() -> None:
        rec = TwccRecorder()
        for i in range(20_000):
            rec.record(i & 0xFFFF, i * 1000, 1)
            if i % 5 == 4:
                rec.build()

    # 4 s of the tests' speech-like signal through our FEC encoder, then every 10th packet lost
    pcm = speechlike(4.0)
    enc, encoded = FecOpusEncoder(), []
    for i in range(0, pcm.size - 959, 960):
        frame = av.AudioFrame.from_ndarray(pcm[i:i + 960].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, i, fractions.Fraction(1, 48000)
        payloads, ts = enc.encode(frame)
        encoded += [(p, ts) for p in payloads]
    lossy = [RtpPacket(payload_type=111, sequence_number=i, timestamp=ts, ssrc=1, payload=p)
             for i, (p, ts) in enumerate(encoded) if i % 10 != 5]

    class Receiver:  # what OpusReceiveBuffer reads from aiortc's RTCRtpReceiver
        def __init__(self) -> None:
            self._RTCRtpReceiver__codecs = {111: RTCRtpCodecParameters(
                mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)}
            self._track = type("Track", (), {})()
            self._track._queue = type("Queue", (list,), {"put_nowait": list.append})()
            configure_track(self._track, 24000)

    def opus() -> None:
        async def feed() -> None:
            buf = OpusReceiveBuffer(Receiver())
            for packet in lossy:
                buf.add(packet)
        asyncio.run(feed())

    append = '{"type":"input_audio_buffer.append","audio":"AAAAAAAA","event_id":"e1"}'
    item = json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}})

    def parse() -> None:
        for _ in range(2000):
            parse_client_event(append)
            parse_client_event(item)

    return [f"per-packet costs (this process, median of {repeats}):",
            f"  TWCC record + build every 5 packets: {median_us(twcc, 20_000):7.2f} µs/packet",
            f"  Opus receive, 24 kHz, 10 % loss, FEC: {median_us(opus, len(lossy)):7.1f} µs/packet",
            f"  client event parse (append, item):  {median_us(parse, 4000):7.1f} µs/event", ""]


# ---- client worker (subprocess) -------------------------------------------------------------------

def _tone_packets(n: int = 50) -> list[bytes]:
    """n 20 ms Opus packets (mono 32 kbps) of a 440 Hz tone with a slow tremolo; 1 s loops seamlessly."""
    import av
    import numpy as np

    enc = av.CodecContext.create("libopus", "w")
    enc.bit_rate, enc.sample_rate, enc.format, enc.layout = 32000, 48000, "s16", "mono"
    enc.time_base = fractions.Fraction(1, 48000)
    enc.options = {"application": "voip"}
    t = np.arange(48000 * 3) / 48000
    pcm = (9000 * np.sin(2 * np.pi * 440 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))).astype(np.int16)
    packets: list[bytes] = []
    for i in range(0, len(pcm), 960):
        frame = av.AudioFrame.from_ndarray(pcm[i:i + 960].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48000, i
        packets += [bytes(p) for p in enc.encode(frame)]
    return packets[-n:]


def paced_opus_track(payload: Callable[[int], bytes]):
    """An aiortc audio track of pre-encoded Opus packets (`payload(n)`: the n-th 20 ms packet), paced at
    real time: no client-side encoding (bench/_soak_caller.py uses it too)."""
    import av
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

    time_base = fractions.Fraction(1, 48000)

    class PacketSource(MediaStreamTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self.n = 0
            self.t0: float | None = None

        async def recv(self):
            if self.readyState != "live":
                raise MediaStreamError
            if self.t0 is None:
                self.t0 = time.monotonic()
            else:
                delay = self.t0 + self.n * FRAME_S - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            packet = av.Packet(payload(self.n))
            packet.pts, packet.time_base = self.n * 960, time_base
            self.n += 1
            return packet

    return PacketSource()


async def client_worker(url: str, calls: int, timeout_s: float) -> None:
    import httpx
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    tone = _tone_packets()

    @dataclass
    class Call:
        pc: RTCPeerConnection
        created: asyncio.Event = field(default_factory=asyncio.Event)
        first_audio: asyncio.Event = field(default_factory=asyncio.Event)
        frames: int = 0
        voiced: int = 0
        late: int = 0
        max_gap: float = 0.0
        seq_min: int | None = None
        seq_max: int | None = None
        last_seq: int | None = None
        last_ext: int = 0
        last_at: float | None = None
        sizes: Counter = field(default_factory=Counter)

        def reset(self) -> None:
            self.frames = self.voiced = self.late = 0
            self.max_gap = 0.0
            self.seq_min = self.seq_max = None
            self.sizes.clear()

        def on_rtp(self, packet) -> None:
            """One audio RTP packet (= one 20 ms frame) as it leaves SRTP: timing, loss, energy."""
            now = time.monotonic()
            if self.last_at is not None:
                gap = now - self.last_at
                if gap > GAP_LATE_S:
                    self.late += 1
                if gap > self.max_gap:
                    self.max_gap = gap
            self.last_at = now
            seq = packet.sequence_number
            if self.last_seq is None:
                ext = seq
            else:
                delta = (seq - self.last_seq) & 0xFFFF
                ext = self.last_ext + delta if delta < 0x8000 else self.last_ext - ((self.last_seq - seq) & 0xFFFF)
            if self.last_seq is None or ext > self.last_ext:
                self.last_seq, self.last_ext = seq, ext
            self.seq_min = ext if self.seq_min is None else min(self.seq_min, ext)
            self.seq_max = ext if self.seq_max is None else max(self.seq_max, ext)
            self.frames += 1
            size = len(packet.payload)
            self.sizes[min(size // 10 * 10, 300)] += 1
            if size >= VOICED_BYTES:  # silence encodes to a few bytes, the echoed tone to ~80+
                self.voiced += 1
            self.first_audio.set()

    # The client only counts packets: no jitter buffer, no decoder thread (keeps clients cheap, and
    # measures the server's send timing as it arrives, not after the client's own buffering).
    from aiortc.rtcrtpreceiver import RTCRtpReceiver

    async def _count_rtp(self, packet, arrival_time_ms) -> None:
        call = getattr(self, "_bench_call", None)
        if call is not None:
            call.on_rtp(packet)

    RTCRtpReceiver._handle_rtp_packet = _count_rtp

    async def open_call(http: httpx.AsyncClient) -> Call:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        call = Call(pc)
        channel = pc.createDataChannel("oai-events")
        channel.on("message", lambda m: call.created.set() if '"session.created"' in str(m) else None)
        pc.addTrack(paced_opus_track(lambda n: tone[n % len(tone)]))
        pc.getTransceivers()[0].receiver._bench_call = call

        await pc.setLocalDescription(await pc.createOffer())
        resp = await http.post(url + "/v1/realtime/calls", headers={"Authorization": "Bearer bench"},
                               files={"sdp": (None, pc.localDescription.sdp)})
        if resp.status_code != 201:
            await pc.close()
            raise RuntimeError(f"POST → {resp.status_code} {resp.text[:200]}")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=resp.text, type="answer"))
        await asyncio.wait_for(call.created.wait(), timeout_s)
        await asyncio.wait_for(call.first_audio.wait(), timeout_s)
        return call

    open_calls: list[Call] = []
    errors: list[str] = []
    sem = asyncio.Semaphore(8)

    async def guarded(http) -> None:
        async with sem:
            try:
                open_calls.append(await open_call(http))
            except Exception as exc:  # noqa: BLE001 - reported
                errors.append(f"{type(exc).__name__}: {exc}"[:200])

    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        async with httpx.AsyncClient(timeout=timeout_s, limits=httpx.Limits(max_connections=64)) as http:
            await asyncio.gather(*(guarded(http) for _ in range(calls)))
        await asyncio.sleep(SETTLE_S)
        print(json.dumps({"ready": len(open_calls), "errors": errors}), flush=True)
        line = (await reader.readline()).decode().split()
        if not line or line[0] != "go":
            return
        window = float(line[1])
        for c in open_calls:
            c.reset()
        ru0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        await asyncio.sleep(window)
        elapsed = time.monotonic() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        rows = []
        for c in open_calls:
            rtt = None
            with contextlib.suppress(Exception):
                report = await c.pc.getStats()
                rtts = [s.roundTripTime for s in report.values()
                        if getattr(s, "type", "") == "remote-inbound-rtp" and s.roundTripTime is not None]
                rtt = rtts[0] if rtts else None
            span = (c.seq_max - c.seq_min + 1) if c.seq_min is not None else 0
            rows.append({"frames": c.frames, "span": span, "late": c.late, "max_gap": c.max_gap,
                         "voiced": c.voiced, "rtt": rtt,
                         "sizes": dict(c.sizes)})
        cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        print(json.dumps({"elapsed": elapsed, "cpu": cpu, "calls": rows}), flush=True)
    finally:
        await asyncio.gather(*(c.pc.close() for c in open_calls), return_exceptions=True)


# ---- orchestration --------------------------------------------------------------------------------

class Server(ServerProcess):
    """Adds our /metrics counters."""

    async def metrics(self) -> dict[str, float]:
        """Our /metrics counters (outbound frames, pacing resyncs); {} for the plain server."""
        if self.name != "ours":
            return {}
        import httpx

        with contextlib.suppress(Exception):
            async with httpx.AsyncClient(timeout=10) as http:
                text = (await http.get(self.url + "/metrics")).text
            out = {}
            for key, pattern in (("late", r"^openrealtime_audio_late_frames_total (\S+)"),
                                 ("frames_out", r'^openrealtime_audio_frames_total\{direction="out"\} (\S+)')):
                m = re.search(pattern, text, re.M)
                if m:
                    out[key] = float(m.group(1))
            return out
        return {}


@dataclass
class Row:
    server: str
    n: int
    ok: int = 0
    cpu_per_call_s: float = float("nan")
    server_core_pct: float = float("nan")
    client_core_pct: float = float("nan")
    lost_pct: float = float("nan")
    deficit_pct: float = float("nan")
    late_pct: float = float("nan")
    max_gap_ms: float = float("nan")
    rtt_ms: float = float("nan")
    echo_pct: float = float("nan")
    threads: int = 0
    srv_resyncs: float = float("nan")  # ours only: OutboundAudioTrack clock resyncs (> 200 ms stalls)
    srv_deficit_pct: float = float("nan")  # ours only: frames the server sent vs real time
    thread_names: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def overloaded(self) -> bool:
        """The server (not the box) can't keep up: calls fail, frames go missing, or it runs out of
        its one core (one Python process = one event loop)."""
        return (self.ok < self.n or self.lost_pct != self.lost_pct or self.lost_pct > OVERLOAD_PCT
                or self.deficit_pct > 5 * OVERLOAD_PCT or self.server_core_pct > SATURATED_CORE_PCT)

    @property
    def good(self) -> bool:
        return self.ok == self.n and self.late_pct + self.lost_pct < TARGET_LATE_PCT


class Workers:
    """Client worker processes for one measurement; always killed on exit."""

    def __init__(self, url: str, n: int, procs: int, logdir: Path) -> None:
        self.url, self.n, self.logdir = url, n, logdir
        self.split = [n // procs + (1 if i < n % procs else 0) for i in range(min(procs, n))]
        self.procs: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> "Workers":
        for i, k in enumerate(self.split):
            self.procs.append(await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--client-worker", "--url", self.url, "--calls", str(k),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
                stderr=open(self.logdir / f"client{i}.log", "ab"), start_new_session=True,
                preexec_fn=die_with_parent))
        return self

    async def lines(self, timeout: float) -> list[dict]:
        async def one(p):
            raw = await p.stdout.readline()
            if not raw:
                raise RuntimeError(f"client worker {p.pid} exited ({await p.wait()}); see {self.logdir}")
            return json.loads(raw)
        return await asyncio.wait_for(asyncio.gather(*(one(p) for p in self.procs)), timeout)

    def go(self, window: float) -> None:
        for p in self.procs:
            p.stdin.write(f"go {window}\n".encode())

    async def __aexit__(self, *exc) -> None:
        for p in self.procs:
            if p.returncode is None:
                with contextlib.suppress(Exception):
                    p.stdin.close()
        for p in self.procs:
            try:
                await asyncio.wait_for(p.wait(), 10)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()


async def measure(server: Server, n: int, args, profile_out: Path | None = None) -> Row:
    row = Row(server.name, n)
    setup_timeout = 20 + 0.5 * n
    async with Workers(server.url, n, args.client_procs, server.log.parent) as workers:
        ready = await workers.lines(setup_timeout + SETTLE_S + 10)
        row.ok = sum(r["ready"] for r in ready)
        row.errors = [e for r in ready for e in r["errors"]]
        spy = None
        if profile_out is not None:
            spy = subprocess.Popen([py_spy(), "record", "--pid", str(server.proc.pid),
                                    "--duration", str(int(args.profile_s)), "--rate", "100", "--nonblocking",
                                    "--format", "raw", "-o", str(profile_out)],
                                   stdout=subprocess.DEVNULL, stderr=open(server.log.parent / "py-spy.log", "wb"))
            await asyncio.sleep(0.5)
        window = args.profile_s if profile_out is not None else args.window
        m0 = await server.metrics()
        cpu0, t0 = server.cpu_s(), time.monotonic()
        workers.go(window)
        if profile_out is not None:
            await asyncio.sleep(window / 2)
            row.thread_names = await thread_names(server.proc.pid)
        results = await workers.lines(window + 30 + 0.2 * n)
        cpu1, t1 = server.cpu_s(), time.monotonic()
        row.threads = server.threads()
        m1 = await server.metrics()
        if spy is not None:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
    calls = [c for r in results for c in r["calls"]]
    elapsed = max(r["elapsed"] for r in results)
    wall = t1 - t0
    if os.environ.get("MEDIA_PLANE_SIZES"):
        sizes: Counter = Counter()
        for c in calls:
            sizes.update({int(k): v for k, v in c["sizes"].items()})
        print(f"  payload sizes {server.name} N={n}: {sorted(sizes.items())}", file=sys.stderr)
    if calls:
        expected_wall = elapsed / FRAME_S
        frames = sum(c["frames"] for c in calls)
        span = sum(max(c["span"], c["frames"]) for c in calls)
        row.cpu_per_call_s = (cpu1 - cpu0) / (len(calls) * elapsed)
        row.server_core_pct = (cpu1 - cpu0) / wall * 100
        row.client_core_pct = sum(r["cpu"] for r in results) / elapsed * 100
        row.lost_pct = 100 * (span - frames) / max(span, 1)
        row.deficit_pct = max(0.0, 100 * (1 - frames / (expected_wall * len(calls))))
        row.late_pct = 100 * sum(c["late"] for c in calls) / max(frames, 1)
        row.max_gap_ms = 1000 * max(c["max_gap"] for c in calls)
        rtts = [c["rtt"] for c in calls if c["rtt"] is not None]
        row.rtt_ms = 1000 * statistics.median(rtts) if rtts else float("nan")
        row.echo_pct = 100 * sum(c["voiced"] for c in calls) / max(frames, 1)
    if m0 and m1 and calls:
        out = m1.get("frames_out", 0) - m0.get("frames_out", 0)
        row.srv_resyncs = m1.get("late", 0) - m0.get("late", 0)
        row.srv_deficit_pct = max(0.0, 100 * (1 - out / ((t1 - t0) / FRAME_S * len(calls))))
    return row


def py_spy() -> str:
    """py-spy (pip install py-spy) from PATH or next to this interpreter (a venv's bin/)."""
    found = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if not found:
        raise RuntimeError("py-spy not found: pip install py-spy (or pass --profile-n 0)")
    return found


async def thread_names(pid: int) -> str:
    """Python thread names of `pid` (py-spy dump), digits folded: e.g. "uvloop_N ×6"."""
    proc = await asyncio.create_subprocess_exec(py_spy(), "dump", "--pid", str(pid), "--nonblocking",
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    names = Counter(re.sub(r"\d+", "N", m) for m in re.findall(r'^Thread .*?"(.*)"', out.decode(), re.M))
    comm: Counter = Counter()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            comm[re.sub(r"\d+", "N", (task / "comm").read_text().strip())] += 1
    return (", ".join(f"{k} ×{v}" for k, v in names.most_common()) + "; OS thread names: "
            + ", ".join(f"{k} ×{v}" for k, v in comm.most_common()))


def fmt(v: float, spec: str = "6.2f") -> str:
    return f"{'n/a':>{int(spec.split('.')[0])}}" if v != v else format(v, spec)


def table(rows: list[Row]) -> list[str]:
    out = [f"{'server':<6}{'N':>4}{'ok':>4}{'CPU-s/call-s':>13}{'srv core%':>10}{'cli core%':>10}{'lost%':>7}"
           f"{'deficit%':>9}{'late%':>7}{'maxgap ms':>10}{'RTT ms':>8}{'echo%':>7}{'thr':>5}{'srv def%':>9}"
           f"{'resyncs':>8}"]
    for r in rows:
        out.append(f"{r.server:<6}{r.n:>4}{r.ok:>4}{fmt(r.cpu_per_call_s, '13.4f')}{fmt(r.server_core_pct, '10.0f')}"
                   f"{fmt(r.client_core_pct, '10.0f')}{fmt(r.lost_pct, '7.2f')}{fmt(r.deficit_pct, '9.2f')}"
                   f"{fmt(r.late_pct, '7.2f')}{fmt(r.max_gap_ms, '10.0f')}{fmt(r.rtt_ms, '8.1f')}"
                   f"{fmt(r.echo_pct, '7.0f')}{r.threads:>5}{fmt(r.srv_deficit_pct, '9.2f')}{fmt(r.srv_resyncs, '8.0f')}"
                   + ("  OVERLOADED" if r.overloaded else ""))
        for e in r.errors[:3]:
            out.append(f"        error: {e}")
    return out


def capacity(rows: list[Row], name: str, idle_pct: float) -> str:
    # rows where the server kept up: an overloaded server skips work, so its CPU per call looks cheap
    mine = [r for r in rows if r.server == name and not r.overloaded and r.cpu_per_call_s == r.cpu_per_call_s]
    if not mine:
        return f"{name}: no usable row"
    good = [r for r in mine if r.good]
    clean = f"largest N with < {TARGET_LATE_PCT:.0f} % late+lost: {max(r.n for r in good) if good else 'none'}"
    # marginal cost: least-squares slope of server core % over N (fixed per-process cost removed)
    if len(mine) >= 2:
        xs, ys = [r.n for r in mine], [r.server_core_pct for r in mine]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        base = my - slope * mx
        marginal = f"marginal {slope / 100:.4f} CPU-s per call-s (fit base {base:.0f} %, idle {idle_pct:.0f} %)"
        per_core = (100 - max(base, 0)) / slope if slope > 0 else float("inf")
    else:
        marginal, per_core = "marginal n/a (one row)", 1 / mine[0].cpu_per_call_s
    top = max(mine, key=lambda r: r.n)
    return (f"{name}: {marginal}; at N={top.n}: {top.cpu_per_call_s:.4f} CPU-s per call-s; "
            f"≈ {per_core:.0f} calls per core by CPU; {clean}")


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _short(path: str) -> str:
    for marker in ("site-packages/", "/openrealtime/", "lib/python3"):
        i = path.find(marker)
        if i >= 0:
            return path[i + len(marker):] if marker != "/openrealtime/" else "openrealtime/" + path[i + len(marker):]
    return path


def _package(path: str) -> str:
    p = _short(path)
    if p.startswith("openrealtime/"):
        return "openrealtime/" + p.split("/")[1]
    if "/" in p and not p.startswith("/"):
        head = p.split("/")[0]
        return head if not re.match(r"^\d", head) else "stdlib"
    return "stdlib" if p.endswith(".py") else p


_WRAPPERS = ("<frozen", "openrealtime/__main__", "openrealtime/cli.py", "uvicorn/", "asyncio/", "threading.py",
             "concurrent/futures/thread.py:_worker")


def profile_summary(path: Path, top: int = 18) -> list[str]:
    """Self and inclusive sample shares from py-spy's raw (collapsed) output.

    py-spy skips idle threads, so samples ≈ CPU time (plus time spent runnable, e.g. waiting for
    the GIL or for a CPU on a busy box). Time inside C code (uvloop, libopus, SRTP) is charged to
    the Python frame that called it (py-spy's --native needs to pause the process and then counts
    threads blocked on locks as busy, so it is not used).
    """
    if not path.exists() or path.stat().st_size == 0:
        return [f"profile: no samples (see py-spy.log next to {path})"]
    self_c: Counter = Counter()
    incl: Counter = Counter()
    pkg: Counter = Counter()
    threads: Counter = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        names = []
        for fr in stack.split(";"):
            m = _FRAME.match(fr)
            if m and not fr.startswith(("thread (", "process ")):
                names.append((f"{_short(m.group('file'))}:{m.group('func')}", m.group("file")))
        if not names:
            continue
        total += n
        threads["event loop" if any("Runner.run" in k for k, _ in names) else
                "executor" if any("futures/thread.py" in k for k, _ in names) else "other"] += n
        self_c[names[-1][0]] += n
        pkg[_package(names[-1][1])] += n
        for key in {k for k, _ in names}:
            incl[key] += n
    if not total:
        return ["profile: no Python samples"]
    out = [f"profile: {total} samples; by thread: "
           + ", ".join(f"{k} {100 * c / total:.0f}%" for k, c in threads.most_common()),
           f"self time, top {top}:"]
    out += [f"  {100 * c / total:5.1f}%  {k}" for k, c in self_c.most_common(top)]
    out.append(f"inclusive (on the stack), top {top}, wrappers left out:")
    inner = [(k, c) for k, c in incl.most_common() if not k.startswith(_WRAPPERS)]
    out += [f"  {100 * c / total:5.1f}%  {k}" for k, c in inner[:top]]
    out.append("self time by package: " + ", ".join(f"{k} {100 * c / total:.0f}%" for k, c in pkg.most_common(12)))
    return out


async def run(args, logdir: Path) -> list[str]:
    http_ours, http_plain = free_port(), free_port()
    servers = {
        "ours": Server("ours", [sys.executable, "-m", "openrealtime", "serve", "--engine", "echo", "--host",
                                "127.0.0.1", "--port", str(http_ours), "--log-level", "warning",
                                "--max-calls", str(max(64, max(args.ns) + 8)),
                                "--opus-complexity", str(args.opus_complexity),
                                "--udp-port", str(free_port(socket.SOCK_DGRAM)), "--tcp-port", str(free_port())],
                       http_ours),
        "plain": Server("plain", [sys.executable, __file__, "--serve-plain", "--port", str(http_plain)], http_plain),
    }
    rows: list[Row] = []
    lines: list[str] = []
    idle: dict[str, float] = {}
    try:
        for s in servers.values():
            s.start(logdir)
        for s in servers.values():
            await s.wait_ready()
        for name in args.servers:
            s = servers[name]
            cpu0, t0 = s.cpu_s(), time.monotonic()
            await asyncio.sleep(3.0)
            idle[name] = (s.cpu_s() - cpu0) / (time.monotonic() - t0) * 100
        # interleaved (ours N, plain N, ours next N, …) so both see the same background load
        active = list(args.servers)
        for n in args.ns:
            for name in list(active):
                print(f"[{name}] N={n} …", file=sys.stderr, flush=True)
                try:
                    row = await measure(servers[name], n, args)
                except Exception as exc:  # noqa: BLE001 - a failed step ends this server's scan
                    row = Row(name, n, errors=[f"{type(exc).__name__}: {exc}"[:300]])
                rows.append(row)
                print("\n".join(table([row])[1:]), file=sys.stderr, flush=True)
                await asyncio.sleep(1.5)  # let the server tear the calls down
                if row.overloaded:
                    active.remove(name)
        if args.profile_n and "ours" in args.servers:
            print(f"[ours] profiling N={args.profile_n} for {args.profile_s:.0f}s …", file=sys.stderr, flush=True)
            prof = logdir / "ours.pyspy.txt"
            row = await measure(servers["ours"], args.profile_n, args, profile_out=prof)
            lines += profile_summary(prof)
            lines.append(f"threads (py-spy dump, N={args.profile_n}): {row.thread_names}")
            lines.append("(profiled window, py-spy attached: " + table([row])[1].strip() + ")")
    finally:
        for s in servers.values():
            s.stop()
    load = Path("/proc/loadavg").read_text().split()[:3]
    head = [f"media_plane: N={','.join(map(str, args.ns))} window={args.window:.0f}s client-procs={args.client_procs} "
            f"opus-complexity={args.opus_complexity} "
            f"cpus={os.cpu_count()} loadavg={' '.join(load)} python={sys.version.split()[0]}", ""]
    tail = ["", *(capacity(rows, name, idle.get(name, float("nan"))) for name in args.servers),
            f"target: ≥ {TARGET_CALLS_PER_CORE} bidirectional Opus calls per core with < {TARGET_LATE_PCT:.0f} % "
            f"late frames (plain aiortc ≈ 12–14)", f"logs: {logdir}", ""]
    rows.sort(key=lambda r: (args.servers.index(r.server), r.n))
    return head + table(rows) + tail + lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ns", default="1,5,10,20,40", help="concurrent call counts to scan")
    parser.add_argument("--window", type=float, default=8.0, help="measurement window per N (s)")
    parser.add_argument("--client-procs", type=int, default=2, help="client worker processes")
    parser.add_argument("--servers", default="ours,plain", help="which servers to scan, in order")
    parser.add_argument("--profile-n", type=int, default=10, help="profile our server at this N (0: off)")
    parser.add_argument("--profile-s", type=float, default=10.0, help="profiling window (s)")
    parser.add_argument("--opus-complexity", type=int, default=5,
                        help="our server's libopus complexity (serve --opus-complexity)")
    parser.add_argument("--deadline", type=float, default=480.0, help="abort the whole run after this many s")
    parser.add_argument("--costs-only", action="store_true", help="print the in-process per-packet costs only")
    # internal modes
    parser.add_argument("--serve-plain", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_plain:
        serve_plain(args.port)
        return
    if args.client_worker:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
        asyncio.run(client_worker(args.url, args.calls, timeout_s=30.0))
        return
    costs = per_packet_costs()
    print("\n".join(costs), flush=True)
    if args.costs_only:
        return
    args.ns = [int(x) for x in args.ns.split(",") if x.strip()]
    args.servers = [x.strip() for x in args.servers.split(",") if x.strip()]
    out = run_bounded("media_plane", lambda logdir: run(args, logdir), args.deadline)
    print("\n".join(costs + out))


if __name__ == "__main__":
    main()
