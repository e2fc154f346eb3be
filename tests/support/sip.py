"""Phone calls in tests: a server with SIP on, the application side written with the stock openai-python
SDK only, and real SIP peers (SIPp from Debian's sip-tester, baresip) run as external programs.

* `PhoneApp`: the app's webhook endpoint (ASGI, in a thread of its own): `client.webhooks.unwrap()` checks
  each `realtime.call.incoming`, the event is queued for the test (`next_call`); `statuses` scripts the
  HTTP answers (a 500 first: the server retries); `on_call` runs the app's own decision in the endpoint's
  thread with the sync SDK (`client.realtime.calls.accept(...)`), as a real app would.
* `phone_server()`: that app and an in-process server (echo engine unless told otherwise) with
  `--sip-port` on a free port, `--webhook-url` pointing at the app; yields a `Phone`.
* `Sipp`: a SIPp scenario from tests/sip/scenarios (with `$name` placeholders filled) run against it.
* `Softphone`: baresip, headless (aufile plays a WAV as the microphone, sndfile records what it hears),
  dialling the server once.
* `rtp_pcap`: G.711 RTP packets of some audio written as a pcap SIPp can play (`play_pcap_audio`).
"""

from __future__ import annotations

import asyncio
import queue
import shutil
import socket
import string
import struct
import threading
import wave
import zlib
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from openai import AsyncOpenAI, OpenAI

from openrealtime.api.embedded import embedded_server, free_port
from openrealtime.audio.convert import pcm8k_to_g711
from openrealtime.sip.webhook import new_secret
from tests.support.asgi import lifespan, read_body, respond
from tests.support.mcp_servers import serving
from tests.support.servers import server_settings

SCENARIOS = Path(__file__).resolve().parent.parent / "sip" / "scenarios"
API_KEY = "sk-phone-test"
SIPP = shutil.which("sipp")
BARESIP = shutil.which("baresip")


class PhoneApp:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.base_url = ""  # the server's /v1 URL, once it runs
        self.events: queue.Queue = queue.Queue()
        self.deliveries: list[dict[str, str]] = []  # headers of every POST received, verified or not
        self.refused = 0  # deliveries whose signature did not verify
        self.statuses: list[int] = []  # scripted answers (then 200)
        self.on_call: Callable[[OpenAI, Any], None] | None = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        body = await read_body(receive)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.deliveries.append(headers)
        status = self.statuses.pop(0) if self.statuses else 200
        client = OpenAI(api_key=API_KEY, base_url=self.base_url, webhook_secret=self.secret)
        try:
            event = client.webhooks.unwrap(body, headers)
        except ValueError:  # InvalidWebhookSignatureError is one
            self.refused += 1
            status = 400
            event = None
        if event is not None and status == 200:
            self.events.put(event)
            if self.on_call is not None:
                threading.Thread(target=self.on_call, args=(client, event), daemon=True).start()
        await respond(send, status)

    async def next_call(self, timeout: float = 20.0) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: self.events.get(timeout=timeout))


@dataclass
class Phone:
    server: Any  # EmbeddedServer
    app: PhoneApp
    client: AsyncOpenAI
    sip_port: int

    @property
    def sip(self):
        """The running SipServer (openrealtime/sip/server.py)."""
        return self.server.server.config.app.state.sip


@asynccontextmanager
async def phone_server(**overrides):
    secret = new_secret()
    app = PhoneApp(secret)
    sip_port = free_sip_port()
    with serving(app, path="/webhook") as url:
        settings = {"engine": "echo", "echo_delay_s": 0.2, "sip_port": sip_port, "webhook_url": url,
                    "webhook_secret": secret, "api_keys": [API_KEY]}
        settings.update(overrides)
        shared = {key: settings.pop(key) for key in ("models", "runtime") if key in settings}  # a loaded stack
        async with embedded_server(server_settings(**settings), **shared) as server:
            app.base_url = server.url + "/v1"
            client = AsyncOpenAI(api_key=API_KEY, base_url=server.url + "/v1", webhook_secret=secret, max_retries=0)
            try:
                yield Phone(server, app, client, sip_port)
            finally:
                await client.close()


def free_sip_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (SIP listens on both with one number)."""
    while True:
        port = free_port(kind=socket.SOCK_DGRAM)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


class Sipp:
    """One SIPp run of a scenario file against the phone server (UDP unless `transport="t1"`)."""

    def __init__(self, scenario: str, sip_port: int, tmp: Path, *, transport: str = "u1", calls: int = 1,
                 extra_args: tuple[str, ...] = (), **values: Any) -> None:
        text = string.Template((SCENARIOS / scenario).read_text()).substitute(
            {k: str(v) for k, v in values.items()})
        self.path = tmp / scenario
        self.path.write_text(text)
        self.errors = tmp / (scenario + ".errors.log")
        self.messages = tmp / (scenario + ".messages.log")
        self.media_port = free_port(kind=socket.SOCK_DGRAM)
        self.args = [SIPP or "sipp", "-sf", str(self.path), "-m", str(calls), "-l", str(calls), "-i", "127.0.0.1",
                     "-p", str(free_port(kind=socket.SOCK_DGRAM if transport.startswith("u") else socket.SOCK_STREAM)),
                     "-mp", str(self.media_port), "-t", transport, f"127.0.0.1:{sip_port}", "-timeout", "40s",
                     "-timeout_error", "-nostdin", "-trace_err", "-error_file", str(self.errors),
                     "-trace_msg", "-message_file", str(self.messages), "-max_recv_loops", "1000", *extra_args]
        self.process: asyncio.subprocess.Process | None = None
        self.stderr = ""

    def received(self, start_line: str) -> int:
        """How many messages starting with `start_line` SIPp received (from its message log)."""
        if not self.messages.exists():
            return 0
        blocks = self.messages.read_text(errors="replace").split("message received")[1:]
        return sum(1 for block in blocks if block.split(":", 1)[-1].lstrip().startswith(start_line))

    async def start(self) -> "Sipp":
        self.process = await asyncio.create_subprocess_exec(*self.args, stdout=asyncio.subprocess.DEVNULL,
                                                            stderr=asyncio.subprocess.PIPE)
        return self

    async def __aenter__(self) -> "Sipp":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        self.kill()

    async def wait(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        try:
            rc = await asyncio.wait_for(self.process.wait(), timeout)
            if self.process.stderr is not None:
                self.stderr = (await self.process.stderr.read()).decode(errors="replace")
            return rc
        except asyncio.TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise

    async def succeeds(self, timeout: float = 60.0) -> None:
        rc = await self.wait(timeout)
        assert rc == 0, f"SIPp exited {rc}: {self.report()}"

    def report(self) -> str:
        parts = [f"--- stderr\n{self.stderr[-3000:]}"]
        for path in (self.errors, self.messages):
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-6000:]}")
        return "\n".join(parts)

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()


def speech_pcap(tmp: Path, codec: str = "PCMU", seconds: float = 2.0) -> Path:
    """`seconds` of steady speechlike audio as a G.711 RTP pcap (PCMU: payload type 0, PCMA: 8)."""
    from tests.support.audio import speechlike

    return rtp_pcap(tmp / f"speech-{codec}-{seconds}.pcap", speechlike(seconds, rate=8000, steady=True),
                    law=codec.lower(), payload_type=0 if codec == "PCMU" else 8)


def rtp_pcap(path: Path, samples_8k: np.ndarray, *, law: str = "pcmu", payload_type: int = 0) -> Path:
    """20 ms G.711 RTP packets of `samples_8k` (int16 at 8 kHz) in a pcap (Ethernet/IPv4/UDP), timed 20 ms apart;
    each file its own SSRC (a stream played after another is a new stream, as a new talk spurt's would not be)."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    ssrc, seq, ts = zlib.crc32(path.name.encode()), 1000, 8000
    for n, start in enumerate(range(0, samples_8k.size - 159, 160)):
        rtp = struct.pack("!BBHII", 0x80, (0x80 if n == 0 else 0) | payload_type, seq + n, ts + 160 * n, ssrc)
        rtp += pcm8k_to_g711(samples_8k[start:start + 160], law)
        udp = struct.pack("!HHHH", 2006, 4000, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n & 0xFFFF, 0, 64, 17, 0,
                         socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2")) + udp
        frame = b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\x08\x00" + ip
        usec = n * 20000
        out += struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(frame), len(frame)) + frame
    path.write_bytes(bytes(out))
    return path


BARESIP_CONFIG = """poll_method\tepoll
sip_listen\t127.0.0.1:{port}
audio_player\taubridge,nil
audio_alert\taubridge,nil
audio_source\taufile,{wav}
module_path\t/usr/lib/baresip/modules
module\tg711.so
module\topus.so
module\taufile.so
module\taubridge.so
module\tsndfile.so
module\tsrtp.so
module_app\taccount.so
module_app\tmenu.so
snd_path\t{dir}
"""


class Softphone:
    """baresip calling `sip:proj@127.0.0.1:PORT` once with `wav` (mono, 8 kHz, 16-bit) as its microphone.
    `mediaenc`: "srtp-mand" (RTP/SAVP with SDES keys), "srtp" (keys offered on RTP/AVP) or None; `tls_ca`:
    call over TLS, trusting that certificate; `auth`: (user, password) of its account, answered to a digest
    challenge."""

    def __init__(self, tmp: Path, wav: Path, *, codec: str = "PCMU", mediaenc: str | None = "srtp-mand",
                 tls_ca: Path | None = None, auth: tuple[str, str] | None = None) -> None:
        self.dir = tmp / "baresip"
        self.dir.mkdir(exist_ok=True)
        self.transport = ";transport=tls" if tls_ca is not None else ""
        config = BARESIP_CONFIG.format(port=free_port(kind=socket.SOCK_DGRAM), wav=wav, dir=self.dir)
        if tls_ca is not None:
            config += f"sip_cafile\t{tls_ca}\n"  # the server's self-signed certificate: verified
        (self.dir / "config").write_text(config)
        codecs = "opus/48000/2" if codec.lower() == "opus" else codec
        user = auth[0] if auth else "caller"
        account = f"<sip:{user}@127.0.0.1>;regint=0;audio_codecs={codecs}"
        if auth is not None:
            account += f";auth_user={auth[0]};auth_pass={auth[1]}"
        (self.dir / "accounts").write_text(account + (f";mediaenc={mediaenc}" if mediaenc else "") + "\n")
        self.log = self.dir / "baresip.log"
        self.process: asyncio.subprocess.Process | None = None

    async def dial(self, sip_port: int, *, seconds: float) -> "Softphone":
        """Call, and quit after `seconds` (or when the call ends: aufile's end of file hangs up)."""
        self.process = await asyncio.create_subprocess_exec(
            BARESIP or "baresip", "-f", str(self.dir), "-e", f"/dial sip:proj@127.0.0.1:{sip_port}{self.transport}",
            "-t", str(int(seconds)), stdin=asyncio.subprocess.DEVNULL, stdout=self.log.open("wb"),
            stderr=asyncio.subprocess.STDOUT)
        return self

    async def wait(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def quit(self, timeout: float = 10.0) -> None:
        """SIGTERM: baresip ends its calls and closes its recordings."""
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except asyncio.TimeoutError:
                self.process.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no baresip log)"

    async def next_call_to(self, app: "PhoneApp", timeout: float = 60.0) -> Any:
        """The application's next incoming call, or a failure that shows what baresip did meanwhile."""
        try:
            return await app.next_call(timeout)
        except queue.Empty:
            raise AssertionError(f"no call reached the application in {timeout:.0f} s; baresip (exit "
                                 f"{self.process.returncode if self.process else None}):\n{self.log_tail()}") from None

    def heard(self) -> np.ndarray:
        """What the softphone played out (its decoder's output, int16, the first channel; 8 kHz for G.711,
        48 kHz for Opus)."""
        dumps = sorted(self.dir.glob("dump-*-dec.wav"))
        assert dumps, f"baresip recorded nothing: {self.log_tail(2000)}"
        with wave.open(str(dumps[-1])) as w:
            return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")[::w.getnchannels()]


def phone_wav(path: Path, samples: np.ndarray, *, pad_after_s: float = 0.0, rate: int = 8000,
              channels: int = 1) -> Path:
    """A 16-bit WAV at `rate` (a softphone's microphone: baresip wants mono 8 kHz for G.711, 48 kHz stereo
    for Opus), the same samples on each channel, with silence after."""
    audio = np.concatenate([samples.astype("<i2"), np.zeros(int(rate * pad_after_s), dtype="<i2")])
    audio = np.repeat(audio, channels)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(audio.tobytes())
    return path


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1 (PEM files): SIP over TLS in tests."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "sip-cert.pem", tmp / "sip-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path
