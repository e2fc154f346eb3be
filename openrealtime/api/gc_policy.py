"""Python's cyclic garbage collector in a media server: cheap full collections, and a finished call freed soon.

Two things measured on this server (bench/soak.py and bench/README "Soak"):
1. A finished call is freed by the cyclic collector, not by reference counting: aiortc's peer connection,
   its transports and our call object are full of reference cycles. Until a full collection runs, each
   finished call keeps about 1 MB (DTLS and SRTP state, jitter buffers, audio it had queued). CPython runs
   a full collection only once the objects promoted since the last one reach a quarter of the long-lived
   heap, and the startup heap (modules, the app, the models' Python objects: ~100k objects) made that
   50+ calls here; RSS grew by that much garbage, and then stayed at its high-water mark.
2. A full collection walks every tracked object: 40-130 ms with the startup heap on a 2-core box, during
   which the event loop, and with it every call's audio, stands still.

`freeze_startup_heap()` (for `openrealtime serve`, once the app is built and before it serves) moves every
object alive then into the permanent generation (`gc.freeze`): later collections walk only what calls and
sessions created, about 1 ms for 6 live calls. Only a process that owns its heap should do this; an app
embedding the server keeps CPython's defaults.
`CollectAfterCalls` (registered on the call registry) then runs a full collection `delay_s` after calls
end, at most one per `min_interval_s`, so a finished call's memory is back within seconds. It only
collects in a process whose startup heap is frozen (elsewhere a full collection is the 40-130 ms pause).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

log = logging.getLogger(__name__)

COLLECT_DELAY_S = 1.0  # after a call ends (its teardown tasks finish first)
COLLECT_MIN_INTERVAL_S = 5.0


def freeze_startup_heap() -> int:
    """Collect once, then freeze everything alive into the permanent generation. Returns how many objects."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class CollectAfterCalls:
    """A `CallRegistry` listener: a full collection shortly after calls end (see the module docstring)."""

    def __init__(self, delay_s: float = COLLECT_DELAY_S, min_interval_s: float = COLLECT_MIN_INTERVAL_S) -> None:
        self.delay_s = delay_s
        self.min_interval_s = min_interval_s
        self.collections = 0
        self.freed = 0  # unreachable objects found, over all collections
        self._handle: asyncio.TimerHandle | None = None
        self._last = float("-inf")

    def __call__(self, what: str, call: Any) -> None:
        if what != "ended" or self._handle is not None or not gc.get_freeze_count():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a registry used outside the server): nothing to schedule
            return
        wait = max(self.delay_s, self._last + self.min_interval_s - time.monotonic())
        self._handle = loop.call_later(wait, self._collect)

    def _collect(self) -> None:
        self._handle = None
        self._last = time.monotonic()
        started = time.perf_counter()
        found = gc.collect()
        self.collections += 1
        self.freed += found
        log.debug("gc after calls ended: %d unreachable objects in %.1f ms", found,
                  (time.perf_counter() - started) * 1000)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
