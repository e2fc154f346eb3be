"""A data-channel peer's malformed SCTP messages cannot end its call (a hook into aiortc 1.16's SCTP).

aiortc's data-channel receive path raises on input the peer chooses: an AssertionError for a DCEP OPEN on a
stream that is already open (or an ACK for one that is not, or an INIT bundled with other chunks), a
UnicodeDecodeError for a label, protocol or string message that is not UTF-8 (found by fuzzing, tests/fuzz).
The exception climbs to ``RTCDtlsTransport``'s receive loop and ends it, and with it the whole call: audio,
video and every data channel. :func:`install` wraps ``RTCSctpTransport._data_channel_receive`` so that such a
user message is dropped, and ``RTCSctpTransport._handle_data`` so that such a packet is dropped; the
association goes on. The first drop on an association is logged with its traceback (a bug of ours in a
message handler shows up there too), then every 100th.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from aiortc.rtcsctptransport import RTCSctpTransport

log = logging.getLogger(__name__)

_MARKERS = {
    "_data_channel_receive": ("assert stream_id not in self._data_channels", '.decode("utf8")'),
    "_handle_data": ("parse_packet(data)", "await self._receive_chunk(chunk)"),
}
_ORIGINALS: dict[str, Any] = {}


def _dropped(transport: RTCSctpTransport, what: str, exc: Exception) -> None:
    count = transport.__dict__.get("_or_dropped", 0) + 1
    transport._or_dropped = count
    transport._or_dropped_last = f"{what}: {type(exc).__name__}: {exc}"
    if count == 1 or count % 100 == 0:
        log.warning("dropped an SCTP %s the data-channel receive path failed on (%d on this association)",
                    what, count, exc_info=exc)


async def _data_channel_receive(self: RTCSctpTransport, stream_id: int, pp_id: int, data: bytes) -> None:
    try:
        await _ORIGINALS["_data_channel_receive"](self, stream_id, pp_id, data)
    except Exception as exc:  # noqa: BLE001 - see the module docstring
        _dropped(self, f"message (stream {stream_id}, ppid {pp_id})", exc)


async def _handle_data(self: RTCSctpTransport, data: bytes) -> None:
    try:
        await _ORIGINALS["_handle_data"](self, data)
    except Exception as exc:  # noqa: BLE001 - see the module docstring
        _dropped(self, "packet", exc)


def installed() -> bool:
    return bool(_ORIGINALS)


def install() -> None:
    """Wrap the two methods (idempotent, process-wide). Raises RuntimeError if aiortc is not what they fit."""
    if installed():
        return
    for name, markers in _MARKERS.items():
        source = inspect.getsource(getattr(RTCSctpTransport, name))
        missing = [m for m in markers if m not in source]
        if missing:
            raise RuntimeError(f"openrealtime's SCTP guard does not fit this aiortc: {name} lacks {missing}")
    for name, wrapper in (("_data_channel_receive", _data_channel_receive), ("_handle_data", _handle_data)):
        _ORIGINALS[name] = getattr(RTCSctpTransport, name)
        setattr(RTCSctpTransport, name, wrapper)
