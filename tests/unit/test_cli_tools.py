"""CLI subcommands: inspect-sdp, models list, doctor."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from openrealtime.api.embedded import free_port
from openrealtime.cli import main

FIXTURE_OFFER = Path(__file__).resolve().parent.parent / "fixtures" / "chromium-156-offer.sdp"
ROOT = Path(__file__).resolve().parent.parent.parent


def run_main(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_inspect_sdp_subprocess_text_json_and_stdin():
    cmd = [sys.executable, "-m", "openrealtime", "inspect-sdp"]
    text = subprocess.run(cmd + [str(FIXTURE_OFFER)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("SDP offer") and "| PeerConnection" in text.stdout
    assert "Single PeerConnection using BUNDLE" in text.stdout
    as_json = subprocess.run(cmd + ["--json", "-"], input=FIXTURE_OFFER.read_text(), capture_output=True,
                             text=True, cwd=ROOT, timeout=60)
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["type"] == "offer" and any(r["aspect"] == "DataChannels" for r in report["summary"])


def test_inspect_sdp_bad_inputs(tmp_path, capsys):
    code, _, err = run_main(["inspect-sdp", str(tmp_path / "missing.sdp")], capsys)
    assert code == 2 and "cannot read" in err
    junk = tmp_path / "junk.txt"
    junk.write_text("hello world\n")
    code, _, err = run_main(["inspect-sdp", str(junk)], capsys)
    assert code == 2 and "does not look like SDP" in err


def test_models_list(capsys):
    code, out, _ = run_main(["models", "list", "--profile", "test", "--json"], capsys)
    report = json.loads(out)
    rows = report["profiles"]["test"]
    assert [r["stage"] for r in rows][:4] == ["vad", "stt", "llm", "tts"]
    assert code == (0 if all(r["ok"] for r in rows) else 1)
    assert {r["kind"] for r in rows} <= {"packaged", "split", "program", "path"}
    code, out, _ = run_main(["models", "list"], capsys)
    for profile in ("default", "fast", "test"):
        assert f"profile {profile}:" in out
    assert "model cache:" in out


def test_models_progress_bar_steps():
    import io

    from openrealtime.models_cli import ProgressBar

    buf = io.StringIO()
    bar = ProgressBar(buf)
    for done in range(0, 101, 5):
        bar("llm", done * 10_000_000, 1_000_000_000)
    lines = buf.getvalue().splitlines()
    assert lines[0].split()[:2] == ["llm", "0%"] and lines[-1].split()[:2] == ["llm", "100%"]
    assert len(lines) == 11  # one line per 10 % off a TTY


def test_doctor_ok_with_free_ports(capsys):
    argv = ["doctor", "--engine", "echo", "--port", str(free_port()), "--udp-port", "0", "--tcp-port", "0"]
    code, out, _ = run_main(argv, capsys)
    assert "[ok]   ice ports" in out and "[ok]   codec libopus/r" in out and "engine=echo" in out
    assert code == (1 if "[FAIL]" in out else 0), out
    assert "[FAIL]" not in out or "espeak-ng" in out  # only a missing system program may fail here


def test_doctor_reports_busy_port_and_unsafe_bind(capsys):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        code, out, _ = run_main(["doctor", "--engine", "echo", "--port", str(free_port()), "--udp-port", str(port),
                                 "--tcp-port", "0"], capsys)
    assert code == 1
    assert "[FAIL] ice ports" in out and "in use" in out and "problem(s) to fix" in out
    code, out, _ = run_main(["doctor", "--engine", "echo", "--host", "0.0.0.0", "--port", str(free_port()),
                             "--udp-port", "0", "--tcp-port", "0", "--advertise-ip", "203.0.113.7"], capsys)
    assert code == 1
    assert "[FAIL] settings" in out and "--api-key" in out
    assert "[warn] advertised ip" in out and "1:1 NAT" in out


def test_unknown_options_still_rejected_for_other_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["models", "list", "--bogus"])
    assert exc.value.code == 2
