"""R²ec / RecPO (method "r2ec"): fused reward and group advantages by hand, the asymmetric clipped
objective against a piecewise NumPy computation, the head's scores against independent forward
passes, one train step (LoRA), and the launcher end to end with an R2Rank run importing its scores."""
import json
import math
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from r2rank_jax import launch
from r2rank_jax.config import R2ECSpec
from r2rank_jax.eval.score_files import read_score_file
from r2rank_jax.methods import r2ec_loss as L
from r2rank_jax.methods.r2ec import Scorer
from r2rank_jax.methods.r2ec_step import group_scores, make_train_step, rollout
from r2rank_jax.models.config import LoRAConfig, ModelConfig
from r2rank_jax.models.decoder import Decoder
from r2rank_jax.models.head import ScoringHead
from r2rank_jax.models.lora import LoRAParam, with_lora
from r2rank_jax.sampling.params import SamplingParams
from r2rank_jax.sampling.sampler import Sampler, SamplerConfig, pad_left
from r2rank_jax.train.state import create_train_state

DEBUG = str(pathlib.Path(__file__).resolve().parents[2] / "configs" / "debug_cpu.py")
TINY = ModelConfig(vocab_size=40, hidden_size=32, intermediate_size=48, num_layers=1, num_heads=4, num_kv_heads=2,
                   head_dim=8, scan_layers=False)


# ------------------------------------------------------------------------------------ reward, advantages

def test_fused_reward_and_group_advantages_hand_computed():
    # user 0: target = candidate 1; user 1: target = candidate 0, candidate 2 is padding (its huge
    # score must count neither in the ranking nor in the softmax). NDCG@2: rank 3 gets 0.
    scores = np.array([[[3, 1, 2], [0, 5, 1], [2, 1.5, 0], [0, 2, 3]],
                       [[1, 0, 100], [0, 1, 100], [2, 0, 100], [0, 3, 100]]], np.float32)
    labels = np.array([[0, 1, 0], [1, 0, 0]], np.float32)
    mask = np.array([[True, True, True], [True, True, False]])
    reward, ndcg, prob = L.fused_reward(jnp.asarray(scores), jnp.asarray(labels), jnp.asarray(mask), 2, 0.05)
    d2 = 1 / math.log2(3)
    e = math.exp
    want_ndcg = [[0, 1, d2, d2], [1, d2, 1, d2]]
    want_prob = [[e(1) / (e(3) + e(1) + e(2)), e(5) / (1 + e(5) + e(1)), e(1.5) / (e(2) + e(1.5) + 1),
                  e(2) / (1 + e(2) + e(3))],
                 [e(1) / (e(1) + 1), 1 / (1 + e(1)), e(2) / (e(2) + 1), 1 / (1 + e(3))]]
    np.testing.assert_allclose(ndcg, want_ndcg, rtol=1e-6)
    np.testing.assert_allclose(prob, want_prob, rtol=1e-5)
    want_r = [[0.95 * n + 0.05 * p for n, p in zip(ns, ps)] for ns, ps in zip(want_ndcg, want_prob)]
    np.testing.assert_allclose(reward, want_r, rtol=1e-5)
    adv = np.asarray(L.group_advantages(reward))
    for u in range(2):
        r = want_r[u]
        mean = sum(r) / 4
        std = math.sqrt(sum((x - mean) ** 2 for x in r) / 3)
        np.testing.assert_allclose(adv[u], [(x - mean) / (std + 1e-8) for x in r], rtol=1e-4)
    # equal rewards: zero advantages, not NaN
    np.testing.assert_array_equal(L.group_advantages(jnp.ones((1, 4))), np.zeros((1, 4)))


def test_item_loss_is_the_cross_entropy_of_the_best_trajectory():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(2, 4, 5)).astype(np.float32)
    labels = np.eye(5, dtype=np.float32)[[3, 0]]
    mask = np.ones((2, 5), bool)
    mask[1, 4] = False
    adv = np.array([[0.1, 1.2, -0.5, -0.8], [-1.0, 0.3, 0.9, -0.2]], np.float32)
    ce, best = L.item_loss(jnp.asarray(scores), jnp.asarray(labels), jnp.asarray(mask), jnp.asarray(adv), "ce")
    np.testing.assert_array_equal(best, [1, 2])
    for u, (g, t, k) in enumerate([(1, 3, 5), (2, 0, 4)]):
        s = scores[u, g, :k].astype(np.float64)
        np.testing.assert_allclose(ce[u], -(s[t] - math.log(np.exp(s).sum())), rtol=1e-5)
    weighted, _ = L.item_loss(jnp.asarray(scores), jnp.asarray(labels), jnp.asarray(mask), jnp.asarray(adv),
                              "advantage")
    np.testing.assert_allclose(weighted, np.asarray(ce) * [1.2, 0.9], rtol=1e-6)


# ------------------------------------------------------------------------------------ clipped objective

def test_asymmetric_clipped_objective_matches_numpy():
    rng = np.random.default_rng(1)
    shape = (2, 3, 7)
    old = rng.normal(-2.0, 0.5, size=shape).astype(np.float32)
    new = old + rng.normal(0.0, 0.4, size=shape).astype(np.float32)     # ratios on both sides of both bounds
    adv = np.array([[1.5, -0.7, 0.0], [-2.0, 0.4, 1.1]], np.float32)
    mask = rng.random(shape) < 0.8
    lo, hi = 0.2, 0.28
    obj, clipped = L.clipped_token_objective(jnp.asarray(new), jnp.asarray(old), jnp.asarray(adv), jnp.asarray(mask),
                                             lo, hi)
    grad = jax.grad(lambda n: jnp.sum(L.clipped_token_objective(n, jnp.asarray(old), jnp.asarray(adv),
                                                                jnp.asarray(mask), lo, hi)[0]))(jnp.asarray(new))
    want = np.zeros(shape)
    want_grad = np.zeros(shape)
    for i in np.ndindex(shape):
        if not mask[i]:
            continue
        r, a = math.exp(float(new[i]) - float(old[i])), float(adv[i[:2]])
        # A > 0: the ratio is capped above at 1 + ε_high; A < 0: floored at 1 − ε_low (no gradient there)
        cap = (a > 0 and r > 1 + hi) or (a < 0 and r < 1 - lo)
        want[i] = a * ((1 + hi) if a > 0 and cap else (1 - lo) if cap else r)
        want_grad[i] = 0.0 if cap else a * r
    np.testing.assert_allclose(obj, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-7)
    ratio = np.exp(new - old)
    np.testing.assert_array_equal(clipped, mask & ((ratio < 1 - lo) | (ratio > 1 + hi)))
    assert 0 < np.sum(clipped) < np.sum(mask)


# ------------------------------------------------------------------------------------ head scores

def user_batch(seed: int, users: int = 2, group: int = 2, k: int = 3, item_len: int = 6) -> dict:
    """A batch in R2ecPrompts.batch's layout, random token ids (prompts of 4..9 tokens)."""
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(1, 40, size=int(rng.integers(4, 10))).tolist() for _ in range(users)]
    items = [[rng.integers(1, 40, size=int(rng.integers(2, item_len + 1))).tolist() for _ in range(k)]
             for _ in range(users)]
    prefix_tokens, prefix_positions = pad_left([p[:-1] for p in prompts], 8, 0)
    it, ip = zip(*[pad_left(row, item_len, 0) for row in items])
    return {"prefix_tokens": prefix_tokens, "prefix_positions": prefix_positions,
            "prefix_lengths": np.array([len(p) - 1 for p in prompts], np.int32),
            "suffix_tokens": np.array([[[p[-1]]] * group for p in prompts], np.int32),
            "suffix_lengths": np.ones((users, group), np.int32), "labels": np.zeros((users, group), np.int32),
            "candidate_index": np.zeros((users, group), np.int32), "example_mask": np.ones(users, bool),
            "item_tokens": np.stack(it), "item_positions": np.stack(ip),
            "target": np.eye(k, dtype=np.float32)[rng.integers(0, k, size=users)], "cand_mask": np.ones((users, k), bool),
            "_prompts": prompts, "_items": items}


def last_hidden(model, ids) -> np.ndarray:
    """Independent forward pass of one unpadded sequence: its last token's final hidden state."""
    return np.asarray(model(jnp.asarray([ids], jnp.int32), jnp.arange(len(ids))[None]).hidden[0, -1], np.float64)


def direct_scores(user_vec, item_vecs, tau):
    u = user_vec / np.linalg.norm(user_vec)
    return np.array([u @ (v / np.linalg.norm(v)) for v in item_vecs]) / tau


def test_head_scores_equal_direct_computation_from_independent_forward_passes():
    model = Decoder(TINY, rngs=nnx.Rngs(0))
    tau = 0.02
    sampler = Sampler(model, SamplerConfig(max_new_tokens=5, buckets=(1, 8)))
    batch = user_batch(0)
    r2, lengths = rollout(sampler, None, batch, 1.0, jax.random.PRNGKey(3))
    scores, _ = jax.jit(lambda b: group_scores(model, b, tau))(jax.tree.map(jnp.asarray, r2))
    ids = np.asarray(r2.seq.cont_tokens)[..., 1:]                    # the reasonings (after the 1-token suffix)
    for u, prompt in enumerate(batch["_prompts"]):
        items = [last_hidden(model, i) for i in batch["_items"][u]]
        for g in range(2):
            reasoning = ids[u, g, :lengths[u, g]].tolist()
            want = direct_scores(last_hidden(model, prompt + reasoning), items, tau)
            np.testing.assert_allclose(scores[u, g], want, rtol=1e-4, atol=2e-3)

    # eval path: greedy reasoning from the sampler, its returned hidden state as the user embedding
    batch1 = user_batch(1, group=1)
    got = Scorer(sampler, nnx.split(model)[0], tau)(nnx.split(model)[1], batch1)
    out = sampler.generate_shared([p[:-1] for p in batch1["_prompts"]], [[[p[-1]]] for p in batch1["_prompts"]],
                                  SamplingParams.greedy(2), jax.random.PRNGKey(0))
    for u, prompt in enumerate(batch1["_prompts"]):
        reasoning = np.asarray(out.ids)[u, :int(out.lengths[u])].tolist()
        want = direct_scores(last_hidden(model, prompt + reasoning), [last_hidden(model, i) for i in batch1["_items"][u]],
                             tau)
        np.testing.assert_allclose(got[u], want, rtol=1e-4, atol=2e-3)


def test_train_step_updates_only_lora_adapters_on_policy():
    model = with_lora(Decoder(TINY, rngs=nnx.Rngs(0)), LoRAConfig(rank=4, alpha=128.0), seed=1)
    head = ScoringHead(TINY.hidden_size, 4, rngs=nnx.Rngs(1))
    spec = R2ECSpec(group_size=2, item_loss="ce")     # "advantage" would be 0 on groups with equal rewards
    static, state = create_train_state(model, head, optax.adam(1e-2), optax.set_to_zero(), jax.random.PRNGKey(0))
    before = jax.tree.map(np.asarray, state.llm)
    sampler = Sampler(model, SamplerConfig(max_new_tokens=5, buckets=(1, 8)))
    r2, _ = rollout(sampler, state.llm, user_batch(2), spec.temperature, jax.random.PRNGKey(4))
    new, m = make_train_step(static, spec)(state, jax.tree.map(jnp.asarray, r2))
    m = jax.device_get(m)
    assert m["skipped"] == 0 and np.isfinite(m["loss"]) and m["grad_norm_llm"] > 0
    assert m["clip_frac"] == 0.0           # on-policy: the rollout's log-probs equal the step's
    assert m["item_loss"] > 0
    lora_before, base_before = nnx.split_state(before, LoRAParam, ...)
    lora_after, base_after = nnx.split_state(jax.tree.map(np.asarray, new.llm), LoRAParam, ...)
    for a, b in zip(jax.tree.leaves(base_before), jax.tree.leaves(base_after)):
        np.testing.assert_array_equal(a, b)
    assert any(np.any(a != b) for a, b in zip(jax.tree.leaves(lora_before), jax.tree.leaves(lora_after)))


# ------------------------------------------------------------------------------------ launcher

@pytest.mark.slow
def test_launcher_runs_r2ec_and_an_r2rank_run_imports_its_scores(tmp_path):
    r2ec, main = tmp_path / "r2ec", tmp_path / "main"
    tiny = ["--config.r2ec.steps=2", "--config.r2ec.max_new_tokens=6", "--config.r2ec.eval_every=2",
            "--config.r2ec.eval_users=2", "--config.r2ec.item_tokens=48", "--config.eval.max_users=4",
            "--config.eval.max_new_tokens=4"]
    assert launch.main([f"--config={DEBUG}", "--config.method=r2ec", "--config.eval.methods=r2ec",
                        "--config.eval.baselines=", "--config.eval.reference=r2ec", *tiny, f"--workdir={r2ec}",
                        "all"]) == 0
    sf = read_score_file(r2ec / "eval" / "scores" / "r2ec.jsonl")
    test = [json.loads(x) for x in (r2ec / "data" / "benchmark" / "test.jsonl").read_text().splitlines()][:4]
    assert list(sf.user_ids) == [r["user_id"] for r in test]
    assert [list(c) for c in sf.candidates] == [r["candidates"] for r in test]
    assert np.all(np.isfinite(np.asarray(sf.scores)))
    assert (r2ec / "rl" / "checkpoints" / "2").is_dir() and not (r2ec / "sft").exists()

    # An R2Rank run on the same benchmark (RL only, 1 step) brings r2ec into its table.
    common = [f"--config={DEBUG}", "--config.sft.steps=0", "--config.rl.steps=1", "--config.rl.eval_every=0",
              "--config.eval.max_users=4", "--config.eval.max_new_tokens=4", f"--workdir={main}"]
    shutil.copytree(r2ec / "data", main / "data")        # the same benchmark (and synthetic tokenizer)
    assert launch.main([*common, "rl"]) == 0
    assert launch.main([*common, "--config.eval.methods=r2rank", "--config.eval.baselines=",
                        f"--config.eval.compare=r2ec={r2ec}", "eval"]) == 0
    results = json.loads((main / "eval" / "results.json").read_text())
    own = json.loads((r2ec / "eval" / "results.json").read_text())["methods"]["r2ec"]
    assert results["methods"]["r2ec"]["ndcg@10"] == pytest.approx(own["ndcg@10"])
    assert "r2ec" in results["significance"]["comparisons"]
    assert "| r2ec |" in (main / "eval" / "results.md").read_text()
