"""The fuzz campaign: every input the network reaches, for a time budget, with a live call beside it.

    python bench/fuzz.py [--seconds 180] [--only sdp,events,...] [--seed 1000000] [--out DIR]
    python bench/fuzz.py --reproduce events:1000123     # one case again, with its outcome or traceback

A real server runs as a subprocess (`openrealtime serve --engine echo`, free HTTP/UDP/TCP ports), and a live
aiortc call to it plays speech to the echo engine the whole time: every few seconds it must have heard more
of its own voice back and get an answer on its data channel. Targets (generators in tests/fuzz, shared with
the suite's bounded property tests, each case from one seed):

  over the network, to the server under test
    http        POST /v1/realtime/calls bodies (multipart, JSON, raw SDP, odd Content-Types) and beta offers
    ws-events   every client event type mutated around its schema, on GA and beta WebSocket sessions
    ws-frames   hand-made WebSocket frames: invalid UTF-8, binary, fragments, reserved opcodes, huge lengths
    stun        datagrams to the shared ICE UDP port and RFC 4571 streams to the ICE-TCP port
  in-process, at the narrowest seam that is still the code the network reaches
    sdp         mutated Chromium/Firefox/aiortc offers through validate_offer and aiortc's negotiation
    bodies      the same body parsing as `http`, thousands of times faster
    events      client events into a SessionEngine (scripted models; echo; beta translation)
    twcc        transport-cc feedback parsing
    rtp, h264   RTP into a live in-process call (Opus and H.264 payloads that reach the decoders)
    rtcp        RTCP compounds (SR/RR/SDES/BYE/APP, NACK, transport-cc, PLI/FIR/REMB, XR)
    datachannel client events on `oai-events`; sctp: SCTP/DCEP messages under the data channels

Each case must end in a 4xx, an `error` event, a protocol close or a silent drop; anything else (an exception,
a 5xx, an error blaming the server, an event that does not validate, a stuck session, an ERROR in the
server's log, the live call going quiet) is a finding: its case is saved under --out with a note (target,
seed, what happened). The budget is split by weight across the chosen targets; the report gives cases run
and outcomes per target, findings, and what the live call heard.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import re
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._server import ServerProcess, die_with_parent  # noqa: E402
from openrealtime.api.embedded import free_port  # noqa: E402
from tests.fuzz import harness as H  # noqa: E402
from tests.fuzz.body_cases import body_case  # noqa: E402
from tests.fuzz.core import Finding, Tally, save_reproducer  # noqa: E402
from tests.fuzz.dc_cases import message_case, sctp_case  # noqa: E402
from tests.fuzz.event_cases import event_case  # noqa: E402
from tests.fuzz.rtp_cases import MediaContext, h264_frame_packets, rtcp_packet, rtp_packet, twcc_fci  # noqa: E402
from tests.fuzz.sdp_cases import real_offers, sdp_case  # noqa: E402
from tests.fuzz.stun_cases import datagram, tcp_stream  # noqa: E402
from tests.fuzz.ws_cases import frames_case  # noqa: E402

OFFERS = real_offers()
HUGE = 1 << 16
CHECK_EVERY_S = 3.0
LIVE_TIMEOUT_S = 20.0  # an answer and more echo within this, each check (a 2-core box shared with other jobs)
MAX_SAVED_PER_KIND = 3


class Runner:
    """One target's state: `make(rng)` → a case, `send(case)` → its outcome; `check()` between batches."""

    stateful = False

    async def start(self) -> None: ...

    def make(self, rng: random.Random) -> Any:
        raise NotImplementedError

    async def send(self, case: Any) -> str:
        raise NotImplementedError

    async def check(self) -> None: ...

    async def close(self) -> None: ...


# ---- in-process runners ---------------------------------------------------------------------------------------
class SdpRunner(Runner):
    stateful = True

    async def start(self) -> None:
        self.h = H.OfferHarness()
        await self.h.start()

    def make(self, rng):
        return sdp_case(rng, OFFERS, huge=HUGE)

    async def send(self, case):
        return await self.h.run(case)

    async def check(self) -> None:
        await asyncio.sleep(0.05)
        if self.h.attached():
            raise H.FuzzFailure(f"{self.h.attached()} refused or hung-up calls still attached to the ICE ports")

    async def close(self) -> None:
        await self.h.close()


class BodiesRunner(Runner):
    def make(self, rng):
        return body_case(rng, OFFERS, huge=HUGE)

    async def send(self, case):
        return H.parse_call_body(*case)


class EventsRunner(Runner):
    stateful = True

    async def start(self) -> None:
        self.engines = [H.EngineHarness("local"), H.EngineHarness("echo"), H.EngineHarness("local", beta=True)]
        for engine in self.engines:
            await engine.start()
        self.n = 0

    def make(self, rng):
        return event_case(rng, huge=HUGE)[1]

    async def send(self, case):
        index = self.n % 3
        self.n += 1
        return f"{('local', 'echo', 'beta')[index]}:{await self.engines[index].run(case)}"

    async def check(self) -> None:
        for engine in self.engines:
            await engine.check_alive(timeout=LIVE_TIMEOUT_S)

    async def close(self) -> None:
        for engine in self.engines:
            engine.close()


class TwccRunner(Runner):
    def make(self, rng):
        return twcc_fci(rng, MediaContext())

    async def send(self, case):
        from openrealtime.media.twcc import parse_feedback

        try:
            fb = parse_feedback(case, fci_only=True)
        except ValueError:
            return "refused"
        if len(fb.statuses) != fb.status_count or len(fb.arrivals()) != fb.status_count:
            raise H.FuzzFailure(f"inconsistent feedback: {fb.status_count} statuses, {len(fb.statuses)} parsed")
        return "parsed"


class MediaRunner(Runner):
    """rtp / h264 / rtcp / datachannel / sctp into one live in-process call."""

    stateful = True

    def __init__(self, kind: str) -> None:
        self.kind = kind

    async def start(self) -> None:
        self.h = H.MediaHarness()
        await self.h.start()

    def make(self, rng):
        h, kind = self.h, self.kind
        if kind == "rtp":
            return ("srtp" if rng.random() < 0.2 else "rtp", rtp_packet(rng, h.ctx))
        if kind == "h264":
            return ("frame", h264_frame_packets(rng, h.ctx))
        if kind == "rtcp":
            return ("srtp" if rng.random() < 0.2 else "rtcp", rtcp_packet(rng, h.ctx))
        if kind == "datachannel":
            return ("message", message_case(rng, huge=1 << 14))
        return ("sctp", sctp_case(rng, h.client.channel.id))

    async def send(self, case):
        how, data = case
        h = self.h
        if how == "frame":
            outcome = "empty"
            for packet in data:
                outcome = await h.rtp(packet)
            return outcome
        if how == "sctp":
            return await h.sctp(*data)
        return await {"srtp": h.over_srtp, "rtp": h.rtp, "rtcp": h.rtcp, "message": h.message}[how](data)

    async def check(self) -> None:
        await self.h.check_alive(timeout=LIVE_TIMEOUT_S)
        if self.kind in ("datachannel", "sctp"):
            self.h.check_events()

    async def close(self) -> None:
        await self.h.close()


# ---- runners against the server under test ---------------------------------------------------------------------
class HttpRunner(Runner):
    def __init__(self, server: H.ServerHarness) -> None:
        self.server = server

    def make(self, rng):
        if rng.random() < 0.15:
            return ("application/sdp", sdp_case(rng, OFFERS, huge=HUGE).encode("utf-8", "surrogatepass"),
                    "/v1/realtime?model=gpt-realtime")
        return (*body_case(rng, OFFERS, huge=HUGE), "/v1/realtime/calls")

    async def send(self, case):
        return await self.server.post_call(case[0], case[1], path=case[2])

    async def check(self) -> None:
        await self.server.check_alive()


class WsEventsRunner(Runner):
    def __init__(self, server: H.ServerHarness) -> None:
        self.server = server
        self.n = 0

    def make(self, rng):
        return event_case(rng, huge=HUGE)[1]

    async def send(self, case):
        self.n += 1
        return await self.server.ws_event(case, beta=self.n % 4 == 0)

    async def check(self) -> None:
        await self.server.check_alive()
        for beta in (False, True):
            self.server.check_events(beta)


class WsFramesRunner(Runner):
    def __init__(self, server: H.ServerHarness) -> None:
        self.server = server

    def make(self, rng):
        return frames_case(rng, huge=HUGE)

    async def send(self, case):
        return await self.server.ws_frames(case)

    async def check(self) -> None:
        await self.server.check_alive()


class StunRunner(Runner):
    def __init__(self, server: H.ServerHarness, udp_port: int, tcp_port: int) -> None:
        self.server, self.udp_port, self.tcp_port = server, udp_port, tcp_port

    async def start(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.replies = 0

    def make(self, rng):
        return ("udp", datagram(rng)) if rng.random() < 0.8 else ("tcp", tcp_stream(rng))

    async def send(self, case):
        how, data = case
        if how == "udp":
            self.sock.sendto(data, ("127.0.0.1", self.udp_port))
            await asyncio.sleep(0)
            return "udp"
        reader, writer = await asyncio.open_connection("127.0.0.1", self.tcp_port)
        writer.write(data)
        try:
            got = await asyncio.wait_for(reader.read(1500), 0.05)
        except asyncio.TimeoutError:
            got = b""
        writer.close()
        if got:
            raise H.FuzzFailure(f"the ICE-TCP port answered a stranger: {got[:40]!r}")
        return "tcp"

    async def check(self) -> None:
        try:
            while True:
                self.sock.recvfrom(2048)
                self.replies += 1
        except BlockingIOError:
            pass
        if self.replies:
            raise H.FuzzFailure(f"the ICE UDP port answered {self.replies} hostile datagrams")
        await self.server.check_alive()

    async def close(self) -> None:
        self.sock.close()


# ---- the campaign -----------------------------------------------------------------------------------------------
@dataclass
class Target:
    name: str
    weight: float
    make: Callable[["Campaign"], Runner]


TARGETS = [
    Target("http", 1.0, lambda c: HttpRunner(c.server)),
    Target("ws-events", 1.0, lambda c: WsEventsRunner(c.server)),
    Target("ws-frames", 0.7, lambda c: WsFramesRunner(c.server)),
    Target("stun", 0.4, lambda c: StunRunner(c.server, c.udp_port, c.tcp_port)),
    Target("sdp", 1.0, lambda c: SdpRunner()),
    Target("bodies", 0.4, lambda c: BodiesRunner()),
    Target("events", 1.2, lambda c: EventsRunner()),
    Target("twcc", 0.2, lambda c: TwccRunner()),
    Target("rtp", 0.8, lambda c: MediaRunner("rtp")),
    Target("h264", 0.5, lambda c: MediaRunner("h264")),
    Target("rtcp", 0.6, lambda c: MediaRunner("rtcp")),
    Target("datachannel", 0.6, lambda c: MediaRunner("datachannel")),
    Target("sctp", 0.4, lambda c: MediaRunner("sctp")),
]


class Campaign:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tally = Tally()
        self.out = Path(args.out)
        self.saved: dict[tuple[str, str], int] = {}
        self.live_checks = 0
        self.live_failures: list[str] = []
        self.took: dict[str, float] = {}
        self.current = "-"
        self.heard = 0

    def found(self, target: str, seed: int | None, summary: str, case: Any = None, detail: str = "") -> None:
        key = (target, re.sub(r"\d+", "#", summary)[:120])  # one kind: the same words, other numbers
        count = self.saved.get(key, 0)
        self.saved[key] = count + 1
        finding = Finding(target, seed, summary, case, detail)
        self.tally.found(finding)
        if count < MAX_SAVED_PER_KIND:
            path = save_reproducer(self.out, finding, len(self.tally.findings))
            print(f"  finding [{target}] seed={seed}: {summary[:160]} -> {path}", flush=True)

    async def _live_watch(self) -> None:
        """Reads the live call's reports (one JSON line per check, from its own process)."""
        while True:
            line = await self.live.stdout.readline()
            if not line:
                if self.live.returncode is None:
                    await self.live.wait()
                self.live_failures.append(f"the live call's process exited ({self.live.returncode})")
                self.found("live-call", None, f"the live call's process exited during {self.current}")
                return
            report = json.loads(line)
            self.heard = report.get("heard", self.heard)
            if report["ok"]:
                self.live_checks += 1
            else:
                self.live_failures.append(f"{report['error']} (during {self.current})")
                self.found("live-call", None, f"beside the campaign, during {self.current}: {report['error']}")

    async def _run_target(self, target: Target, budget: float, seed0: int) -> None:
        runner = target.make(self)
        await runner.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        next_check = loop.time() + 1.0
        seed = seed0
        while loop.time() < deadline:
            seed += 1
            case = runner.make(random.Random(seed))
            try:
                outcome = await asyncio.wait_for(runner.send(case), 30)
                self.tally.count(target.name, outcome.split(":")[0] if target.name == "events" else outcome)
            except Exception as exc:
                summary = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                if isinstance(exc, asyncio.TimeoutError):
                    summary = "the case did not finish within 30 s"
                self.tally.count(target.name, "FINDING")
                self.found(target.name, seed, summary, case, str(exc))
                if runner.stateful:  # its state may be broken: start over
                    await self._restart(runner)
            if loop.time() >= next_check:
                next_check = loop.time() + 1.0
                try:
                    await runner.check()
                except Exception as exc:
                    self.found(target.name, seed, f"after seed {seed}: {exc}".splitlines()[0], None, str(exc))
                    if runner.stateful:
                        await self._restart(runner)
                for error in self.loop_errors.take():  # reported instead of raised (a failed task, ...)
                    self.found(target.name, seed, f"around seed {seed}: {error}".splitlines()[0], None, error)
            await asyncio.sleep(0)
        try:
            await runner.check()
        except Exception as exc:
            self.found(target.name, seed, f"at the end: {exc}".splitlines()[0], None, str(exc))
        try:
            await runner.close()
        except Exception as exc:
            self.found(target.name, None, f"closing: {exc}".splitlines()[0], None, str(exc))

    async def _restart(self, runner: Runner) -> None:
        try:
            await runner.close()
        except Exception:
            pass
        await runner.start()

    async def run(self, logdir: Path) -> int:
        args = self.args
        self.loop_errors = H.LoopErrors()
        self.loop_errors.install(asyncio.get_running_loop())
        port = free_port()
        self.udp_port = free_port(kind=socket.SOCK_DGRAM)
        self.tcp_port = free_port()
        proc = ServerProcess("fuzz-server", [sys.executable, "-m", "openrealtime", "serve", "--engine", "echo",
                                             "--host", "127.0.0.1", "--port", str(port), "--udp-port",
                                             str(self.udp_port), "--tcp-port", str(self.tcp_port),
                                             "--log-level", "warning", "--max-calls", "256"], port)
        proc.start(logdir)
        targets = [t for t in TARGETS if not args.only or t.name in args.only]
        try:
            await proc.wait_ready()
            rss_start = proc.rss_kib()
            self.server = H.ServerHarness(proc.url)
            # the live call runs in a process of its own: the in-process targets keep this one's loop busy
            self.live = await asyncio.create_subprocess_exec(
                sys.executable, str(Path(__file__).resolve()), "--live-call", proc.url,
                stdout=asyncio.subprocess.PIPE, preexec_fn=die_with_parent)
            started_line = json.loads(await asyncio.wait_for(self.live.stdout.readline(), 60) or b'{"ok": false}')
            if not started_line.get("ok"):
                raise RuntimeError(f"the live call did not start: {started_line}")
            watch = asyncio.ensure_future(self._live_watch())
            total = sum(t.weight for t in targets)
            started = time.monotonic()
            for n, target in enumerate(targets):
                budget = args.seconds * target.weight / total
                print(f"{target.name}: {budget:.0f} s", flush=True)
                t0 = time.monotonic()
                self.current = target.name
                await self._run_target(target, budget, args.seed + n * 10_000_000)
                self.took[target.name] = time.monotonic() - t0
            elapsed = time.monotonic() - started
            self.current = "the end"
            await asyncio.sleep(2 * CHECK_EVERY_S)  # one more report of the live call
            watch.cancel()
            try:
                await self.server.check_alive()
            except Exception as exc:
                self.found("server", None, f"at the end: {exc}")
            heard = self.heard
            await self.server.close()
            self.live.terminate()
            await self.live.wait()
            alive = proc.proc.poll() is None
            rss_end = proc.rss_kib() if alive else -1
        finally:
            proc.stop()
        log_errors = [line for line in proc.log.read_text(errors="replace").splitlines()
                      if " ERROR " in line or "Traceback" in line or '"level": "error"' in line]
        for line in log_errors[:20]:
            self.found("server-log", None, line[:300])
        if not alive:
            self.found("server", None, f"the server process exited ({proc.proc.returncode})")
        self.report(elapsed, heard, rss_start, rss_end, alive, log_errors)
        return 1 if self.tally.findings else 0

    def report(self, elapsed: float, heard: int, rss_start: int, rss_end: int, alive: bool, log_errors: list[str]) -> None:
        t = self.tally
        print()
        print(f"fuzz campaign: {elapsed:.0f} s, {sum(t.cases.values())} cases, seed {self.args.seed}")
        print(f"{'target':<12} {'seconds':>7} {'cases':>8} {'findings':>9}  outcomes (most common)")
        for name in [x.name for x in TARGETS]:
            if name not in t.cases:
                continue
            found = sum(1 for f in t.findings if f.target == name)
            outcomes = sorted(t.outcomes[name].items(), key=lambda kv: -kv[1])[:4]
            print(f"{name:<12} {self.took.get(name, 0):>7.0f} {t.cases[name]:>8} {found:>9}  "
                  + ", ".join(f"{k} {v}" for k, v in outcomes))
        print(f"live call (own process): {self.live_checks} checks every {CHECK_EVERY_S:.0f} s, "
              f"{heard} voiced 20 ms frames echoed back, "
              f"{'affected: ' + '; '.join(self.live_failures[:3]) if self.live_failures else 'never affected'}")
        print(f"server: {'alive' if alive else 'DEAD'}, RSS {rss_start / 1024:.0f} -> {rss_end / 1024:.0f} MiB, "
              f"{len(log_errors)} ERROR/Traceback log lines")
        print(f"findings: {len(t.findings)} of {len(self.saved)} kinds" + (f" (cases in {self.out})" if t.findings else ""))
        for (target, kind), count in sorted(self.saved.items()):
            print(f"  {count:>6} x [{target}] {kind}")
        if self.args.json:
            Path(self.args.json).write_text(json.dumps({
                "seconds": elapsed, "seed": self.args.seed, "cases": t.cases, "outcomes": t.outcomes,
                "target_seconds": self.took,
                "findings": [{"target": f.target, "seed": f.seed, "summary": f.summary} for f in t.findings[:500]],
                "finding_kinds": [{"target": k[0], "kind": k[1], "count": n} for k, n in self.saved.items()],
                "live_checks": self.live_checks, "live_failures": self.live_failures, "voiced_frames": heard,
                "server_alive": alive, "rss_kib": [rss_start, rss_end], "log_errors": log_errors[:20]}, indent=1))


async def live_call(url: str) -> None:
    """`--live-call URL`: the call beside the campaign. One JSON line when it is up, then one per check:
    {"ok": true, "heard": voiced frames echoed so far} or {"ok": false, "error": ...}."""
    def emit(record: dict[str, Any]) -> None:
        print(json.dumps(record), flush=True)

    live = H.LiveCall(url)
    try:
        await live.start()
    except Exception as exc:
        emit({"ok": False, "error": f"start: {exc}"})
        return
    emit({"ok": True, "heard": live.client.audio.voiced_frames})
    while True:
        await asyncio.sleep(CHECK_EVERY_S)
        try:
            await live.check(timeout=LIVE_TIMEOUT_S)
            emit({"ok": True, "heard": live.client.audio.voiced_frames})
        except Exception as exc:
            emit({"ok": False, "error": str(exc), "heard": live.client.audio.voiced_frames})


async def reproduce(spec: str) -> int:
    """One case again from its seed (stateful targets: on a fresh session/call, so history is not replayed)."""
    name, seed = spec.split(":")
    target = next(t for t in TARGETS if t.name == name)
    if name in ("http", "ws-events", "ws-frames", "stun"):
        print("network targets need the campaign's server: rerun with --only", name, "--seed", int(seed) - 1,
              "--seconds 1")
        return 2

    class Stub:
        pass

    runner = target.make(Stub())  # type: ignore[arg-type]
    await runner.start()
    try:
        case = runner.make(random.Random(int(seed)))
        outcome = await runner.send(case)
        await runner.check()
        print(f"{name}:{seed} -> {outcome}")
        print(repr(case)[:2000])
        return 0
    except Exception as exc:
        print(f"{name}:{seed} -> FINDING: {exc}")
        return 1
    finally:
        await runner.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180, help="total budget, split by weight across targets")
    parser.add_argument("--only", type=lambda s: set(s.split(",")), default=None,
                        help=f"comma-separated targets ({', '.join(t.name for t in TARGETS)})")
    parser.add_argument("--seed", type=int, default=1_000_000, help="first seed (each target offsets it)")
    parser.add_argument("--out", default=str(ROOT / "test-artifacts" / "fuzz"), help="where findings are saved")
    parser.add_argument("--json", help="also write the figures as JSON here")
    parser.add_argument("--reproduce", metavar="TARGET:SEED", help="run one case again and exit")
    parser.add_argument("--live-call", metavar="URL", help=argparse.SUPPRESS)  # the campaign's own child
    args = parser.parse_args()
    if args.live_call:
        logging.basicConfig(level=logging.CRITICAL, handlers=[logging.NullHandler()])
        asyncio.run(live_call(args.live_call))
        return
    # the in-process targets' expected warnings are not news; their ERRORs are findings (H.LoopErrors)
    logging.basicConfig(level=logging.CRITICAL, handlers=[logging.NullHandler()])
    if args.reproduce:
        sys.exit(asyncio.run(reproduce(args.reproduce)))
    import tempfile

    logdir = Path(tempfile.mkdtemp(prefix="fuzz_"))
    code = asyncio.run(asyncio.wait_for(Campaign(args).run(logdir), args.seconds + 300))
    print(f"server log: {logdir / 'fuzz-server.log'}")
    sys.exit(code)


if __name__ == "__main__":
    main()
