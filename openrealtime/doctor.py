"""`openrealtime doctor [serve options]`: check that this host can run the server as configured.

Checks, each printed as ``[ok]``, ``[warn]`` or ``[FAIL]`` with what to do:

* the settings themselves (API key on a public bind, ...), as `serve` would refuse them;
* the HTTP port and the shared ICE UDP/TCP ports can be bound (by the same code `serve` uses);
* every advertised ICE address is on this host, or else what 1:1 NAT it needs;
* the model files of the profile are installed, assembled and verified (`--verify-models`
  re-hashes them); skipped with ``--engine echo``;
* every remote model server (`--llm-url`, `--stt-url`, `--tts-url`) answers, with its model;
* the espeak-ng program (Piper's phonemes);
* PyAV has the codecs WebRTC needs: libopus (decode + encode), H.264 decode, MJPEG encode;
* (optional) Chromium, used by the browser tests.

Exit status 1 when any check FAILs.
"""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import socket
import sys
from dataclasses import dataclass
from typing import TextIO

from .config import Settings


@dataclass
class Check:
    status: str  # ok | warn | fail
    name: str
    detail: str


def check_settings(settings: Settings) -> list[Check]:
    try:
        settings.check()
    except SystemExit as exc:
        return [Check("fail", "settings", str(exc))]
    auth = f"{len(settings.api_keys)} API key(s)" if settings.api_keys else "no API keys (loopback or insecure)"
    return [Check("ok", "settings", f"engine={settings.engine} profile={settings.profile}, {auth}")]


def _pairs(settings: Settings) -> list[tuple[str, str]]:
    from .media.ice import default_advertise_ips
    from .media.ice_mux import address_pairs

    advertise = settings.advertise_ips or default_advertise_ips(settings.host)
    return list(address_pairs(settings.bind_ips, advertise))


def check_ports(settings: Settings) -> list[Check]:
    from .media.ice_mux import MuxSet

    out: list[Check] = []
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((settings.host, settings.port))
            out.append(Check("ok", "http port", f"TCP {settings.host}:{settings.port} is free"))
        except OSError as exc:
            hint = "in use (another server running?): pick another with --port" if exc.errno in (98, 48) else \
                f"{exc.strerror or exc}"
            out.append(Check("fail", "http port", f"cannot bind TCP {settings.host}:{settings.port}: {hint}"))
    try:
        pairs = _pairs(settings)
    except (ValueError, SystemExit) as exc:
        return out + [Check("fail", "ice addresses", str(exc))]

    async def bind() -> MuxSet:
        mux = MuxSet(pairs, udp_port=settings.udp_port, tcp_port=settings.tcp_port or None)
        await mux.start()
        await mux.close()
        return mux

    try:
        asyncio.run(bind())
        tcp = f", TCP {settings.tcp_port}" if settings.tcp_port else " (ICE-TCP disabled)"
        binds = ", ".join(sorted({b for b, _ in pairs}))
        out.append(Check("ok", "ice ports", f"UDP {settings.udp_port}{tcp} bindable on {binds}"))
    except OSError as exc:
        out.append(Check("fail", "ice ports", str(exc)))
    return out


def check_addresses(settings: Settings) -> list[Check]:
    from .media.ice_mux import _is_local_address

    try:
        pairs = _pairs(settings)
    except (ValueError, SystemExit):
        return []  # reported by check_ports
    out: list[Check] = []
    public_bind = not settings.is_loopback
    for bind, adv in pairs:
        ip = ipaddress.ip_address(adv)
        if ip.is_loopback and public_bind:
            out.append(Check("warn", "advertised ip", f"{adv} is loopback but HTTP listens on {settings.host}: "
                             "browsers on other machines get an unreachable candidate. Pass --advertise-ip "
                             "with an address clients can reach"))
        elif _is_local_address(adv):
            scope = "loopback" if ip.is_loopback else ("private" if ip.is_private else "public")
            out.append(Check("ok", "advertised ip", f"{adv} ({scope}) is on this host, bound on {bind}"))
        else:
            ports = f"UDP {settings.udp_port}" + (f" and TCP {settings.tcp_port}" if settings.tcp_port else "")
            out.append(Check("warn", "advertised ip",
                             f"{adv} is not on this host: fine only behind 1:1 NAT (e.g. a cloud VM's public IP) "
                             f"that forwards {ports} from {adv} to this host ({bind}). Open those ports in the "
                             "firewall / security group; otherwise advertise an address of this host"))
    return out


def check_models(settings: Settings, *, verify: bool = False) -> list[Check]:
    if settings.engine != "local":
        return [Check("ok", "models", f"engine={settings.engine}: no models needed")]
    from .models_cli import profile_status

    out: list[Check] = []
    from .engines.stack import configured_stack

    chosen = configured_stack(settings)
    for row in profile_status(settings.profile, asr=chosen["asr"], llm=chosen["llm"], tts=chosen["tts"]):
        if row.kind == "program":
            continue  # reported by check_espeak
        if not row.ok:
            out.append(Check("fail", f"model {row.stage}", f"{row.model}: {row.detail}"))
        elif row.state == "not assembled":
            out.append(Check("warn", f"model {row.stage}", f"{row.model}: {row.detail}"))
        else:
            out.append(Check("ok", f"model {row.stage}", f"{row.model} {row.state}"))
    if verify and all(c.status != "fail" for c in out):
        import io

        from .models_cli import cmd_verify

        buf = io.StringIO()
        code = cmd_verify(settings.profile, out=buf, err=sys.stderr)
        out.append(Check("ok" if code == 0 else "fail", "models verify",
                         "every file matches its pinned sha256" if code == 0 else buf.getvalue().strip()))
    return out


def check_backends(settings: Settings) -> list[Check]:
    """Each `--llm-url` / `--stt-url` / `--tts-url` answers (the check `serve` retries until it passes)."""
    if settings.engine != "local" or not settings.remote_stages:
        return []
    from .engines.stack import configured_stack

    out: list[Check] = []
    for stage, backend in configured_stack(settings)["remote"].items():
        try:
            endpoint = backend.resolve()
        except Exception as exc:  # noqa: BLE001 - RemoteEngineError names the flag; anything else as is
            out.append(Check("fail", f"backend {stage}", f"{exc} (serve keeps retrying it and is not ready "
                                                         f"until it answers: GET /readyz says why)"))
        else:
            out.append(Check("ok", f"backend {stage}", f"{backend.label} answers; model {endpoint.model}"))
    return out


def check_espeak() -> list[Check]:
    path = shutil.which("espeak-ng")
    if path:
        return [Check("ok", "espeak-ng", path)]
    return [Check("fail", "espeak-ng", "not found: the Piper voice needs its phonemes. Install it: "
                  "apt-get install espeak-ng (macOS: brew install espeak-ng)")]


def check_codecs() -> list[Check]:
    try:
        import av
    except ImportError as exc:
        return [Check("fail", "pyav", f"cannot import av: {exc}; pip install 'av>=14'")]
    out: list[Check] = []
    for name, mode, what, required in (("libopus", "r", "Opus decoder (microphone audio)", True),
                                       ("libopus", "w", "Opus encoder (spoken answers)", True),
                                       ("h264", "r", "H.264 decoder (video)", True),
                                       ("mjpeg", "w", "MJPEG encoder (video stills for the model)", False)):
        try:
            av.CodecContext.create(name, mode)
            out.append(Check("ok", f"codec {name}/{mode}", what))
        except Exception as exc:  # noqa: BLE001 - av raises several types
            out.append(Check("fail" if required else "warn", f"codec {name}/{mode}",
                             f"{what} missing in PyAV {av.__version__} ({exc}): install the PyPI wheel "
                             "(pip install --force-reinstall 'av>=14'), which bundles FFmpeg with these codecs"))
    return out


def check_chromium() -> list[Check]:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"),
                      shutil.which("google-chrome")):
        if candidate and shutil.which(candidate):
            return [Check("ok", "chromium", f"{candidate} (optional: browser tests)")]
    return [Check("warn", "chromium", "not found (optional: only the browser tests need it; apt-get install chromium)")]


def run_checks(settings: Settings, *, verify_models: bool = False) -> list[Check]:
    checks = check_settings(settings)
    checks += check_ports(settings)
    checks += check_addresses(settings)
    checks += check_models(settings, verify=verify_models)
    checks += check_backends(settings)
    checks += check_espeak()
    checks += check_codecs()
    checks += check_chromium()
    return checks


def main_doctor(settings: Settings, *, verify_models: bool = False, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    checks = run_checks(settings, verify_models=verify_models)
    marks = {"ok": "[ok]  ", "warn": "[warn]", "fail": "[FAIL]"}
    for c in checks:
        out.write(f"{marks[c.status]} {c.name:<16} {c.detail}\n")
    fails = sum(c.status == "fail" for c in checks)
    warns = sum(c.status == "warn" for c in checks)
    if fails:
        out.write(f"\n{fails} problem(s) to fix" + (f", {warns} warning(s)" if warns else "") + ".\n")
        return 1
    out.write("\nready to serve" + (f" ({warns} warning(s))" if warns else "") + ".\n")
    return 0
