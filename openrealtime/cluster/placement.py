"""Where a new call goes: the least-loaded live node that takes placements, ties at random.

A node takes placements when it is ready, not draining and below its `max_calls`. Its load is
`calls / max_calls` from its last heartbeat, plus the calls this node has placed on it since that
heartbeat was written (`RecentPlacements`), so that a burst of POSTs between two heartbeats is spread
instead of all landing on the node that looked emptiest. The receiving node gets no preference: it
is one of the candidates like any other (a caller that answers locally when it comes first).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable

from .store import NodeRecord

RECENT_WINDOW_S = 10.0  # placements older than this are forgotten (heartbeats come every few seconds)


class RecentPlacements:
    """Calls this node placed on each node, by wall-clock time, until that node's next heartbeat
    reports them."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._placed: dict[str, list[float]] = {}

    def note(self, node_id: str) -> None:
        self._placed.setdefault(node_id, []).append(self._clock())

    def since(self, node: NodeRecord) -> int:
        """Placements on `node` after its record was written (not in its `calls` yet)."""
        horizon = max(node.updated_at, self._clock() - RECENT_WINDOW_S)
        times = [t for t in self._placed.get(node.node_id, ()) if t > horizon]
        if times:
            self._placed[node.node_id] = times
        else:
            self._placed.pop(node.node_id, None)
        return len(times)


def takes_placements(node: NodeRecord, pending: int = 0) -> bool:
    return node.ready and not node.draining and node.calls + pending < node.max_calls


def placement_order(nodes: Iterable[NodeRecord], recent: RecentPlacements | None = None,
                    rng: random.Random | None = None) -> list[NodeRecord]:
    """The nodes that take placements, least loaded first; nodes equally loaded in random order."""
    rng = rng or random.Random()
    scored = []
    for node in nodes:
        pending = recent.since(node) if recent is not None else 0
        if takes_placements(node, pending):
            scored.append(((node.calls + pending) / max(node.max_calls, 1), rng.random(), node))
    scored.sort(key=lambda item: item[:2])
    return [node for _, _, node in scored]
