"""Admission of new conversations on this node: beyond what its models can answer at a stated latency,
a new call or WebSocket session gets 429 `too_many_conversations` with `Retry-After` instead of every
conversation slowing down.

The limit (`--max-conversations`): a number, 0 for none, or `auto` (the default): with the in-process
language model, the replies it decodes at once (the `max_concurrency` it declares: `--llm-parallel`, 4 by
default; what a 2-core machine holds is in README "Many conversations on one box"); with a remote
language model (`--llm-url`) or the echo engine, none
(`--max-calls` still applies). Conversations are counted as live calls plus direct WebSocket sessions
(`ServerState.live_sessions`); a sideband is part of its call.

Beside it, the shared model pools (`--llm-max-sessions`, `--stt-max-sessions`, `--tts-max-sessions`;
cluster/model_pools.py): sessions at once per model stage across every node of the cluster, with
leases in the cluster store. A new session beyond one gets 429 `model_capacity_exceeded`
(`model_capacity_refusal`), through `ServiceHealth.seat` (the authoritative lease) and
`ServiceHealth.admission_error` (the pools' counts as last seen, for admission that cannot wait).
"""

from __future__ import annotations

from typing import Any

from ..cluster.model_pools import MODEL_STAGES, PoolFull
from .errors import ApiError

RETRY_AFTER_S = 5  # a conversation lasts minutes; a few seconds is when a caller may try again


def conversation_limit(max_conversations: int | None, engine: str, models: Any) -> int | None:
    """The most conversations this node takes at once (None: no limit). `max_conversations`: the setting
    (None: auto, 0: none)."""
    if max_conversations is not None:
        return max_conversations or None
    if engine != "local" or models is None or "llm" in (getattr(models, "remote", None) or {}):
        return None
    declared = getattr(getattr(models, "llm", None), "max_concurrency", None)  # scripted test models: none
    return max(1, int(declared)) if declared else None


def conversation_refusal(limit: int | None, live: int) -> ApiError | None:
    """The 429 a new conversation gets with `live` conversations up, or None when it is admitted."""
    if limit is None or live < limit:
        return None
    return ApiError(429, f"This server holds {limit} conversations at once with its local models (more would slow "
                         f"every conversation down); retry in a few seconds, or raise --max-conversations.",
                    code="too_many_conversations", type="rate_limit_exceeded",
                    headers={"Retry-After": str(RETRY_AFTER_S)})


def admission_refusal(state: Any) -> ApiError | None:
    """For a new call or WebSocket session on this server (`api.state.ServerState`): the 429, or None."""
    settings = state.settings
    limit = conversation_limit(settings.max_conversations, settings.engine, state.models)
    return conversation_refusal(limit, state.live_sessions())


STAGE_NAMES = {"llm": "language model", "stt": "speech-to-text", "tts": "text-to-speech"}


def pool_limits(settings: Any) -> dict[str, int]:
    """The model pools' limits from the settings (`--llm-max-sessions` …); a stage without one is unlimited."""
    limits = {stage: getattr(settings, f"{stage}_max_sessions", None) for stage in MODEL_STAGES}
    return {stage: n for stage, n in limits.items() if n}


def session_stages(config: Any) -> tuple[str, ...]:
    """The model stages a session takes a lease in: a transcription session only speech-to-text; any other
    (realtime, translation) all three, since its output may turn to audio at any `session.update`."""
    return ("stt",) if getattr(config, "type", None) == "transcription" else MODEL_STAGES


def model_capacity_refusal(full: PoolFull) -> ApiError:
    """The 429 a new session gets while the cluster's pool of `full.stage` holds its limit of sessions."""
    flag = f"--{full.stage}-max-sessions"
    return ApiError(429, f"The shared {STAGE_NAMES[full.stage]} servers are at their limit of {full.limit} sessions "
                         f"at once across the cluster ({flag}); retry in a few seconds.",
                    code="model_capacity_exceeded", type="rate_limit_exceeded",
                    headers={"Retry-After": str(RETRY_AFTER_S)})
