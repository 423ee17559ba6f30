"""Rollouts: a pipeline batch of U users × K candidates → K rationales per user (sampler, shared
prefix) → the RLBatch the train_step consumes, with the rollout's log-probs as PPO's old log-probs."""
from __future__ import annotations

from typing import Any

import jax
import numpy as np

from r2rank_jax.distributed import to_host
from r2rank_jax.sampling.loop import SampleOutput
from r2rank_jax.sampling.params import SamplingParams
from r2rank_jax.sampling.sampler import Sampler
from r2rank_jax.train.rl_batch import RLBatch

Batch = dict[str, np.ndarray]


def prompt_lists(batch: Batch) -> tuple[list[list[int]], list[list[list[int]]]]:
    """(U prefixes, U × K suffixes) as token lists, from a pipeline batch; padding rows borrow row 0's prompts."""
    u, p = batch["prefix_tokens"].shape
    rows = [i if batch["example_mask"][i] else 0 for i in range(u)]
    prefixes = [batch["prefix_tokens"][i, p - batch["prefix_lengths"][i]:].tolist() for i in rows]
    suffixes = [[batch["suffix_tokens"][i, k, :batch["suffix_lengths"][i, k]].tolist()
                 for k in range(batch["suffix_tokens"].shape[1])] for i in rows]
    return prefixes, suffixes


def to_rl_batch(batch: Batch, out: SampleOutput) -> RLBatch:
    """Builds the RLBatch: continuation = suffix left-padded to S ‖ the N generated tokens.

    The scoring position is each rationale's last valid token (index S + length − 1), where the
    sampler read the hidden state it returns. Multi-host: the sampler's outputs are sharded over the
    processes; `to_host` gathers the whole batch on every host.
    """
    u, k, s = batch["suffix_tokens"].shape
    ids = to_host(out.ids).reshape(u, k, -1)
    n = ids.shape[-1]
    valid = to_host(out.valid).reshape(u, k, n)
    lengths = to_host(out.lengths).reshape(u, k)
    suf_len = batch["suffix_lengths"]
    start = batch["prefix_lengths"][:, None]                                             # [U, 1]

    col = np.arange(s)
    from_end = s - 1 - col                                                               # [S]
    src = suf_len[..., None] - 1 - from_end                                              # [U, K, S] index into suffix
    has = src >= 0
    suffix = np.take_along_axis(batch["suffix_tokens"], np.maximum(src, 0), axis=-1)
    cont_tokens = np.concatenate([np.where(has, suffix, 0), ids], axis=-1).astype(np.int32)
    suffix_pos = np.where(has, start[..., None] + src, -1)
    gen_pos = np.where(valid, (start + suf_len)[..., None] + np.arange(n), -1)
    cont_positions = np.concatenate([suffix_pos, gen_pos], axis=-1).astype(np.int32)

    example = batch["example_mask"].astype(bool)
    return RLBatch(
        prefix_tokens=np.asarray(batch["prefix_tokens"], np.int32),
        prefix_positions=np.asarray(batch["prefix_positions"], np.int32),
        cont_tokens=cont_tokens, cont_positions=cont_positions,
        response_mask=valid,
        old_logprobs=np.where(valid, to_host(out.logprobs).reshape(u, k, n), 0.0).astype(np.float32),
        score_index=(s + np.maximum(lengths, 1) - 1).astype(np.int32),
        relevance=np.asarray(batch["labels"], np.float32),
        candidate_mask=example[:, None] & (batch["candidate_index"] >= 0),
    )


def rollout(sampler: Sampler, llm_state: Any, batch: Batch, params: SamplingParams, key: jax.Array,
            rows: tuple[int, int] | None = None) -> tuple[RLBatch, SampleOutput]:
    """Samples K rationales per user with the current policy and returns (RLBatch, raw sampler output).
    rows=(total, first): `batch` is a host's block of a global batch (`Sampler.generate_shared`)."""
    prefixes, suffixes = prompt_lists(batch)
    out = sampler.generate_shared(prefixes, suffixes, params, key, state=llm_state, rows=rows)
    return to_rl_batch(batch, out), out
