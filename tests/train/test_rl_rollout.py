"""Sampler rollouts become RL batches whose teacher-forced log-probs and decision states match the sampler's."""
import jax
import jax.numpy as jnp
import numpy as np
from _data_world import world_benchmark, world_tokenizer
from flax import nnx
from rl_fixtures import on_policy_logprobs

from r2rank_jax.data.pipeline import PipelineConfig, SplitSource, make_iterator
from r2rank_jax.data.prompts import PromptBuilder, PromptConfig
from r2rank_jax.models.config import ModelConfig
from r2rank_jax.models.decoder import Decoder
from r2rank_jax.models.head import ScoringHead
from r2rank_jax.sampling.params import SamplingParams
from r2rank_jax.sampling.sampler import Sampler, SamplerConfig
from r2rank_jax.train.optim import OptimConfig, make_optimizer
from r2rank_jax.train.rl import RLConfig, make_train_step
from r2rank_jax.train.rl_batch import continuation_hidden, decision_hidden
from r2rank_jax.train.rollout import rollout
from r2rank_jax.train.state import create_train_state


def test_rollout_batch_matches_the_sampler_and_trains():
    tok = world_tokenizer()
    source = SplitSource(world_benchmark(), "train")
    builder = PromptBuilder(tok, source.items, PromptConfig(max_prompt_tokens=300, max_prefix_tokens=256, max_suffix_tokens=48))
    batch = next(make_iterator(source, builder, PipelineConfig(batch_users=2, prefix_buckets=(256,), suffix_buckets=(48,))))
    cfg = ModelConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4,
                      num_kv_heads=2, head_dim=8, max_position_embeddings=512)
    model = Decoder(cfg, rngs=nnx.Rngs(0))
    sampler = Sampler(model, SamplerConfig(max_new_tokens=10, eos_ids=(tok.eos_token_id,), pad_id=tok.pad_token_id))
    u, k = batch["labels"].shape
    rl_batch, out = rollout(sampler, None, batch, SamplingParams.make(u * k, temperature=1.0), jax.random.PRNGKey(0))
    rl_batch = jax.tree.map(jnp.asarray, rl_batch)
    rl_batch.check_shapes()
    assert int(rl_batch.response_mask.sum()) == int(np.asarray(out.lengths).sum())

    logp = on_policy_logprobs(model, rl_batch)
    mask = np.asarray(rl_batch.response_mask)
    np.testing.assert_allclose(np.asarray(logp)[mask], np.asarray(rl_batch.old_logprobs)[mask], atol=1e-4)
    hidden = decision_hidden(continuation_hidden(model, rl_batch), rl_batch)
    np.testing.assert_allclose(hidden, out.hidden, atol=1e-4)

    head = ScoringHead(cfg.hidden_size, 16, rngs=nnx.Rngs(1))
    static, state = create_train_state(model, head, make_optimizer(OptimConfig(1e-4)), make_optimizer(OptimConfig(1e-3)),
                                       jax.random.PRNGKey(1))
    state, metrics = make_train_step(static, RLConfig())(state, rl_batch)
    assert int(metrics["skipped"]) == 0
    assert float(metrics["clip_frac"]) == 0.0 and abs(float(metrics["approx_kl"])) < 1e-6   # on-policy: γ = 1
