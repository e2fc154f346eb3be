"""onnxruntime session construction shared by the local engines."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def make_session(path: str | Path, *, threads: int):
    """A CPU InferenceSession with `threads` intra-op threads and quiet logging."""
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - onnxruntime is a core dependency
        raise RuntimeError("onnxruntime is required for the local models:  pip install onnxruntime") from exc
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # Worker threads sleep between operators instead of spinning: the cores are shared with
    # llama.cpp and CTranslate2 (measured: same speed for Piper with 2 threads, no busy cores).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
