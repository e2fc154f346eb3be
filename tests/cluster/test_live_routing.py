"""Live sessions in a cluster (in-process nodes on scripted models and one real redis-server): a
`POST /v1/live/sessions` is placed by load like a Realtime call, and a session's sideband
(`client.live.sideband.connect`) and `client.live.sessions.hangup` reach its owner from any node."""

from __future__ import annotations

from contextlib import AsyncExitStack, asynccontextmanager

import openai
import pytest

from openrealtime.api.embedded import embedded_server
from openrealtime.cluster.redis_store import RedisStore
from tests.cluster.test_routing import SECRET, _ready_nodes, router
from tests.live.conftest import KEY, SIDEBAND_EVENT, Reader, client_for
from tests.live.test_live_webrtc import MEDIA, LiveRtc
from tests.support import fake_stack, server_settings, wait_for


@asynccontextmanager
async def live_cluster(redis):
    async with AsyncExitStack() as stack:
        servers = []
        for node in ("n1", "n2"):
            settings = server_settings(engine="local", api_keys=[KEY], redis_url=redis.url, cluster_secret=SECRET,
                                       node_id=node)
            servers.append(await stack.enter_async_context(embedded_server(settings, models=fake_stack())))
        view = RedisStore.from_url(redis.url)
        stack.push_async_callback(view.close)
        await wait_for(lambda: _ready_nodes(view, {"n1", "n2"}), what="both nodes registered and ready")
        await wait_for(lambda: all(set(router(s).known) == {"n1", "n2"} for s in servers), what="both seen by both")
        yield servers


async def test_live_sessions_are_placed_and_reached_from_any_node(own_redis):
    async with live_cluster(own_redis) as (n1, n2):
        peers: list[LiveRtc] = []
        try:
            while not any(n2.state.calls.get(p.id) for p in peers):  # every POST arrives at n1
                assert len(peers) < 4, "n1 kept every session"
                peers.append(LiveRtc(n1))
                await peers[-1].create(MEDIA)
                await peers[-1].next("session.started")  # on the data channel, from whichever node owns it
            away = next(p for p in peers if n2.state.calls.get(p.id))
            api = client_for(n1)
            async with api.live.sideband.connect(session_id=away.id) as sideband:  # piped to n2
                reader = Reader(sideband, SIDEBAND_EVENT)
                assert (await reader.next("session.started"))["session"]["id"] == away.id
                await api.live.sessions.hangup(away.id)  # forwarded to n2
                assert (await reader.next("session.closed"))["reason"] == "close_requested"
            await wait_for(lambda: n2.state.calls.get(away.id) is None, what="the session ended on n2")
            with pytest.raises(openai.NotFoundError) as ended:
                await api.live.sessions.hangup(away.id)
            assert ended.value.body["code"] == "session_not_found"
        finally:
            for peer in peers:
                await peer.close()
