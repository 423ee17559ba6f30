"""Greedy decoding of pre-padded prompts: a thin wrapper over the sampler (kept for its simple signature)."""
from __future__ import annotations

import jax
import numpy as np

from r2rank_jax.models.decoder import Decoder
from r2rank_jax.sampling.params import SamplingParams
from r2rank_jax.sampling.sampler import Sampler, SamplerConfig


def greedy_generate(model: Decoder, tokens: jax.Array, positions: jax.Array, eos_ids: jax.Array,
                    max_new_tokens: int) -> tuple[jax.Array, jax.Array]:
    """Greedy continuation of left-padded prompts.

    tokens, positions: `[B, T]` (position -1 = padding); eos_ids: `[E]` int32 stop tokens.
    Returns (ids `[B, N]`, valid `[B, N]` bool) with N = max_new_tokens; ids after a row's EOS are 0
    and not valid (the EOS itself is valid).
    """
    eos = tuple(int(e) for e in np.asarray(eos_ids).reshape(-1))
    sampler = Sampler(model, SamplerConfig(max_new_tokens=max_new_tokens, eos_ids=eos, pad_id=0))
    positions = np.asarray(positions)
    cache, logits = sampler.prefill(np.asarray(tokens), positions)
    out = sampler.decode(cache, logits, positions.max(axis=1) + 1, SamplingParams.greedy(positions.shape[0]),
                         jax.random.key(0))
    return out.ids, out.valid
