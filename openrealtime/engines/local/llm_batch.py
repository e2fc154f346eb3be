"""Batched decoding for the in-process language model: every live turn in one llama.cpp batch.

One decoder thread owns the llama context (engines/local/llama_kv.py or a test double with the same
methods, `BatchModel`). Replies (`generate` jobs) and warm-ups (`prefill` jobs) are submitted from
any thread; each step the decoder puts into one `llama_decode`
- the next token of every reply that is writing (its sampled token, evaluated for the next one),
- chunks of the prompts that are still being evaluated,
and each reply samples its next token from its own row of logits with its own sampler.

Scheduling (what a step holds), so each turn's first words come soon without stalling the others:
- a reply's first `URGENT_TOKENS` tokens (its first clause: what its user waits for) go first: while
  any reply is that young, new prompts wait (`PROMPT_CHUNK_URGENT` tokens per step) and replies that
  are already speaking (their text is far ahead of the speech) get a token only every
  `BACKGROUND_EVERY` steps — never fewer. A prompt waits at most `URGENT_TOKENS` steps per reply
  ahead of it;
- otherwise prompts are evaluated in arrival order, `PROMPT_CHUNK` tokens per step while other
  replies are writing (a step then costs ≈ 0.25 s on 2 cores with the 1.5B model), `PROMPT_CHUNK_ALONE`
  while nothing else runs; a step that evaluates a prompt holds every writing reply's next token too;
- warm-ups (a user still speaking) come last, `PREFILL_CHUNK` tokens per step each, only while no
  reply is in its first clause or its prompt; a reply of the same session supersedes its warm-up.
On a CPU the work is compute-bound (a step of k sequences costs about k × 0.8 of one: 32, 54, 77 ms
for 1, 2, 3 with the 1.5B model on 2 cores), so sharing the cores evenly between turns that arrive
together delays them all; finishing one turn's first clause before the next turn's prompt gives the
lower median (by those costs: 4 prompt tokens trickled into each step make a first clause's steps ≈ 3×
as long), and batching buys ≈ 1.25× throughput for the rest of the answers. No turn waits for
another's whole answer. The decoder steps aside at the foreground gate (engines/foreground.py)
before every step.

KV cache: each sequence id is a `_Slot` that holds the tokens of one session's conversation at
positions 0.., and keeps them after the reply (the session's next turn evaluates only what is new).
A job takes its session's idle slot with the longest common prefix, or a free one; the prefix is
copied (cells shared, not recomputed) from a slot of the same session or an anonymous one (no session
key: the warm-up's system prompt) — never from another session's, so nothing of one conversation can
reach another's prompt or cache. When the sequence ids or the KV cells run out, the least recently used
idle slot is evicted (a session's is kept as a snapshot in memory, restored on its next turn).
`forget_session` drops a session's slots and snapshot. A slot is used by one job at a time; a second
job of the same session (an out-of-band response) takes another slot.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..foreground import ForegroundGate
from .llama_kv import Sampling

log = logging.getLogger(__name__)

URGENT_TOKENS = 8
BACKGROUND_EVERY = 3
PROMPT_CHUNK_URGENT = 0
PROMPT_CHUNK = 16
PROMPT_CHUNK_ALONE = 128
PREFILL_CHUNK = 4
POLL_S = 0.05  # how often a waiting consumer looks at its cancel event
ENDED_REMEMBERED = 1024  # forgotten sessions remembered, so a late request of one leaves nothing behind
MIN_SNAPSHOT_TOKENS = 32  # an evicted session's slot is kept in memory from this many tokens


class BatchModel(Protocol):
    """What the decoder needs of a llama context (llama_kv.LlamaKv)."""

    n_seq: int
    n_batch: int

    def decode(self, tokens: list[int], positions: list[int], seqs: list[int], logits: list[bool]) -> int: ...

    def new_sampler(self, sampling: Sampling) -> Any: ...

    def sample(self, sampler: Any, row: int, ban: tuple[int, ...] = ()) -> int: ...

    def free_sampler(self, sampler: Any) -> None: ...

    def is_eog(self, token: int) -> bool: ...

    def seq_rm(self, seq: int, p0: int = 0, p1: int = -1) -> None: ...

    def seq_cp(self, src: int, dst: int, p0: int, p1: int) -> None: ...

    def seq_save(self, seq: int) -> bytes: ...

    def seq_load(self, seq: int, data: bytes) -> bool: ...


def common_prefix(a: list[int] | np.ndarray, b: list[int] | np.ndarray) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.nonzero(np.asarray(a[:n], dtype=np.int64) != np.asarray(b[:n], dtype=np.int64))[0]
    return int(diff[0]) if diff.size else n


_END = object()


@dataclass(eq=False)
class Job:
    """One reply (`generate`) or warm-up (`prefill`) of a prompt, for the session `key`."""

    key: str | None
    prompt: list[int]
    generate: bool = True
    sampling: Sampling = field(default_factory=Sampling)
    max_new: int = 1
    cancel: threading.Event = field(default_factory=threading.Event)  # the caller's
    stop: threading.Event = field(default_factory=threading.Event)  # the consumer went away
    # filled in by the decoder
    cached: int = 0  # prompt tokens found in the KV cache
    evaluated: int = 0  # prompt tokens in the slot now
    produced: int = 0  # tokens sampled (end-of-generation excluded)
    reason: str | None = None  # "stop" | "length" | "cancelled" | "superseded" | "done" | "error"
    error: BaseException | None = None
    pending: int | None = None  # the last sampled token, evaluated in the next step
    slot: _Slot | None = None
    sampler: Any = None
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set() or self.stop.is_set()

    @property
    def in_prompt(self) -> bool:
        return self.evaluated < len(self.prompt)

    def tokens(self) -> Iterator[int]:
        """The sampled tokens as they come (in the consumer's thread); returns when the job ends, or at once
        when `cancel` is set (the decoder drops the job at its next step)."""
        while True:
            try:
                item = self.out.get(timeout=POLL_S)
            except queue.Empty:
                if self.cancelled:
                    return
                continue
            if item is _END:
                if self.error is not None:
                    raise self.error
                return
            yield item
            if self.cancelled:
                return


@dataclass(eq=False)
class _Slot:
    seq: int
    key: str | None = None
    tokens: list[int] = field(default_factory=list)  # in the KV cache at positions 0..len-1
    job: Job | None = None
    used: int = 0  # the step it was last used in (LRU)
    dead: bool = False  # its session ended: cleared at the next step, never a donor


@dataclass
class _Snapshot:
    tokens: list[int]
    data: bytes


class BatchDecoder:
    """The decoder thread and its sequence slots (see the module doc)."""

    def __init__(self, model: BatchModel, *, gate: ForegroundGate | None = None, snapshots: int = 4,
                 snapshot_bytes: int = 512 * 1024 * 1024, thread_setup: Any = None) -> None:
        self.model = model
        self.gate = gate or ForegroundGate()
        self.snapshot_limit = snapshots
        self.snapshot_bytes = snapshot_bytes
        self._slots = [_Slot(seq) for seq in range(model.n_seq)]
        self._snapshots: OrderedDict[str, _Snapshot] = OrderedDict()
        self._incoming: list[Job] = []
        self._active: list[Job] = []
        self._forgotten: set[str] = set()
        self._ended: OrderedDict[str, None] = OrderedDict()  # recently forgotten sessions (a late request's
        # slot is cleared after it, never kept)
        self._cond = threading.Condition()
        self._closed = False
        self._steps = itertools.count(1)
        self._step = 0
        self.stats = {"steps": 0, "tokens": 0, "max_batch": 0, "evictions": 0, "restores": 0, "shared_prefix": 0}
        self._thread_setup = thread_setup
        self._thread = threading.Thread(target=self._run, name="or-llm-decoder", daemon=True)
        self._thread.start()

    # ---- from any thread -----------------------------------------------------------------------------
    def submit(self, job: Job) -> Job:
        with self._cond:
            if self._closed:
                raise RuntimeError("the language model is closed")
            self._incoming.append(job)
            self._cond.notify_all()
        return job

    def forget(self, key: str) -> None:
        """A session ended: its slots are cleared at the next step and its snapshot dropped (never blocks on
        a step in flight)."""
        with self._cond:
            self._forgotten.add(key)
            self._ended[key] = None
            while len(self._ended) > ENDED_REMEMBERED:
                self._ended.popitem(last=False)
            self._snapshots.pop(key, None)
            for slot in self._slots:
                if slot.key == key:
                    slot.dead = True
            self._cond.notify_all()

    def clear(self) -> None:
        """Drop every cached prompt (benchmarks: a cold start); slots in use are left alone."""
        with self._cond:
            self._snapshots.clear()
            for slot in self._slots:
                if slot.job is None:
                    slot.dead = True
            self._cond.notify_all()

    @property
    def cached_sessions(self) -> tuple[str, ...]:
        with self._cond:
            keys = {s.key for s in self._slots if s.key is not None and not s.dead and s.tokens}
            keys.update(self._snapshots)
            return tuple(sorted(keys))

    @property
    def active(self) -> int:
        with self._cond:
            return len(self._active) + len(self._incoming)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    # ---- the decoder thread --------------------------------------------------------------------------
    def _run(self) -> None:
        if self._thread_setup is not None:
            self._thread_setup()
        while True:
            with self._cond:
                while not self._closed and not (self._incoming or self._active or self._forgotten
                                                or any(s.dead and s.tokens for s in self._slots)):
                    self._cond.wait()
                if self._closed:
                    jobs, self._active, self._incoming = self._active + self._incoming, [], []
                    break
            # a reply's first clause being synthesized goes first; a transcription, unless this step
            # writes some reply's first words (another user waits for those too)
            self.gate.pause_point(first_words=any(j.generate and j.pending is not None
                                                  and j.produced < URGENT_TOKENS for j in self._active))
            try:
                self._one_step()
            except Exception as exc:  # noqa: BLE001 - delivered to every job in flight; the decoder goes on
                log.exception("language model step failed")
                with self._cond:
                    jobs, self._active = self._active, []
                for job in jobs:
                    self._finish(job, "error", exc)
        for job in jobs:
            self._finish(job, "cancelled")

    def _one_step(self) -> None:
        self._step = next(self._steps)
        with self._cond:
            incoming, self._incoming = self._incoming, []
            forgotten, self._forgotten = self._forgotten, set()
        for slot in self._slots:
            if slot.key in forgotten:
                slot.dead = True
            if slot.dead and slot.job is None:
                self._clear_slot(slot)
        for job in list(self._active):
            if job.cancelled:
                self._finish(job, "cancelled")
        waiting = []
        for job in incoming:
            if job.cancelled:
                self._finish(job, "cancelled")
            elif not self._admit(job):
                waiting.append(job)
        if waiting:
            with self._cond:
                self._incoming[:0] = waiting
        entries = self._plan()
        if not entries:
            if waiting and not self._active:
                self._cond_wait_briefly()
            return
        tokens, positions, seqs, rows = [], [], [], []
        for job, chunk, want in entries:
            base = len(job.slot.tokens)
            for i, token in enumerate(chunk):
                tokens.append(token)
                positions.append(base + i)
                seqs.append(job.slot.seq)
                rows.append(want and i == len(chunk) - 1)
        rc = self.model.decode(tokens, positions, seqs, rows)
        while rc == 1 and self._evict(exclude={job.slot for job, _c, _w in entries}):
            rc = self.model.decode(tokens, positions, seqs, rows)
        if rc == 1:
            job = max((j for j, _c, _w in entries), key=lambda j: len(j.slot.tokens))
            self._finish(job, "error", RuntimeError(
                "the language model's context memory is full (too many long conversations at once); "
                "raise n_ctx or lower the number of parallel conversations"))
            return
        self.stats["steps"] += 1
        self.stats["tokens"] += len(tokens)
        self.stats["max_batch"] = max(self.stats["max_batch"], len(entries))
        row = 0
        for job, chunk, want in entries:
            job.slot.tokens.extend(chunk)
            job.slot.used = self._step
            if job.pending is not None:
                job.pending = None
            else:
                job.evaluated += len(chunk)
            row += len(chunk)
            if want:
                self._sampled(job, row - 1)
            elif not job.generate and not job.in_prompt:
                self._finish(job, "done")

    def _cond_wait_briefly(self) -> None:
        with self._cond:
            self._cond.wait(POLL_S)

    def _plan(self) -> list[tuple[Job, list[int], bool]]:
        """The entries of this step: (job, tokens, whether its last token's logits are sampled)."""
        replies = [j for j in self._active if j.generate]
        prompts = [j for j in replies if j.in_prompt]
        writing = [j for j in replies if j.pending is not None]
        urgent = [j for j in writing if j.produced < URGENT_TOKENS]
        background = [j for j in writing if j.produced >= URGENT_TOKENS]
        entries: list[tuple[Job, list[int], bool]] = [(j, [j.pending], True) for j in urgent]
        if prompts or not urgent or self._step % BACKGROUND_EVERY == 0:
            entries += [(j, [j.pending], True) for j in background]
        chunk = PROMPT_CHUNK_URGENT if urgent else PROMPT_CHUNK if writing else PROMPT_CHUNK_ALONE
        budget = min(chunk, self.model.n_batch - len(entries))
        for job in prompts:
            if budget <= 0:
                break
            chunk = job.prompt[job.evaluated: job.evaluated + budget]
            budget -= len(chunk)
            entries.append((job, chunk, job.evaluated + len(chunk) == len(job.prompt)))
        if not (urgent or prompts):
            for job in (j for j in self._active if not j.generate):
                if budget <= 0:
                    break
                chunk = job.prompt[job.evaluated: job.evaluated + min(budget, PREFILL_CHUNK)]
                budget -= len(chunk)
                entries.append((job, chunk, False))
        return entries

    def _sampled(self, job: Job, row: int) -> None:
        if job.cancelled:
            self._finish(job, "cancelled")
            return
        ban = job.sampling.ban + (job.sampling.ban_first if job.produced == 0 else ())
        token = self.model.sample(job.sampler, row, ban)
        if self.model.is_eog(token):
            self._finish(job, "stop")
            return
        job.produced += 1
        job.out.put(token)
        if job.produced >= job.max_new:
            self._finish(job, "length")
        else:
            job.pending = token

    # ---- slots ---------------------------------------------------------------------------------------
    def _admit(self, job: Job) -> bool:
        """Give the job a slot holding as much of its prompt as can be had without evaluating it; False:
        no slot is free yet (it waits)."""
        for other in self._active:
            if (job.generate and not other.generate and other.key == job.key and other.slot is not None):
                self._finish(other, "superseded")  # the reply continues from where its warm-up got
        mine = [s for s in self._slots if s.job is None and not s.dead and s.tokens and s.key == job.key]
        slot = max(mine, key=lambda s: common_prefix(s.tokens, job.prompt), default=None)
        if slot is None:
            slot = next((s for s in self._slots if s.job is None and not s.tokens), None)
        if slot is None:
            slot = self._victim(set())
            if slot is None:
                return False
            self._clear_slot(slot)
        own = common_prefix(slot.tokens, job.prompt)
        donors = [s for s in self._slots if s is not slot and not s.dead and s.tokens
                  and (s.key == job.key or s.key is None)]
        donor = max(donors, key=lambda s: common_prefix(s.tokens, job.prompt), default=None)
        shared = common_prefix(donor.tokens, job.prompt) if donor is not None else 0
        snapshot = self._snapshots.get(job.key) if job.key is not None else None
        saved = common_prefix(snapshot.tokens, job.prompt) if snapshot is not None else 0
        if saved > max(own, shared) + 16:
            self.model.seq_rm(slot.seq)
            if self.model.seq_load(slot.seq, snapshot.data):
                slot.tokens = list(snapshot.tokens)
                own = saved
                self.stats["restores"] += 1
            else:
                log.info("could not restore the KV snapshot of session %s; evaluating its prompt", job.key)
                self.model.seq_rm(slot.seq)
                slot.tokens, own = [], 0
        if shared > own:
            self.model.seq_rm(slot.seq)
            self.model.seq_cp(donor.seq, slot.seq, 0, shared)
            slot.tokens = list(job.prompt[:shared])
            own = shared
            self.stats["shared_prefix"] += 1
        keep = min(own, len(job.prompt) - 1) if job.generate else own
        if keep < len(slot.tokens):
            self.model.seq_rm(slot.seq, keep, -1)
            del slot.tokens[keep:]
        if job.key is not None:
            self._snapshots.pop(job.key, None)  # the slot is newer
        slot.key, slot.job, slot.used = job.key, job, self._step
        slot.dead = job.key in self._ended  # a request of a session that has ended: nothing of it is kept
        job.slot, job.cached, job.evaluated = slot, keep, keep
        if not job.generate and not job.in_prompt:
            self._finish(job, "done")  # all of it is cached already
            return True
        if job.generate:
            job.sampler = self.model.new_sampler(job.sampling)
        self._active.append(job)
        return True

    def _victim(self, exclude: set[_Slot]) -> _Slot | None:
        """The idle slot to evict: an ended session's first, then the least recently used, keeping the newest
        anonymous one (the shared system prompt) to the last."""
        idle = [s for s in self._slots if s.job is None and s not in exclude and s.tokens]
        donor = max((s for s in self._slots if s.key is None and s.tokens and not s.dead), key=lambda s: s.used,
                    default=None)
        return min(idle, key=lambda s: (not s.dead, s is donor, s.used), default=None)

    def _evict(self, exclude: set[_Slot]) -> bool:
        slot = self._victim(exclude)
        if slot is None:
            return False
        self._clear_slot(slot)
        return True

    def _clear_slot(self, slot: _Slot) -> None:
        if slot.key is not None and not slot.dead and len(slot.tokens) >= MIN_SNAPSHOT_TOKENS \
                and self.snapshot_limit > 0:
            self._save_snapshot(slot)
        if slot.tokens:
            self.model.seq_rm(slot.seq)
            self.stats["evictions"] += 0 if slot.dead else 1
        slot.tokens, slot.key, slot.dead = [], None, False

    def _save_snapshot(self, slot: _Slot) -> None:
        try:
            data = self.model.seq_save(slot.seq)
        except Exception:  # noqa: BLE001 - an optimisation; never fail a reply for it
            log.exception("could not snapshot a KV sequence")
            return
        with self._cond:
            if slot.key in self._forgotten:
                return
            self._snapshots[slot.key] = _Snapshot(list(slot.tokens), data)
            self._snapshots.move_to_end(slot.key)
            while len(self._snapshots) > self.snapshot_limit or (
                    len(self._snapshots) > 1 and sum(len(s.data) for s in self._snapshots.values())
                    > self.snapshot_bytes):
                self._snapshots.popitem(last=False)

    def _finish(self, job: Job, reason: str, error: BaseException | None = None) -> None:
        if job.reason is not None:
            return
        job.reason, job.error = reason, error
        if job in self._active:
            self._active.remove(job)
        if job.slot is not None:
            job.slot.job = None
        if job.sampler is not None:
            self.model.free_sampler(job.sampler)
            job.sampler = None
        job.out.put(_END)
        job.finished.set()
