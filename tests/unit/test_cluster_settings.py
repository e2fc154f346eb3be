"""Cluster flags: --redis-url, --node-id, --internal-url, --cluster-secret, --workers, and their environment."""

from __future__ import annotations

import logging
import os
import socket

import pytest

from openrealtime.cli import build_parser, settings_from_args
from openrealtime.config import Settings
from openrealtime.observability.redact import RedactSecrets

SECRET = "0123456789abcdef-cluster"


def settings(*flags: str) -> Settings:
    return settings_from_args(build_parser().parse_args(["serve", *flags]))


def test_defaults_run_one_process_alone():
    s = settings()
    assert (s.redis_url, s.node_id, s.internal_url, s.cluster_secret, s.workers) == (None, None, None, None, 1)
    assert s.cluster_node_id == f"{socket.gethostname()}-{os.getpid()}"
    s.check()


def test_flags_and_environment(monkeypatch):
    s = settings("--redis-url", "redis://10.0.0.2:6379/1", "--node-id", "n1", "--internal-url",
                 "http://10.0.0.5:8000", "--cluster-secret", SECRET, "--workers", "3")
    assert (s.redis_url, s.cluster_node_id, s.internal_url, s.cluster_secret, s.workers) == \
        ("redis://10.0.0.2:6379/1", "n1", "http://10.0.0.5:8000", SECRET, 3)
    s.check()
    monkeypatch.setenv("OPENREALTIME_REDIS_URL", "rediss://:pw-in-env@cache:6380/0")
    monkeypatch.setenv("OPENREALTIME_CLUSTER_SECRET", SECRET)
    monkeypatch.setenv("OPENREALTIME_WORKERS", "auto")
    s = settings()
    assert (s.redis_url, s.cluster_secret, s.workers) == ("rediss://:pw-in-env@cache:6380/0", SECRET,
                                                         len(os.sched_getaffinity(0)))


def test_help_never_prints_the_secret_or_redis_url_from_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("OPENREALTIME_REDIS_URL", "redis://:hunter2-password@cache:6379/0")
    monkeypatch.setenv("OPENREALTIME_CLUSTER_SECRET", SECRET)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    out = capsys.readouterr().out
    assert "--cluster-secret" in out and SECRET not in out and "hunter2" not in out


@pytest.mark.parametrize("flags,message", [
    (["--redis-url", "redis://127.0.0.1:6379/0"], "OPENREALTIME_CLUSTER_SECRET"),
    (["--redis-url", "redis://127.0.0.1:6379/0", "--cluster-secret", "short"], "16 or more"),
    (["--redis-url", "http://127.0.0.1:6379", "--cluster-secret", SECRET], "redis://"),
    (["--internal-url", "10.0.0.5:8000"], "--internal-url"),
    (["--workers", "0"], "--workers"),
])
def test_unusable_cluster_settings_stop_at_startup_saying_what_to_do(flags, message):
    with pytest.raises(SystemExit, match=message):
        settings(*flags).check()


def test_a_bad_workers_value_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--workers", "many"])
    assert "'auto'" in capsys.readouterr().err


def test_the_cluster_secret_and_redis_password_are_never_logged():
    s = settings("--redis-url", "redis://:hunter2-password@cache:6379/0", "--cluster-secret", SECRET)
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "joined %s with %s", (s.redis_url, SECRET), None)
    RedactSecrets(s.secret_values).filter(record)
    assert SECRET not in record.getMessage() and "hunter2" not in record.getMessage()
