"""`openrealtime serve --redis-url` as a real process: the cluster secret is required, the node joins,
SIGTERM publishes the drain and deregisters it, and neither the secret nor the Redis password is logged."""

from __future__ import annotations

import signal
import subprocess
import sys

from openrealtime.cluster.redis_store import RedisStore
from tests.support import wait_for
from tests.support.redis_server import RedisServer
from tests.support.serve_process import ROOT, ServeProcess

SECRET = "serve-node-cluster-secret-42"


def test_redis_url_without_a_cluster_secret_stops_at_startup():
    proc = subprocess.run([sys.executable, "-m", "openrealtime", "serve", "--redis-url", "redis://127.0.0.1:1/0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})
    assert proc.returncode != 0
    assert "OPENREALTIME_CLUSTER_SECRET" in proc.stderr


async def test_a_serving_node_joins_drains_and_leaves_without_logging_secrets(tmp_path):
    password = "redis-pass-7f3a"
    redis = RedisServer(tmp_path / "redis", extra_args=("--requirepass", password)).start()
    url = f"redis://:{password}@127.0.0.1:{redis.port}/0"
    view = RedisStore.from_url(url)
    server = ServeProcess("--engine", "echo", "--node-id", "proc-1", "--log-level", "debug", "--log-format", "json",
                          env={"OPENREALTIME_REDIS_URL": url, "OPENREALTIME_CLUSTER_SECRET": SECRET})
    try:
        await server.ready()
        await wait_for(lambda: _node(view, "proc-1"), what="the node registered")
        server.signal(signal.SIGTERM)  # no live session: drain, deregister, exit 0
        assert await server.exit_code() == 0
        assert await _node(view, "proc-1") is None
        log = server.log()
        assert "cluster node registered" in log and "cluster node deregistered" in log
        assert SECRET not in log and password not in log
    finally:
        server.kill()
        await view.close()
        redis.stop()


async def _node(view, node_id: str):
    return next((n for n in await view.live_nodes() if n.node_id == node_id), None)
