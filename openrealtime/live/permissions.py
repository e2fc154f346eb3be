"""What an untrusted WebRTC frontend may send and receive on its data channel (`session.client.data_channel`).

`allowed_client_events`: `"all"` (or omitted) or a list of client event types; `allowed_server_events`:
`"all"` (or omitted) or a list of `{type, response_event?}` selectors, `response_event` naming a nested
Responses event type inside `response.event`. `[]` allows nothing. `error` and `info` always reach the
frontend (a refused command is answered). The trusted sideband is never restricted.
"""

from __future__ import annotations

from typing import Any

from ..protocol.live import DataChannelConfig

ALWAYS_SENT = frozenset({"error", "info"})


class DataChannelPermissions:
    def __init__(self, config: DataChannelConfig | None) -> None:
        self.config = config or DataChannelConfig()

    @property
    def restricted(self) -> bool:
        return self.config.allowed_client_events not in (None, "all") or \
            self.config.allowed_server_events not in (None, "all")

    def allows_client(self, event_type: str) -> bool:
        allowed = self.config.allowed_client_events
        return allowed is None or allowed == "all" or event_type in allowed

    def allows_server(self, event: Any) -> bool:
        allowed = self.config.allowed_server_events
        kind = getattr(event, "type", "")
        if allowed is None or allowed == "all" or kind in ALWAYS_SENT:
            return True
        nested = (getattr(event, "event", None) or {}).get("type") if kind == "response.event" else None
        return any(s.type == kind and (s.response_event is None or s.response_event == nested) for s in allowed)

    def notice(self) -> str:
        """The `info` message that says what applies."""
        def listed(value: Any, name: str) -> str:
            if value is None or value == "all":
                return f"all {name}"
            kinds = [v if isinstance(v, str) else v.type + (f"[{v.response_event}]" if v.response_event else "")
                     for v in value]
            return f"{name}: " + (", ".join(kinds) if kinds else "none")

        return ("This data channel is restricted by session.client.data_channel; it may send "
                f"{listed(self.config.allowed_client_events, 'client events')} and receives "
                f"{listed(self.config.allowed_server_events, 'server events')} (plus error and info).")
