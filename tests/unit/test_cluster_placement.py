"""Placement order: least-loaded nodes that take calls first, equal loads in random order, recent
placements counted until the node's next heartbeat reports them."""

from __future__ import annotations

import random
from collections import Counter

from openrealtime.cluster.placement import RecentPlacements, placement_order
from openrealtime.cluster.store import NodeRecord


def node(node_id: str, calls: int = 0, max_calls: int = 10, **kw) -> NodeRecord:
    return NodeRecord(node_id=node_id, internal_url=f"http://{node_id}", calls=calls, max_calls=max_calls, **kw)


def ids(nodes) -> list[str]:
    return [n.node_id for n in nodes]


def test_least_loaded_first_by_fraction_of_max_calls():
    nodes = [node("a", 5, 10), node("b", 1, 10), node("c", 3, 4), node("d", 2, 40)]
    assert ids(placement_order(nodes)) == ["d", "b", "a", "c"]


def test_draining_not_ready_and_full_nodes_take_no_placements():
    nodes = [node("draining", draining=True), node("loading", ready=False), node("full", 4, 4), node("ok", 3, 4)]
    assert ids(placement_order(nodes)) == ["ok"]


def test_equal_loads_are_ordered_at_random():
    rng = random.Random(7)
    firsts = Counter(placement_order([node("a", 1), node("b", 1), node("c", 1)], rng=rng)[0].node_id
                     for _ in range(300))
    assert set(firsts) == {"a", "b", "c"}
    assert min(firsts.values()) > 50


def test_recent_placements_count_until_the_next_heartbeat():
    now = [100.0]
    recent = RecentPlacements(clock=lambda: now[0])
    a, b = node("a", 0, updated_at=99.0), node("b", 0, updated_at=99.0)
    recent.note("a")
    recent.note("a")
    assert ids(placement_order([a, b], recent)) == ["b", "a"]
    assert ids(placement_order([node("a", 0, 2, updated_at=99.0)], recent)) == []  # 0 + 2 placed: full
    now[0] = 101.0
    reported = node("a", 2, updated_at=100.5)  # a heartbeat written after both: they are in its calls
    assert recent.since(reported) == 0
    assert ids(placement_order([reported, node("b", 3, updated_at=100.5)], recent)) == ["a", "b"]
