"""Prometheus metrics for `GET /metrics`, collected at scrape time from live objects.

Almost nothing is counted on the hot path: a custom Collector reads the call registry, the
per-call monitor (`observability.monitor.CallMonitor`), the ICE mux counters and the inference
pools when Prometheus scrapes. The exceptions are histograms, which need each observation:
call setup and voice-to-voice latency (observed by the monitor from call events) and model
stage latencies, observed by the server's `Runtime` (runtime.py) through `observe_stage()`:

    vad         one batch of VAD frames (Runtime.run)
    asr         one transcription (Runtime.run)
    llm_first   time to the first LLM token (Runtime.stream), queueing included
    tts_first   time to a clause's first synthesized audio (Runtime.stream), queueing included
    llm, tts    whole `Runtime.run` calls of those stages, if any

Metric names (all prefixed ``openrealtime_``): calls_active{state}, calls_ended_total{reason},
call_setup_seconds, voice_to_voice_seconds, model_stage_seconds{stage},
inference_queue_depth{stage}, rtp_packets_total{direction,kind}, rtp_bytes_total{direction,kind}
(out only: aiortc has no inbound byte counter per stream), rtp_packets_lost_total{direction,kind},
transport_bytes_total{direction}, transport_packets_total{direction},
audio_frames_total{direction}, audio_late_frames_total, rtcp_nacks_sent_total,
rtcp_plis_sent_total, video_frames_decoded_total, video_snapshots_total,
datachannel_events_total{direction,type}, errors_total{code}, ice_mux_events_total{event},
event_loop_lag_seconds (observability.loop_lag), ready, draining, uptime_seconds,
noise_reduction_streams, noise_reduction_{refused,audio_seconds,cpu_seconds,bypassed_seconds}_total;
and prometheus_client's process_* and python_gc_* families.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)

# process-wide: the inference pools are shared by every server in the process
MODEL_STAGE_SECONDS = Histogram("openrealtime_model_stage_seconds",
                                "Model stage latency: vad (one batch), asr (one transcription), llm_first (time to "
                                "first token), tts_first (time to a clause's first audio); queueing included.",
                                ["stage"], buckets=STAGE_BUCKETS, registry=None)


def observe_stage(stage: str, seconds: float) -> None:
    """Called by `Runtime` for every inference call (cheap; never raises)."""
    try:
        MODEL_STAGE_SECONDS.labels(stage).observe(seconds)
    except Exception:  # pragma: no cover - metrics must never break inference
        pass


class ServerCollector:
    """Everything about one server (ServerState + CallMonitor), read at scrape time."""

    def __init__(self, state: Any, monitor: Any, loop_lag: Any = None) -> None:
        self.state = state
        self.monitor = monitor
        self.loop_lag = loop_lag

    def describe(self) -> list:
        return []  # no up-front description: collect() is only run at scrape time

    def collect(self):
        state, monitor = self.state, self.monitor
        yield _gauge("openrealtime_ready", "1 while GET /readyz answers 200 (models loaded, backends answering, "
                     "not draining).", [([], 1.0 if state.health.reason() is None else 0.0)])
        yield _gauge("openrealtime_draining", "1 once a SIGTERM/SIGINT started the graceful drain.",
                     [([], 1.0 if state.health.draining else 0.0)])
        yield _gauge("openrealtime_uptime_seconds", "Seconds since the server started.",
                     [([], time.time() - state.started_at)])

        by_state: dict[str, int] = {"new": 0, "connecting": 0, "connected": 0, "closed": 0}
        for call in state.calls.all():
            by_state[call.state] = by_state.get(call.state, 0) + 1
        yield _gauge("openrealtime_calls_active", "Live calls by state.",
                     [([s], float(n)) for s, n in sorted(by_state.items())], ["state"])
        yield _counter("openrealtime_calls_ended", "Calls ended, by reason.",
                       [([r], float(n)) for r, n in sorted(state.calls.ended_by_reason.items())], ["reason"])
        yield from monitor.setup_seconds.collect()
        yield from monitor.voice_to_voice_seconds.collect()
        if self.loop_lag is not None:
            yield from self.loop_lag.seconds.collect()
        yield from MODEL_STAGE_SECONDS.collect()

        depths = state.runtime.queue_depths()
        yield _gauge("openrealtime_inference_queue_depth",
                     "Inference work waiting for a model worker thread, per stage.",
                     [([s], float(depths.get(s, 0))) for s in ("vad", "asr", "llm", "tts", "turn", "denoise")],
                     ["stage"])
        yield from _noise_reduction(getattr(state.models, "denoise", None))

        rtp, counters = monitor.totals()
        kinds = ("audio", "video")
        yield _counter("openrealtime_rtp_packets", "RTP packets (aiortc stats; refreshed at scrape).",
                       [(["in", k], rtp[k]["packets_in"]) for k in kinds]
                       + [(["out", k], rtp[k]["packets_out"]) for k in kinds], ["direction", "kind"])
        yield _counter("openrealtime_rtp_bytes", "RTP payload bytes sent (aiortc has no inbound byte count per "
                       "stream; see transport_bytes).", [(["out", k], rtp[k]["bytes_out"]) for k in kinds],
                       ["direction", "kind"])
        yield _counter("openrealtime_rtp_packets_lost",
                       "RTP packets lost: in = we missed from the client; out = the client reported missing "
                       "(RTCP receiver reports).",
                       [(["in", k], rtp[k]["lost_in"]) for k in kinds]
                       + [(["out", k], rtp[k]["lost_out"]) for k in kinds], ["direction", "kind"])
        t = rtp["transport"]
        yield _counter("openrealtime_transport_bytes", "Bytes on the calls' DTLS transports (RTP, RTCP, SCTP).",
                       [(["in"], t["bytes_in"]), (["out"], t["bytes_out"])], ["direction"])
        yield _counter("openrealtime_transport_packets", "Packets on the calls' DTLS transports.",
                       [(["in"], t["packets_in"]), (["out"], t["packets_out"])], ["direction"])
        yield _counter("openrealtime_audio_frames", "20 ms audio frames: out = sent to clients (speech or "
                       "silence), in = decoded from clients.",
                       [(["in"], counters["audio_frames_in"]), (["out"], counters["audio_frames_out"])], ["direction"])
        yield _counter("openrealtime_audio_voiced_frames_in", "Inbound audio frames above -50 dBFS.",
                       [([], counters["audio_voiced_frames_in"])])
        yield _counter("openrealtime_audio_late_frames", "Outbound audio clock resyncs (the loop stalled > 200 ms).",
                       [([], counters["audio_late_frames"])])
        yield _counter("openrealtime_rtcp_nacks_sent", "RTCP NACKs sent for lost video packets.",
                       [([], counters["nacks_sent"])])
        yield _counter("openrealtime_rtcp_plis_sent", "RTCP PLIs (keyframe requests) sent for video.",
                       [([], counters["plis_sent"])])
        yield _counter("openrealtime_video_frames_decoded", "Video frames decoded.",
                       [([], counters["video_frames_decoded"])])
        yield _counter("openrealtime_video_snapshots", "JPEG stills encoded from video for the model.",
                       [([], counters["video_snapshots"])])

        yield _counter("openrealtime_datachannel_events", "Data-channel events by direction and type.",
                       [([d, t], float(n)) for (d, t), n in sorted(monitor.events_total.items())],
                       ["direction", "type"])
        yield _counter("openrealtime_errors", "Server `error` events sent to clients, by code.",
                       [([c], float(n)) for c, n in sorted(monitor.errors_total.items())], ["code"])

        mux = getattr(state, "mux", None)
        if mux is not None:
            fields = dataclasses.asdict(mux.stats)
            yield _counter("openrealtime_ice_mux_events", "Shared ICE port counters (datagrams, drops, streams).",
                           [([k], float(v)) for k, v in sorted(fields.items())], ["event"])


def _noise_reduction(suppressor: Any):
    """Input noise reduction's cost (the stack's NoiseSuppressor counts it), if the stack has one."""
    stats = suppressor.stats() if suppressor is not None and hasattr(suppressor, "stats") else None
    if not stats:
        return
    yield _gauge("openrealtime_noise_reduction_streams", "Sessions whose input goes through noise reduction.",
                 [([], stats["streams"])])
    yield _counter("openrealtime_noise_reduction_refused", "Sessions that asked for noise reduction while the "
                   "suppressor ran its maximum of streams, and ran without it.", [([], stats["streams_refused"])])
    yield _counter("openrealtime_noise_reduction_audio_seconds", "Input audio put through noise reduction.",
                   [([], stats["audio_seconds"])])
    yield _counter("openrealtime_noise_reduction_cpu_seconds", "CPU time noise reduction took (thread time).",
                   [([], stats["cpu_seconds"])])
    yield _counter("openrealtime_noise_reduction_bypassed_seconds", "Input audio passed on unprocessed because "
                   "noise reduction fell behind (its backlog is bounded).", [([], stats["bypassed_seconds"])])


def _gauge(name: str, doc: str, samples: list, labels: list[str] | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels or [])
    for values, value in samples:
        family.add_metric(values, float(value))
    return family


def _counter(name: str, doc: str, samples: list, labels: list[str] | None = None) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels or [])
    for values, value in samples:
        family.add_metric(values, float(value))
    return family


def build_registry(state: Any, monitor: Any, *, loop_lag: Any = None, process: bool = True) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(state, monitor, loop_lag))
    if process:
        from prometheus_client import GCCollector, ProcessCollector

        ProcessCollector(registry=registry)
        GCCollector(registry=registry)  # python_gc_collections_total / objects_collected, per generation
    return registry


async def render(registry: CollectorRegistry, monitor: Any) -> tuple[bytes, str]:
    """Refresh live RTP stats, then the text exposition and its content type."""
    await monitor.refresh()
    return generate_latest(registry), CONTENT_TYPE_LATEST
