"""Caller key presses: RFC 4733 telephone-event packets, and SIP INFO (application/dtmf-relay, application/dtmf).

An RFC 4733 event is one key press identified by its RTP timestamp: it is reported once, when its
first end packet arrives (the two redundant end packets and any late packet of it are ignored); if
every end packet is lost, it is reported when the next event begins or after `END_TIMEOUT_S` with no
packet of it. Events 0-15 are keys (`0`-`9`, `*`, `#`, `A`-`D`); flash (16) and tones are ignored.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable

KEYS = "0123456789*#ABCD"
END_TIMEOUT_S = 1.0
_RECENT = 16
_DTMF_RELAY = re.compile(r"(?im)^\s*signal\s*=\s*([0-9*#A-Da-d])\s*$")
_DTMF_BODY = re.compile(r"^\s*([0-9*#A-Da-d])\s*$")


class DtmfReceiver:
    def __init__(self, on_key: Callable[[str], None]) -> None:
        self._on_key = on_key
        self._pending: tuple[int, int, float] | None = None  # (event, timestamp, last packet time)
        self._reported: collections.deque[int] = collections.deque(maxlen=_RECENT)
        self.keys = 0

    def packet(self, payload: bytes, timestamp: int, now: float) -> None:
        if len(payload) < 4:
            return
        event, end = payload[0], bool(payload[1] & 0x80)
        if timestamp in self._reported:
            return  # a redundant end packet, or a late packet of a press already reported
        if self._pending is not None and self._pending[1] != timestamp:
            self._report(*self._pending[:2])  # its end packets never came
        if event >= len(KEYS):
            self._pending = None
            return
        if end:
            self._report(event, timestamp)
        else:
            self._pending = (event, timestamp, now)

    def tick(self, now: float) -> None:
        if self._pending is not None and now - self._pending[2] > END_TIMEOUT_S:
            self._report(*self._pending[:2])

    def _report(self, event: int, timestamp: int) -> None:
        self._pending = None
        self._reported.append(timestamp)
        if event < len(KEYS):
            self.keys += 1
            self._on_key(KEYS[event])


def info_key(content_type: str, body: bytes) -> str | None:
    """The key of a SIP INFO body (`application/dtmf-relay`: `Signal=5`; `application/dtmf`: `5`), if any."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if content_type == "application/dtmf-relay":
        m = _DTMF_RELAY.search(text)
    elif content_type == "application/dtmf":
        m = _DTMF_BODY.match(text)
    else:
        return None
    return m.group(1).upper() if m else None
