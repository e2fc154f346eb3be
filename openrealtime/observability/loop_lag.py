"""Event-loop lag: how late the server's event loop runs a callback that is due.

Everything a call does on the server (RTP out every 20 ms, packets in, data-channel events, HTTP
requests) is a callback on one event loop; while one callback runs, every other waits. A
`LoopLagProbe` keeps one timer armed (`loop.call_later(interval_s)`) and records, each time it
fires, how much later than due it ran: the wait any other callback would have had at that moment.
It is exposed as the histogram ``openrealtime_event_loop_lag_seconds`` on ``/metrics``; its p99 is
what the soak bench (bench/soak.py) reports. One timer callback every 50 ms costs nothing measurable.

The app's lifespan starts it on the serving loop and stops it at shutdown (`api/operator.py`).
"""

from __future__ import annotations

import asyncio

from prometheus_client import Histogram

INTERVAL_S = 0.05
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LoopLagProbe:
    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.seconds = Histogram("openrealtime_event_loop_lag_seconds",
                                 "How late the event loop ran a timer that was due (sampled every "
                                 f"{interval_s * 1000:.0f} ms): how long any callback (RTP, requests, events) "
                                 "waited at that moment.", buckets=LAG_BUCKETS, registry=None)
        self.samples = 0
        self.max_s = 0.0
        self._recent_max_s = 0.0  # since the last `take_recent_max_s` (the cluster heartbeat reports it)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Arm the probe on `loop` (default: the running loop). Starting twice is a no-op."""
        if self._handle is not None:
            return
        self._loop = loop or asyncio.get_running_loop()
        self._arm()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def take_recent_max_s(self) -> float:
        """The largest lag since the previous call (0.0 if no sample since)."""
        value, self._recent_max_s = self._recent_max_s, 0.0
        return value

    def _arm(self) -> None:
        due = self._loop.time() + self.interval_s
        self._handle = self._loop.call_at(due, self._tick, due)

    def _tick(self, due: float) -> None:
        # a timer may fire up to the loop's clock resolution early: that is no lag
        lag = max(0.0, self._loop.time() - due)
        self.samples += 1
        self.max_s = max(self.max_s, lag)
        self._recent_max_s = max(self._recent_max_s, lag)
        self.seconds.observe(lag)
        self._arm()
