"""Live calls by id, bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .call import RealtimeCall


class CallRegistry:
    def __init__(self, max_calls: int) -> None:
        self.max_calls = max_calls
        self._calls: dict[str, RealtimeCall] = {}
        self.ended_by_reason: dict[str, int] = {}
        self.listeners: list[Callable[[str, RealtimeCall], None]] = []  # ("added" | "ended", call), e.g. metrics

    def __len__(self) -> int:
        return len(self._calls)

    def full(self) -> bool:
        return len(self._calls) >= self.max_calls

    def add(self, call: RealtimeCall) -> None:
        self._calls[call.id] = call
        for listener in self.listeners:
            listener("added", call)

    def get(self, call_id: str) -> RealtimeCall | None:
        return self._calls.get(call_id)

    def discard(self, call: RealtimeCall) -> None:
        if self._calls.pop(call.id, None) is not None:
            reason = call.stats.end_reason or "unknown"
            self.ended_by_reason[reason] = self.ended_by_reason.get(reason, 0) + 1
            for listener in self.listeners:
                listener("ended", call)

    def all(self) -> list[RealtimeCall]:
        return list(self._calls.values())

    async def close_all(self, reason: str = "server_shutdown") -> None:
        tasks = [call.hangup(reason) for call in self.all()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
