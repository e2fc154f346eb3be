"""The session's outgoing events, typed, on one small bus.

The engine publishes each server event once; the bus encodes it once (the JSON text that goes on
the wire) and hands both to its listeners in order: first the session's transport, then whoever
watches the call (the call monitor, sideband WebSockets). Listeners read the typed event; none
re-parses the JSON. A listener that fails is logged and skipped: watching a call never breaks it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from ..protocol.server_events import ServerEventBase, to_json

log = logging.getLogger(__name__)

Listener = Callable[[ServerEventBase, str], None]  # (event, its JSON text)


class EventBus:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add a listener; returns the call that removes it."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    def publish(self, event: ServerEventBase) -> None:
        text = to_json(event)
        for listener in list(self._listeners):
            try:
                listener(event, text)
            except Exception:  # noqa: BLE001 - one listener's failure never reaches the session or the others
                log.exception("event listener failed on %s", getattr(event, "type", "?"))
