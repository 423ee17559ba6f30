"""A tiny decoder + head and synthetic RL batches with a learnable signal."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from r2rank_jax.models.config import ModelConfig
from r2rank_jax.models.decoder import Decoder
from r2rank_jax.models.head import ScoringHead
from r2rank_jax.train.rl_batch import RLBatch

TINY = ModelConfig(vocab_size=40, hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4, num_kv_heads=2,
                   head_dim=8, attention_bias=True)
MARK = 7  # the token that makes a candidate "the positive"


def tiny_models(seed: int = 0, cfg: ModelConfig = TINY):
    return Decoder(cfg, rngs=nnx.Rngs(seed)), ScoringHead(cfg.hidden_size, 32, rngs=nnx.Rngs(seed + 1))


def make_batch(seed: int, users: int = 2, k: int = 5, prefix: int = 6, suffix: int = 3, rationale: int = 4,
               vocab: int = 40, logprob_model=None) -> RLBatch:
    """Users with random prefixes; each candidate suffix is random, but the positive's ends with MARK,
    and every rationale ends by repeating its candidate's last suffix token (the decision point).

    Prefix and suffix lengths vary (left padding); rationales have random lengths (right padding).
    old_logprobs come from `logprob_model` (on-policy) when given, else are random.
    """
    rng = np.random.default_rng(seed)
    p_tok = np.zeros((users, prefix), np.int32)
    p_pos = np.full((users, prefix), -1, np.int32)
    c_tok = np.zeros((users, k, suffix + rationale), np.int32)
    c_pos = np.full((users, k, suffix + rationale), -1, np.int32)
    resp = np.zeros((users, k, rationale), bool)
    score_idx = np.zeros((users, k), np.int32)
    rel = np.zeros((users, k), np.float32)
    for u in range(users):
        n = int(rng.integers(2, prefix + 1))
        p_tok[u, prefix - n:] = rng.integers(10, vocab, n)
        p_pos[u, prefix - n:] = np.arange(n)
        pos_item = int(rng.integers(0, k))
        rel[u, pos_item] = 1.0
        for c in range(k):
            s = int(rng.integers(1, suffix + 1))
            toks = rng.integers(10, vocab, s)
            if c == pos_item:
                toks[-1] = MARK
            c_tok[u, c, suffix - s:suffix] = toks
            r = int(rng.integers(1, rationale + 1))
            c_tok[u, c, suffix:suffix + r] = rng.integers(10, vocab, r)
            c_tok[u, c, suffix + r - 1] = toks[-1]  # the rationale concludes by naming the item
            c_pos[u, c, suffix - s:suffix + r] = n + np.arange(s + r)
            resp[u, c, :r] = True
            score_idx[u, c] = suffix + r - 1
    batch = RLBatch(prefix_tokens=jnp.asarray(p_tok), prefix_positions=jnp.asarray(p_pos),
                    cont_tokens=jnp.asarray(c_tok), cont_positions=jnp.asarray(c_pos),
                    response_mask=jnp.asarray(resp),
                    old_logprobs=jnp.asarray(rng.normal(-3.0, 0.3, resp.shape).astype(np.float32)),
                    score_index=jnp.asarray(score_idx), relevance=jnp.asarray(rel),
                    candidate_mask=jnp.ones((users, k), bool))
    if logprob_model is not None:
        batch = batch.replace(old_logprobs=on_policy_logprobs(logprob_model, batch))
    return batch


def on_policy_logprobs(model, batch: RLBatch) -> jax.Array:
    from r2rank_jax.train.rl_batch import continuation_hidden, rationale_inputs
    from r2rank_jax.train.token_logprobs import token_logprobs

    h, t = rationale_inputs(continuation_hidden(model, batch, shared_prefix=False), batch)
    logp, _ = token_logprobs(model, h, t)
    return jnp.where(batch.response_mask, logp.reshape(batch.response_mask.shape), 0.0)
