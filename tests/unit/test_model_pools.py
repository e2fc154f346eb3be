"""The shared model pools (cluster/model_pools.py) on one process's own leases: a seat takes a lease per
limited stage or none at all, a full pool refuses with the stage and its limit, a seat is held until its
session ends, a session admitted elsewhere is counted but never refused, and lost leases are taken again."""

import asyncio

import pytest

from openrealtime.api.admission import model_capacity_refusal, pool_limits, session_stages
from openrealtime.cluster.model_pools import LocalLeases, ModelPools, PoolFull
from openrealtime.config import Settings
from openrealtime.protocol.session import RealtimeSessionConfig, TranscriptionSessionConfig


@pytest.fixture
async def pools():
    pools = ModelPools({"llm": 2, "stt": 3}, LocalLeases(), "node-a")
    yield pools
    await pools.close()


async def count(pools: ModelPools, stage: str) -> int:
    """The pool's leases, once the writes already spawned (releases, adopted seats) are done."""
    for _ in range(5):
        await asyncio.sleep(0)
    return await pools.store.lease_count(pools.pool(stage))


async def test_a_seat_holds_a_lease_in_each_limited_pool_of_its_stages(pools):
    seat = await pools.take(("stt", "llm", "tts"))
    assert set(seat.leases) == {"stt", "llm"}  # tts has no limit
    assert [await count(pools, s) for s in ("llm", "stt")] == [1, 1]
    only_stt = await pools.take(("stt",))
    assert set(only_stt.leases) == {"stt"} and await count(pools, "llm") == 1
    seat.release()
    only_stt.release()
    assert [await count(pools, s) for s in ("llm", "stt")] == [0, 0]


async def test_a_full_pool_refuses_and_the_refused_seat_holds_nothing(pools):
    held = [await pools.take() for _ in range(2)]
    with pytest.raises(PoolFull) as info:
        await pools.take()
    assert (info.value.stage, info.value.limit) == ("llm", 2)
    assert await count(pools, "stt") == 2  # the stt lease taken before the llm pool refused is back
    assert pools.known_full() is not None and pools.known_full(("stt",)) is None and pools.refused["llm"] == 1
    assert (await pools.take(("stt",))).leases  # another stage's pool still admits
    held[0].release()
    assert pools.known_full() is None and await count(pools, "llm") == 1
    await pools.take()


async def test_a_seat_left_unkept_is_released_and_a_kept_one_lives_until_its_session_ends(pools):
    with await pools.take() as seat:
        pass
    assert seat.released and await count(pools, "llm") == 0
    ended = asyncio.Event()
    with await pools.take() as seat:
        seat.keep_until(ended)
    assert await count(pools, "llm") == 1 and not seat.released
    ended.set()
    assert await count(pools, "llm") == 0 and seat.released and await count(pools, "llm") == 0


async def test_a_session_admitted_without_a_seat_is_counted_never_refused(pools):
    held = [await pools.take() for _ in range(2)]
    ended = asyncio.Event()
    pools.adopt(ended)  # e.g. a SIP call accepted through the sync admission while the pool filled up
    assert await count(pools, "stt") == 3 and await count(pools, "llm") == 2  # no llm lease free: none taken
    held[0].release()
    assert await count(pools, "llm") == 1
    await pools.renew_all()  # the adopted session takes the lease it lacks
    assert await count(pools, "llm") == 2
    ended.set()
    assert await count(pools, "stt") == 1


async def test_a_seat_kept_already_is_not_adopted_again(pools):
    ended = asyncio.Event()
    with await pools.take() as seat:
        seat.keep_until(ended)
    pools.adopt(ended)
    assert await count(pools, "llm") == 1


async def test_a_lost_lease_is_taken_again_at_the_next_renewal():
    pools = ModelPools({"llm": 1}, LocalLeases(), "node-a", ttl_s=0.05, renew_s=0.01)
    try:
        seat = await pools.take()
        await asyncio.sleep(0.1)  # not renewed: expired
        assert await count(pools, "llm") == 0
        assert await pools.renew_all()
        assert seat.leases["llm"] is not None and await count(pools, "llm") == 1
    finally:
        await pools.close()


async def test_close_gives_every_lease_back(pools):
    ended = asyncio.Event()
    with await pools.take() as seat:
        seat.keep_until(ended)
    await pools.close()
    assert seat.released and await count(pools, "llm") == 0


def test_limits_stages_and_the_refusal():
    settings = Settings(llm_max_sessions=8, stt_max_sessions=0)
    assert pool_limits(settings) == {"llm": 8}
    assert session_stages(TranscriptionSessionConfig()) == ("stt",)
    assert session_stages(RealtimeSessionConfig()) == ("stt", "llm", "tts")
    refusal = model_capacity_refusal(PoolFull("llm", 8))
    assert refusal.status == 429 and refusal.headers["Retry-After"]
    assert (refusal.error.code, refusal.error.type) == ("model_capacity_exceeded", "rate_limit_exceeded")
    assert "--llm-max-sessions" in refusal.error.message
    with pytest.raises(ValueError):
        ModelPools({"vision": 1}, LocalLeases(), "n")
    with pytest.raises(SystemExit):
        Settings(llm_max_sessions=-1).check()
