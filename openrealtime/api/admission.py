"""Admission of new conversations on this node: beyond what its models can answer at a stated latency,
a new call or WebSocket session gets 429 `too_many_conversations` with `Retry-After` instead of every
conversation slowing down.

The limit (`--max-conversations`): a number, 0 for none, or `auto` (the default): with the in-process
language model, the replies it decodes at once (the `max_concurrency` it declares, 4 for the local
profiles: on a
2-core machine 4 talkers at the same moment still get their first audio within ≈ 2× one talker's time,
bench/README.md "concurrency"); with a remote language model (`--llm-url`) or the echo engine, none
(`--max-calls` still applies). Conversations are counted as live calls plus direct WebSocket sessions
(`ServerState.live_sessions`); a sideband is part of its call.

This is local and simple on purpose: the cluster's model-pool admission (leases in cluster/store.py)
can take its place behind `admission_refusal`, the one function the routes call.
"""

from __future__ import annotations

from typing import Any

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
