"""The batched decoder of the local language model (engines/local/llm_batch.py) over a stand-in for a llama
context with llama.cpp's sequence rules: several conversations decode in one batch and each gets the answer
it gets alone; nothing of one session reaches another's sequence; cancelling one leaves the others intact;
new prompts are chunked so streaming replies keep getting tokens; evicted sessions come back from snapshots.
The stand-in is a deterministic toy model whose next token depends on every token of its sequence, so any
mix-up of sequences, positions or copied prefixes changes the answers."""

from __future__ import annotations

import json
import threading

import pytest

from openrealtime.engines.foreground import ForegroundGate
from openrealtime.engines.local.llama_kv import Sampling
from openrealtime.engines.local.llm_batch import (BACKGROUND_EVERY, PROMPT_CHUNK, PROMPT_CHUNK_URGENT, URGENT_TOKENS,
                                                 BatchDecoder, Job)

EOG = 0
HANG_GUARD_S = 30  # a bound on a wait that never comes, not a timing expectation


def next_token(context: list[int]) -> int:
    """The toy model: a token from the whole sequence so far; the end of generation on one value in 211."""
    value = (sum((i + 1) * t for i, t in enumerate(context)) * 2654435761 + len(context)) % 4099
    return EOG if value % 211 == 0 else 1 + value % 997


def answer_alone(prompt: list[int], max_new: int) -> list[int]:
    context, out = list(prompt), []
    while len(out) < max_new:
        token = next_token(context)
        if token == EOG:
            break
        out.append(token)
        context.append(token)
    return out


class ToyKv:
    """Sequences of tokens with llama.cpp's rules: positions must follow on, `seq_cp` copies a prefix, a
    decode fails with 1 when the cells run out. `permits`: each decode takes one (the test steps it)."""

    def __init__(self, n_seq: int = 6, n_batch: int = 512, cells: int = 100_000) -> None:
        self.n_seq, self.n_batch, self.cells = n_seq, n_batch, cells
        self.seqs: dict[int, list[int]] = {s: [] for s in range(n_seq)}
        self.rows: dict[int, list[int]] = {}
        self.batches: list[list[tuple[int, int]]] = []  # per decode: (seq, tokens of it)
        self.copies: list[tuple[int, int, list[int]]] = []  # (src, dst, tokens copied)
        self.permits: threading.Semaphore | None = None
        self.lock = threading.Lock()

    def decode(self, tokens, positions, seqs, logits) -> int:
        if self.permits is not None:
            assert self.permits.acquire(timeout=HANG_GUARD_S)
        with self.lock:
            if sum(len(v) for v in self.seqs.values()) + len(tokens) > self.cells:
                return 1
            self.rows = {}
            per_seq: dict[int, int] = {}
            for i, (token, pos, seq, out) in enumerate(zip(tokens, positions, seqs, logits)):
                assert pos == len(self.seqs[seq]), f"seq {seq}: position {pos} after {len(self.seqs[seq])}"
                self.seqs[seq].append(token)
                per_seq[seq] = per_seq.get(seq, 0) + 1
                if out:
                    self.rows[i] = list(self.seqs[seq])
            self.batches.append(sorted(per_seq.items()))
            return 0

    def new_sampler(self, sampling: Sampling):
        return sampling

    def sample(self, sampler, row: int, ban=()) -> int:
        token = next_token(self.rows[row])
        return token if token not in ban else 998

    def free_sampler(self, sampler) -> None:
        pass

    def is_eog(self, token: int) -> bool:
        return token == EOG

    def seq_rm(self, seq: int, p0: int = 0, p1: int = -1) -> None:
        assert p1 == -1
        with self.lock:
            del self.seqs[seq][p0:]

    def seq_cp(self, src: int, dst: int, p0: int, p1: int) -> None:
        with self.lock:
            assert p0 == 0 and not self.seqs[dst], "a prefix is copied into an emptied sequence"
            self.seqs[dst] = list(self.seqs[src][:p1])
            self.copies.append((src, dst, list(self.seqs[src][:p1])))

    def seq_save(self, seq: int) -> bytes:
        return json.dumps(self.seqs[seq]).encode()

    def seq_load(self, seq: int, data: bytes) -> bool:
        with self.lock:
            self.seqs[seq] = json.loads(data)
        return True


@pytest.fixture
def kv():
    return ToyKv()


@pytest.fixture
def gate():
    """Held, it keeps the decoder from starting a step (so jobs submitted meanwhile start together)."""
    return ForegroundGate(max_pause_s=HANG_GUARD_S)


@pytest.fixture
def decoder(kv, gate):
    d = BatchDecoder(kv, gate=gate)
    yield d
    kv.permits = None
    d.close()


def reply(decoder: BatchDecoder, key: str | None, prompt: list[int], max_new: int = 40) -> Job:
    return decoder.submit(Job(key, prompt, sampling=Sampling(temperature=0.0), max_new=max_new))


def collect(job: Job) -> list[int]:
    tokens = list(job.tokens())
    assert job.finished.wait(HANG_GUARD_S)
    return tokens


SYSTEM = list(range(1, 21))  # a system prompt every session shares


def conversation(seed: int, length: int = 12) -> list[int]:
    return SYSTEM + [100 * seed + i for i in range(length)]


def test_concurrent_replies_are_decoded_together_and_each_is_the_answer_it_gets_alone(kv, decoder, gate):
    prompts = {f"sess_{i}": conversation(i) for i in range(1, 4)}
    with gate.hold():  # the first step waits until every reply is in
        jobs = {key: reply(decoder, key, prompt) for key, prompt in prompts.items()}
    results = {key: collect(job) for key, job in jobs.items()}
    for key, prompt in prompts.items():
        assert results[key] == answer_alone(prompt, 40), key
        assert jobs[key].reason in ("stop", "length")
    assert max(len(batch) for batch in kv.batches) == 3, "the three sequences shared decode steps"


def test_a_session_never_gets_another_sessions_prefix(kv, decoder):
    collect(reply(decoder, None, SYSTEM + [7, 7], max_new=1))  # the warm-up: anonymous, shareable
    first_a = conversation(1)
    answer_a = collect(reply(decoder, "sess_a", first_a))
    # B says exactly what A said: A's sequence holds that prefix, but B must evaluate its own
    answer_b = collect(reply(decoder, "sess_b", first_a))
    assert answer_b == answer_a == answer_alone(first_a, 40)
    second_a = first_a + answer_a + [555, 556]
    second_b = first_a + answer_b + [666, 667]
    job_a, job_b = reply(decoder, "sess_a", second_a), reply(decoder, "sess_b", second_b)
    assert collect(job_a) == answer_alone(second_a, 40)
    assert collect(job_b) == answer_alone(second_b, 40)
    # each session's second turn came from its own cache (all but the last token sampled, never evaluated);
    # between sessions only the system prompt was copied
    assert job_a.cached >= len(first_a) + len(answer_a) - 1 and job_b.cached >= len(first_a) + len(answer_b) - 1
    assert kv.copies and all(tokens == SYSTEM[:len(tokens)] for _src, _dst, tokens in kv.copies), kv.copies


def test_cancelling_one_reply_leaves_the_others_streams_intact(kv, decoder, gate):
    prompts = {f"sess_{i}": conversation(i) for i in range(1, 4)}
    assert all(len(answer_alone(p, 60)) > 2 for p in prompts.values())
    kv.permits = threading.Semaphore(1)  # the first step (every prompt, every first token), then wait
    with gate.hold():
        jobs = {key: reply(decoder, key, prompt, max_new=60) for key, prompt in prompts.items()}
    cancelled = jobs.pop("sess_2")
    stream = cancelled.tokens()
    first = next(stream)
    cancelled.cancel.set()
    kv.permits.release(10_000)
    assert list(stream) == []
    assert cancelled.finished.wait(HANG_GUARD_S) and cancelled.reason == "cancelled"
    assert first == answer_alone(prompts["sess_2"], 1)[0]
    for key, job in jobs.items():
        assert collect(job) == answer_alone(prompts[key], 60), key


def long_answer() -> list[int]:
    """A conversation whose answer runs to 400 tokens (it is still being written while the test goes on)."""
    return next(p for p in map(conversation, range(1, 100)) if len(answer_alone(p, 400)) == 400)


def speaking_reply(decoder: BatchDecoder, kv: ToyKv) -> tuple[Job, object]:
    """A reply that is past its first clause, and the decoder held before its next step."""
    kv.permits = threading.Semaphore(0)
    speaking = reply(decoder, "sess_1", long_answer(), max_new=400)
    kv.permits.release(URGENT_TOKENS + 1)  # the prompt and the first tokens
    stream = speaking.tokens()
    for _ in range(URGENT_TOKENS + 1):
        next(stream)
    return speaking, stream


def test_a_new_prompt_is_chunked_and_replies_already_speaking_keep_getting_tokens(kv, decoder):
    speaking, stream = speaking_reply(decoder, kv)
    # a new turn with a long, uncached prompt
    long_prompt = [3000 + i for i in range(10 * PROMPT_CHUNK)]
    new = reply(decoder, "sess_2", long_prompt, max_new=5)
    kv.permits.release(10_000)
    assert collect(new) == answer_alone(long_prompt, 5)
    speaking.stop.set()
    list(stream)
    seqs = {"speaking": speaking.slot.seq, "new": new.slot.seq}
    during = []  # the steps while the new prompt was evaluated
    for batch in kv.batches:
        counts = dict(batch)
        if seqs["new"] in counts:
            during.append(counts)
            if len(during) * PROMPT_CHUNK >= len(long_prompt):
                break
    assert all(c[seqs["new"]] <= PROMPT_CHUNK for c in during), "prompts go in chunks"
    for i in range(0, len(during) - BACKGROUND_EVERY + 1):
        window = during[i:i + BACKGROUND_EVERY]
        assert any(seqs["speaking"] in c for c in window), "the speaking reply got a token at least every few steps"


def test_first_tokens_go_before_replies_already_speaking(kv, decoder):
    speaking, stream = speaking_reply(decoder, kv)
    new = reply(decoder, "sess_2", conversation(2), max_new=URGENT_TOKENS)
    kv.permits.release(10_000)
    assert collect(new) == answer_alone(conversation(2), URGENT_TOKENS)
    speaking.stop.set()
    list(stream)
    # the new reply's first tokens: the speaking one joined only every few of those steps
    steps = [dict(b) for b in kv.batches if dict(b).get(new.slot.seq) == 1]
    with_both = [s for s in steps if speaking.slot.seq in s]
    assert len(steps) >= URGENT_TOKENS - 1 and len(with_both) <= len(steps) // BACKGROUND_EVERY + 1


def test_a_warm_up_leaves_only_the_last_words_to_evaluate(kv, decoder):
    prompt = conversation(4)
    warm = decoder.submit(Job("sess_w", prompt[:-3], generate=False))
    assert warm.finished.wait(HANG_GUARD_S) and warm.reason == "done" and warm.evaluated == len(prompt) - 3
    job = reply(decoder, "sess_w", prompt)
    assert collect(job) == answer_alone(prompt, 40)
    assert job.cached == len(prompt) - 3, "only the last words were left to evaluate"


def test_a_forgotten_session_leaves_nothing_behind(kv, decoder):
    job = reply(decoder, "sess_x", conversation(5))
    collect(job)
    seq = job.slot.seq
    assert decoder.cached_sessions == ("sess_x",)
    decoder.forget("sess_x")
    assert decoder.cached_sessions == ()
    collect(reply(decoder, "sess_y", conversation(6)))  # the decoder's next step clears it
    assert kv.seqs[seq] == [] or job.slot.key != "sess_x"


def test_sessions_beyond_the_sequences_are_evicted_to_snapshots_and_restored():
    kv = ToyKv(n_seq=2)
    decoder = BatchDecoder(kv, snapshots=4)
    try:
        histories = {f"sess_{i}": conversation(i, length=40) for i in range(3)}
        for key, prompt in histories.items():
            histories[key] = prompt + collect(reply(decoder, key, prompt)) + [7, 8]
        assert set(decoder.cached_sessions) == set(histories)
        for key, prompt in histories.items():
            job = reply(decoder, key, prompt)
            assert collect(job) == answer_alone(prompt, 40)
            assert job.cached >= len(prompt) - 3, (key, job.cached)
        assert decoder.stats["restores"] >= 1 and decoder.stats["evictions"] >= 1
    finally:
        decoder.close()


def test_a_full_kv_cache_evicts_idle_sessions():
    kv = ToyKv(n_seq=6, cells=200)
    decoder = BatchDecoder(kv, snapshots=0)
    try:
        for i in range(6):
            prompt = conversation(i, length=30)
            assert collect(reply(decoder, f"sess_{i}", prompt, max_new=20)) == answer_alone(prompt, 20)
        assert decoder.stats["evictions"] >= 1
    finally:
        decoder.close()


def test_while_a_reply_writes_its_first_clause_new_prompts_wait(kv, decoder, gate):
    kv.permits = threading.Semaphore(1)  # the first reply's prompt and first token
    first = reply(decoder, "sess_1", long_answer(), max_new=URGENT_TOKENS)
    next(first.tokens())
    new_prompt = [4000 + i for i in range(3 * PROMPT_CHUNK)]
    new = reply(decoder, "sess_2", new_prompt, max_new=3)
    kv.permits.release(10_000)
    assert collect(new) == answer_alone(new_prompt, 3)
    collect(first)
    young = [dict(b) for b in kv.batches if dict(b).get(first.slot.seq) == 1]
    assert young and all(b.get(new.slot.seq, 0) <= PROMPT_CHUNK_URGENT for b in young[:URGENT_TOKENS - 1])


def test_a_transcription_hold_does_not_pause_a_reply_s_first_words(kv, decoder, gate):
    prompt = conversation(5)
    first = reply(decoder, "sess_1", prompt, max_new=URGENT_TOKENS + 4)
    tokens = first.tokens()
    heard = [next(tokens)]
    with gate.hold(first_words=False):  # another session's final transcription
        heard += [next(tokens) for _ in range(URGENT_TOKENS - 1)]
        assert gate.pauses == 0  # its first words were never held up
    heard += list(tokens)
    assert heard == answer_alone(prompt, URGENT_TOKENS + 4)


def test_the_shared_system_prompt_is_evicted_last():
    kv = ToyKv(n_seq=3)
    decoder = BatchDecoder(kv, snapshots=0)
    try:
        collect(reply(decoder, None, SYSTEM + [7, 7], max_new=1))  # the warm-up
        for i in range(5):  # more sessions than sequences: each new one evicts an idle slot
            job = reply(decoder, f"sess_{i}", conversation(i))
            assert collect(job) == answer_alone(conversation(i), 40)
            assert job.cached >= len(SYSTEM), f"session {i} got the system prompt from the warm-up's sequence"
    finally:
        decoder.close()


def test_a_late_request_of_an_ended_session_leaves_nothing_behind(kv, decoder):
    decoder.forget("sess_late")
    job = reply(decoder, "sess_late", conversation(7))
    assert collect(job) == answer_alone(conversation(7), 40)
    assert "sess_late" not in decoder.cached_sessions
    collect(reply(decoder, "sess_other", conversation(8)))  # the next step clears its slot
    assert kv.seqs[job.slot.seq] == [] or job.slot.key != "sess_late"
