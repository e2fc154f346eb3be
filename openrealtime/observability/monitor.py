"""Watching live calls for operators: recent events, per-type counters, RTP stats, latencies.

`CallMonitor` hooks each call as the registry adds it (``CallRegistry.listeners``):

* the session's event bus (typed server events out; session/events.py) and the data channel's
  inbound observers (client messages in) feed a
  bounded deque of the last events (``GET /v1/realtime/calls/{id}``), event and error counters,
  and the voice-to-voice latency: ``input_audio_buffer.speech_stopped`` is emitted the moment
  the engine decides the user's turn ended and ``output_audio_buffer.started`` the moment the
  first frame of the answer is handed to the RTP sender, so the time between them is measured
  on the server's clock without touching the engine;
* the peer connection's state change gives the setup time (POST received → ICE+DTLS connected);
* RTP counters come from ``pc.getStats()`` (a SIP call: its RTP leg's own counters), refreshed when /metrics or the calls API is read,
  and are folded into running totals when a call ends so that counters never go backwards.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Histogram

from ..media.aiortc_patches.internals import ice_connection, nominated_pair, on_rtcp_sent, transceiver_codecs
from ..protocol.json_limits import loads as loads_limited

log = logging.getLogger("openrealtime.monitor")

RECENT_EVENTS = 50
PARSE_LIMIT = 64 * 1024  # bigger messages are counted by a cheap type sniff, not parsed
LONG_STRING = 512  # strings longer than this (data URLs, base64 audio) are shortened in the event view
MAX_LABELS = 200  # distinct event types / error codes before new ones count as "other"
_TYPE_RE = re.compile(r'"type"\s*:\s*"([A-Za-z0-9_.\-]{1,80})"')
_LABEL_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,80}$")

SETUP_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 15.0)
V2V_BUCKETS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)

# aiortc getStats() fields → our counter keys; per kind (audio/video)
RTP_KEYS = ("packets_in", "packets_out", "bytes_out", "lost_in", "lost_out")
TRANSPORT_KEYS = ("bytes_in", "bytes_out", "packets_in", "packets_out")


def _shorten(value: Any) -> Any:
    """An event for the calls API: long strings cut, credentials (MCP tools' `authorization` and
    `headers` values, in any event a client sends) replaced by "[redacted]"."""
    if isinstance(value, str):
        if len(value) > LONG_STRING:
            return f"{value[:64]}…({len(value)} chars)"
        return value
    if isinstance(value, dict):
        return {k: _redacted(k, v) if isinstance(k, str) and k.lower() in _SECRET_KEYS else _shorten(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_shorten(v) for v in value]
    return value


_SECRET_KEYS = frozenset({"authorization", "headers"})


def _redacted(key: str, value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "[redacted]" for k in value}
    return "[redacted]" if value else value


def empty_rtp() -> dict[str, Any]:
    return {"audio": dict.fromkeys(RTP_KEYS, 0), "video": dict.fromkeys(RTP_KEYS, 0),
            "transport": dict.fromkeys(TRANSPORT_KEYS, 0), "rtt_s": None, "jitter_in_ms": None}


def summarize_stats(report: Any) -> dict[str, Any]:
    """An aiortc RTCStatsReport → cumulative counters per kind (+ last RTT / jitter)."""
    out = empty_rtp()
    seen_transports: set[str] = set()
    for stat in report.values():
        kind = getattr(stat, "kind", None)
        row = out.get(kind) if kind in ("audio", "video") else None
        typ = stat.type
        if typ == "inbound-rtp" and row is not None:
            row["packets_in"] += stat.packetsReceived
            row["lost_in"] += max(0, stat.packetsLost)
            if kind == "audio" and stat.jitter is not None:
                out["jitter_in_ms"] = round(stat.jitter / 48, 1)  # RTP timestamp units of Opus' 48 kHz clock
        elif typ == "outbound-rtp" and row is not None:
            row["packets_out"] += stat.packetsSent
            row["bytes_out"] += stat.bytesSent
        elif typ == "remote-inbound-rtp" and row is not None:
            row["lost_out"] += max(0, stat.packetsLost)
            if stat.roundTripTime is not None:
                out["rtt_s"] = stat.roundTripTime
        elif typ == "transport" and stat.id not in seen_transports:
            seen_transports.add(stat.id)
            t = out["transport"]
            t["bytes_in"] += stat.bytesReceived
            t["bytes_out"] += stat.bytesSent
            t["packets_in"] += stat.packetsReceived
            t["packets_out"] += stat.packetsSent
    return out


def _add_rtp(total: dict[str, Any], part: dict[str, Any], sign: int = 1) -> None:
    for section in ("audio", "video", "transport"):
        for key, value in part[section].items():
            total[section][key] = total[section].get(key, 0) + sign * value


def _diff_rtp(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    out = empty_rtp()
    for section in ("audio", "video", "transport"):
        for key in out[section]:
            out[section][key] = max(0, new[section].get(key, 0) - old[section].get(key, 0))
    return out


def sip_rtp(call: Any) -> dict[str, Any]:
    """A SIP call's RTP leg counters (sip/rtp.py) in the shape of `summarize_stats`."""
    leg = call.media_stats()
    out = empty_rtp()
    out["audio"].update({k: leg[k] for k in ("packets_in", "packets_out", "bytes_out", "lost_in")})
    out["transport"].update({k: leg[k] for k in TRANSPORT_KEYS})
    out["jitter_in_ms"] = leg["jitter_in_ms"]
    return out


def selected_pair(call: Any) -> dict[str, Any] | None:
    """The nominated ICE candidate pair: local/remote address, port, protocol and type."""
    pair = nominated_pair(ice_connection(call.pc))
    if pair is None:
        return None
    local, remote = pair.local_candidate, pair.remote_candidate
    return {
        "protocol": remote.transport.lower(),
        "local": {"address": local.host, "port": local.port, "type": local.type,
                  "tcptype": getattr(local, "tcptype", None)},
        "remote": {"address": remote.host, "port": remote.port, "type": remote.type,
                   "tcptype": getattr(remote, "tcptype", None)},
    }


def negotiated_codecs(call: Any) -> dict[str, Any]:
    """Per media kind: the codec we send/decode (the first negotiated non-RTX codec)."""
    out: dict[str, Any] = {}
    for transceiver in call.pc.getTransceivers():
        codecs = [c for c in transceiver_codecs(transceiver) if not c.mimeType.lower().endswith("/rtx")]
        if not codecs:
            continue
        c = codecs[0]
        params = ";".join(f"{k}={v}" for k, v in (c.parameters or {}).items())
        out[transceiver.kind] = {
            "mime_type": c.mimeType, "clock_rate": c.clockRate, "channels": c.channels,
            "payload_type": c.payloadType, "fmtp": params or None,
            "direction": transceiver.currentDirection or transceiver.direction,
        }
    return out


@dataclass
class CallWatch:
    call: Any
    events: collections.deque = field(default_factory=lambda: collections.deque(maxlen=RECENT_EVENTS))
    rtp: dict[str, Any] | None = None  # latest summarize_stats()
    rtp_at: float | None = None
    turn_ended_at: float | None = None
    setup_s: float | None = None
    voice_to_voice_s: list[float] = field(default_factory=list)
    nacks_sent: int = 0


class CallMonitor:
    """One per server (app): attaches to calls, owns the per-call watches and ended-call totals."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self.watches: dict[str, CallWatch] = {}
        self.events_total: collections.Counter[tuple[str, str]] = collections.Counter()
        self.errors_total: collections.Counter[str] = collections.Counter()
        self.ended_rtp = empty_rtp()
        self.ended_counters: collections.Counter[str] = collections.Counter()
        self.setup_seconds = Histogram("openrealtime_call_setup_seconds",
                                       "Time from POST /v1/realtime/calls to the peer connection being connected "
                                       "(ICE + DTLS).", buckets=SETUP_BUCKETS, registry=None)
        self.voice_to_voice_seconds = Histogram(
            "openrealtime_voice_to_voice_seconds",
            "Server-side voice-to-voice latency: from input_audio_buffer.speech_stopped (the end-of-turn "
            "decision, made silence_duration_ms after the last speech) to the first audio frame of the answer "
            "handed to the RTP sender.", buckets=V2V_BUCKETS, registry=None)
        self._label_types: set[str] = set()
        self._label_codes: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        registry.listeners.append(self._on_registry)
        for call in registry.all():
            self.attach(call)

    # ---- registry hooks -----------------------------------------------------------------------
    def _on_registry(self, what: str, call: Any) -> None:
        try:
            if what == "added":
                self.attach(call)
            elif what == "ended":
                self.detach(call)
        except Exception:  # monitoring must never break a call
            log.exception("call monitor failed on %s of %s", what, getattr(call, "id", "?"))

    def attach(self, call: Any) -> None:
        if call.id in self.watches:
            return
        watch = CallWatch(call)
        self.watches[call.id] = watch
        call.engine.events.subscribe(lambda event, text, w=watch: self._sent(w, event, text))
        inbound = getattr(call.transport, "inbound_observers", None)
        if inbound is not None:
            inbound.append(lambda message, w=watch: self._event(w, "in", message))
        pc = getattr(call, "pc", None)  # None: a SIP call (sip/call.py), registered once answered
        if call.stats.connected_at is not None:
            self._connected(watch)
        elif pc is not None:
            pc.on("connectionstatechange", lambda w=watch: self._on_pc_state(w))
        for transceiver in pc.getTransceivers() if pc is not None else ():
            if transceiver.kind == "video":
                on_rtcp_sent(transceiver.receiver, "nack", lambda w=watch: self._count_nack(w))

    def detach(self, call: Any) -> None:
        watch = self.watches.pop(call.id, None)
        if watch is None:
            return
        last = watch.rtp or empty_rtp()
        _add_rtp(self.ended_rtp, last)  # synchronously: totals never dip between scrapes
        for key, value in self._frame_counters(call).items():
            self.ended_counters[key] += value
        self.ended_counters["nacks_sent"] += watch.nacks_sent
        if getattr(call, "pc", None) is None:
            _add_rtp(self.ended_rtp, _diff_rtp(sip_rtp(call), last))
            return
        task = asyncio.ensure_future(self._final_stats(call, last))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _final_stats(self, call: Any, last: dict[str, Any]) -> None:
        try:
            final = summarize_stats(await asyncio.wait_for(call.pc.getStats(), 1.0))
        except Exception:
            return
        _add_rtp(self.ended_rtp, _diff_rtp(final, last))

    # ---- observers ----------------------------------------------------------------------------
    def _label(self, value: str | None, seen: set[str]) -> str:
        if not value or not _LABEL_RE.match(value):
            return "invalid"
        if value in seen:
            return value
        if len(seen) >= MAX_LABELS:
            return "other"
        seen.add(value)
        return value

    def _event(self, watch: CallWatch, direction: str, message: str | bytes) -> None:
        try:
            self._record(watch, direction, message)
        except Exception:  # never let monitoring break the data channel
            log.exception("call monitor could not record an event")

    def _sent(self, watch: CallWatch, event: Any, text: str) -> None:
        """A server event the session published (typed: nothing is parsed back)."""
        etype = event.type
        label = self._label(etype, self._label_types)
        self.events_total[("out", label)] += 1
        if etype == "error":
            self.errors_total[self._label(event.error.code or event.error.type, self._label_codes)] += 1
        elif etype == "input_audio_buffer.speech_stopped":
            watch.turn_ended_at = time.monotonic()
        elif etype == "output_audio_buffer.started" and watch.turn_ended_at is not None:
            latency = time.monotonic() - watch.turn_ended_at
            watch.turn_ended_at = None
            watch.voice_to_voice_s.append(latency)
            del watch.voice_to_voice_s[:-20]
            self.voice_to_voice_seconds.observe(latency)
        watch.events.append({
            "ts": round(time.time(), 3), "direction": "out", "type": etype, "bytes": len(text),
            "event": _shorten(event.model_dump(mode="json")) if len(text) <= PARSE_LIMIT else None,
        })

    def _record(self, watch: CallWatch, direction: str, message: str | bytes) -> None:
        """A client message as it arrived (it may be anything: parsed within limits)."""
        now = time.time()
        size = len(message)
        parsed: Any = None
        if size <= PARSE_LIMIT:
            try:
                parsed = loads_limited(message)
            except ValueError:  # not JSON, or nested too deep (JsonTooDeep)
                parsed = None
        if isinstance(parsed, dict):
            etype = parsed.get("type") if isinstance(parsed.get("type"), str) else None
        else:
            text = message[:4096] if isinstance(message, str) else message[:4096].decode("utf-8", "replace")
            m = _TYPE_RE.search(text)
            etype = m.group(1) if m else None
            parsed = None
        label = self._label(etype, self._label_types)
        self.events_total[(direction, label)] += 1
        watch.events.append({
            "ts": round(now, 3), "direction": direction, "type": etype, "bytes": size,
            "event": _shorten(parsed) if isinstance(parsed, dict) else None,
        })

    def _on_pc_state(self, watch: CallWatch) -> None:
        if watch.call.pc.connectionState == "connected" and watch.setup_s is None:
            self._connected(watch)

    def _connected(self, watch: CallWatch) -> None:
        connected = watch.call.stats.connected_at or time.monotonic()
        watch.setup_s = max(0.0, connected - watch.call.stats.created)
        self.setup_seconds.observe(watch.setup_s)

    @staticmethod
    def _count_nack(watch: CallWatch) -> None:
        watch.nacks_sent += 1

    # ---- reading --------------------------------------------------------------------------------
    async def refresh(self, timeout: float = 2.0) -> None:
        """Refresh every live call's RTP counters (called by /metrics and the calls API)."""
        for watch in [w for w in self.watches.values() if getattr(w.call, "pc", None) is None]:
            watch.rtp, watch.rtp_at = sip_rtp(watch.call), time.time()  # SIP: the RTP leg's own counters
        watches = [w for w in self.watches.values() if getattr(w.call, "pc", None) is not None]
        if not watches:
            return
        results = await asyncio.gather(*(asyncio.wait_for(w.call.pc.getStats(), timeout) for w in watches),
                                       return_exceptions=True)
        for watch, result in zip(watches, results):
            if isinstance(result, BaseException):
                continue
            try:
                summary = summarize_stats(result)
            except Exception:
                log.exception("could not summarize stats of %s", watch.call.id)
                continue
            if watch.call.id in self.watches:  # not ended meanwhile (else totals were folded)
                watch.rtp = summary
                watch.rtp_at = time.time()

    @staticmethod
    def _frame_counters(call: Any) -> dict[str, int]:
        out = {"audio_frames_out": call.audio_out.frames_sent, "audio_late_frames": call.audio_out.late_frames,
               "audio_frames_in": call.inbound.frames if call.inbound is not None else 0,
               "audio_voiced_frames_in": call.inbound.voiced_frames if call.inbound is not None else 0,
               "plis_sent": 0, "video_frames_decoded": 0, "video_snapshots": 0}
        video = call.video
        if video is not None:
            c = video.counters()
            out["plis_sent"] = c.get("plis_total", 0)
            out["video_frames_decoded"] = c.get("frames_decoded", 0)
            out["video_snapshots"] = c.get("snapshots", 0)
        return out

    def totals(self) -> tuple[dict[str, Any], collections.Counter[str]]:
        """(RTP totals, frame/RTCP counters) over ended and live calls."""
        rtp = empty_rtp()
        _add_rtp(rtp, self.ended_rtp)
        counters = collections.Counter(self.ended_counters)
        for watch in list(self.watches.values()):
            if watch.rtp is not None:
                _add_rtp(rtp, watch.rtp)
            for key, value in self._frame_counters(watch.call).items():
                counters[key] += value
            counters["nacks_sent"] += watch.nacks_sent
        return rtp, counters

    # ---- the calls API ------------------------------------------------------------------------
    def describe(self, call: Any, *, events: bool = False) -> dict[str, Any]:
        watch = self.watches.get(call.id)
        now_mono, now = time.monotonic(), time.time()
        engine = call.engine
        config = getattr(engine, "config", None)
        out: dict[str, Any] = {
            "id": call.id,
            "object": "realtime.call",
            "state": call.state,
            "created_at": round(now - (now_mono - call.stats.created), 3),
            "duration_s": round(call.duration_s, 3),
            "setup_ms": round(watch.setup_s * 1000) if watch and watch.setup_s is not None else None,
            "transport": getattr(call, "transport_kind", "webrtc"),  # webrtc | sip
            "client": call.client,
            "selected_candidate_pair": _safe(selected_pair, call) if getattr(call, "pc", None) is not None else None,
            "codecs": (_safe(negotiated_codecs, call) if getattr(call, "pc", None) is not None
                       else call.describe_codecs()) or {},
            "session": {"id": getattr(engine, "id", None), "type": getattr(config, "type", None),
                        "model": getattr(config, "model", None)},
            "events": {"in": call.transport.events_in, "out": call.transport.events_out},
            "audio": self._frame_counters(call),
            "video": call.video.counters() if call.video is not None else None,
            "rtp": watch.rtp if watch else None,
            "voice_to_voice_ms": [round(v * 1000) for v in watch.voice_to_voice_s] if watch else [],
            "engine": dict(getattr(engine, "stats", {}) or {}),
        }
        if events:
            out["recent_events"] = list(watch.events) if watch else []
        return out


def _safe(fn: Any, call: Any) -> Any:
    try:
        return fn(call)
    except Exception:
        log.debug("could not read %s of %s", getattr(fn, "__name__", fn), call.id, exc_info=True)
        return None
