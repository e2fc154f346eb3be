"""llama.cpp through llama-cpp-python's low-level API, for batched decoding of several sequences.

One `llama_context` with a unified KV cache (`kv_unified`): every sequence id may use any cell, and
`seq_cp` shares cells between sequences (a copied prefix costs no memory and no compute). One
`llama_batch` carries the tokens of several sequences per `llama_decode`; each sequence samples from
its own row of logits with its own sampler chain (the chain llama-cpp-python's `Llama.generate`
builds). Used only from the decoder's one thread (engines/local/llm_batch.py): a llama context is
not thread-safe. Tokenizing and detokenizing go through the model (read-only) from any thread.
"""

from __future__ import annotations

import ctypes
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PENALTY_LAST_N = 64  # llama-cpp-python's default `last_n_tokens_size`


@dataclass(frozen=True)
class Sampling:
    """How one reply samples its tokens."""

    temperature: float = 0.7
    top_k: int = 20
    top_p: float = 0.8
    min_p: float = 0.0
    repeat_penalty: float = 1.05
    ban: tuple[int, ...] = ()  # tokens never sampled
    ban_first: tuple[int, ...] = ()  # tokens not sampled as the first one


def load_model(llama_cpp: Any, path: Path, *, n_gpu_layers: int = 0) -> Any:
    """A `llama_cpp._internals.LlamaModel`, with llama.cpp's own logging silenced (as `Llama(verbose=False)`)."""
    from llama_cpp import _internals
    from llama_cpp._logger import set_verbose

    set_verbose(False)
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = n_gpu_layers
    return _internals.LlamaModel(path_model=str(path), params=params, verbose=False)


class LlamaKv:
    """A llama context holding `n_seq` sequences in `n_ctx` shared KV cells (see the module doc)."""

    def __init__(self, llama_cpp: Any, model: Any, *, n_ctx: int, n_seq: int, n_batch: int, n_threads: int) -> None:
        from llama_cpp import _internals

        self._lib = llama_cpp
        self._internals = _internals
        self.model = model
        self.n_seq = n_seq
        self.n_batch = n_batch
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq
        params.kv_unified = True
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.no_perf = True
        self._ctx = _internals.LlamaContext(model=model, params=params, verbose=False)
        self.n_ctx = llama_cpp.llama_n_ctx(self._ctx.ctx)
        self._mem = self._ctx.memory
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self.n_vocab = model.n_vocab()

    # ---- decoding ------------------------------------------------------------------------------
    def decode(self, tokens: list[int], positions: list[int], seqs: list[int], logits: list[bool]) -> int:
        """One llama_decode of these entries: 0 done, 1 no room in the KV cache (nothing was evaluated)."""
        batch = self._batch
        batch.n_tokens = len(tokens)
        for i, (token, pos, seq, out) in enumerate(zip(tokens, positions, seqs, logits, strict=True)):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = out
        rc = self._lib.llama_decode(self._ctx.ctx, batch)
        if rc < 0 or rc > 1:
            raise RuntimeError(f"llama_decode failed ({rc})")
        return rc

    def new_sampler(self, sampling: Sampling) -> Any:
        sampler = self._internals.LlamaSampler()
        sampler.add_penalties(self.n_vocab, PENALTY_LAST_N, sampling.repeat_penalty, 0.0, 0.0)
        if sampling.temperature <= 0:
            sampler.add_greedy()
        else:
            sampler.add_top_k(sampling.top_k)
            sampler.add_typical(1.0, 1)
            sampler.add_top_p(sampling.top_p, 1)
            sampler.add_min_p(sampling.min_p, 1)
            sampler.add_temp(sampling.temperature)
            sampler.add_dist(random.getrandbits(31))
        return sampler

    def sample(self, sampler: Any, row: int, ban: tuple[int, ...] = ()) -> int:
        """A token from the logits of batch entry `row` (of the last decode); `ban`ned tokens excluded."""
        if ban:
            ptr = self._lib.llama_get_logits_ith(self._ctx.ctx, row)
            np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))[list(ban)] = -np.inf
        return self._lib.llama_sampler_sample(sampler.sampler, self._ctx.ctx, row)

    @staticmethod
    def free_sampler(sampler: Any) -> None:
        sampler.close()

    def is_eog(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self.model.vocab, token))

    # ---- sequences -------------------------------------------------------------------------------
    def seq_rm(self, seq: int, p0: int = 0, p1: int = -1) -> None:
        self._lib.llama_memory_seq_rm(self._mem, seq, p0, p1)

    def seq_cp(self, src: int, dst: int, p0: int, p1: int) -> None:
        self._lib.llama_memory_seq_cp(self._mem, src, dst, p0, p1)

    def seq_save(self, seq: int) -> bytes:
        size = self._lib.llama_state_seq_get_size(self._ctx.ctx, seq)
        buf = (ctypes.c_uint8 * size)()
        written = self._lib.llama_state_seq_get_data(self._ctx.ctx, buf, size, seq)
        return ctypes.string_at(buf, written)

    def seq_load(self, seq: int, data: bytes) -> bool:
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        return self._lib.llama_state_seq_set_data(self._ctx.ctx, buf, len(data), seq) != 0

    def close(self) -> None:
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        self._ctx.close()
