"""`openrealtime serve --sip-port` as a real process: the flags and what it refuses at startup, and a call
(SIPp) at --log-level debug whose log holds neither the webhook secret nor the API key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from openrealtime.sip.webhook import new_secret
from tests.support.mcp_servers import serving
from tests.support.serve_process import ROOT, ServeProcess
from tests.support.sip import API_KEY, SIPP, PhoneApp, Sipp, free_sip_port

pytestmark = pytest.mark.skipif(SIPP is None, reason="needs SIPp (Debian package sip-tester)")


@pytest.mark.parametrize("args, says", [
    (["--sip-port", "5999"], "--webhook-url"),
    (["--sip-port", "5999", "--webhook-url", "http://app/hook"], "webhook secret"),
    (["--sip-port", "5999", "--webhook-url", "http://app/hook", "--webhook-secret", "whsec_***"], "base64"),
    (["--sip-tls-port", "5061"], "--sip-port"),
    (["--sip-port", "5999", "--webhook-url", "http://app/hook", "--webhook-secret", "s", "--sip-allow", "nope"],
     "--sip-allow"),
])
def test_refused_at_startup(args, says):
    run = subprocess.run([sys.executable, "-m", "openrealtime", "serve", "--engine", "echo", *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and says in run.stderr, run.stderr[-500:]


async def test_a_call_at_debug_level_logs_no_secret(tmp_path):
    secret = new_secret()
    app = PhoneApp(secret)
    sip_port = free_sip_port()
    with serving(app, path="/webhook") as url:
        server = ServeProcess("--engine", "echo", "--sip-port", str(sip_port), "--webhook-url", url,
                              "--webhook-secret", secret, "--log-level", "debug", api_key=API_KEY)
        try:
            await server.ready()
            app.base_url = server.url + "/v1"
            app.on_call = lambda client, event: client.realtime.calls.reject(event.data.call_id, status_code=486)
            async with Sipp("refused.xml", sip_port, tmp_path, status=486) as sipp:
                await sipp.succeeds()
            log = server.log()
        finally:
            server.kill()
    assert "ringing" in log and "rejected by the app: 486" in log
    key = secret.removeprefix("whsec_")
    assert key[:16] not in log and API_KEY not in log
    assert app.refused == 0 and len(app.deliveries) == 1
