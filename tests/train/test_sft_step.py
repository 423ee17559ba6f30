"""SFT step: masked response cross-entropy matches a full-logits reference; microbatching, remat and
sharding do not change the result; training lowers the loss."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r2rank_jax.data.errors import DataError
from r2rank_jax.mesh import make_mesh
from r2rank_jax.train import sft_data
from r2rank_jax.train.optim import OptimConfig, learning_rate_schedule, make_optimizer
from r2rank_jax.train.sft import SFTConfig, make_sft_step, put_batch, response_logprobs
from r2rank_jax.train.state import create_train_state, state_shardings
from rl_fixtures import TINY, tiny_models
from sft_fixtures import random_examples

OPT = OptimConfig(learning_rate=1e-2, warmup_steps=2, decay_steps=20, max_grad_norm=1.0)


def _batch(seed=0, n=8):
    return sft_data.Collate(n, (8, 16), (4, 8), pad_id=0)(random_examples(n, seed=seed))


def _state(mesh=None, seed=0, cfg=TINY):
    model, head = tiny_models(seed, cfg)
    return create_train_state(model, head, make_optimizer(OPT), make_optimizer(OptimConfig()), jax.random.PRNGKey(0), mesh)


@functools.cache
def _plain_step():
    """One jitted unsharded step shared by the tests (compiles once per batch shape)."""
    static, _ = _state()
    return make_sft_step(static, SFTConfig(), learning_rate_schedule(OPT))


def test_batch_layout_puts_response_after_fixed_prompt_width():
    ex = random_examples(3, seed=1)
    b = sft_data.Collate(4, (8, 16), (4, 8), pad_id=0)(ex)
    p = b["tokens"].shape[1] - b["loss_mask"].shape[1]
    for i, e in enumerate(ex):
        n, m = len(e.prompt_ids), len(e.response_ids)
        assert list(b["tokens"][i, p - n:p]) == list(e.prompt_ids)
        assert list(b["tokens"][i, p:p + m]) == list(e.response_ids)
        assert list(b["positions"][i, p - n:p + m]) == list(range(n + m))
        assert (b["positions"][i, :p - n] == -1).all() and (b["positions"][i, p + m:] == -1).all()
        assert b["loss_mask"][i].sum() == m
    assert not b["example_mask"][3] and b["loss_mask"][3].sum() == 0


def test_loss_is_masked_response_cross_entropy():
    static, state = _state()
    batch = _batch()
    tokens, positions = jnp.asarray(batch["tokens"]), jnp.asarray(batch["positions"])

    @jax.jit
    def both(llm):
        model = static.models(llm, state.head)[0]
        logp = response_logprobs(model, tokens, positions, 8, chunk=3)
        # Reference: full logits, next-token log-softmax, only response targets.
        logits = model(tokens, positions, logits_at="all").logits
        return logp, jax.nn.log_softmax(logits[:, :-1], axis=-1)

    logp, ref_all = both(state.llm)
    p = batch["tokens"].shape[1] - 8
    targets = batch["tokens"][:, p:]
    ref = np.take_along_axis(np.asarray(ref_all[:, p - 1:]), targets[..., None], axis=-1)[..., 0]
    mask = batch["loss_mask"]
    np.testing.assert_allclose(np.where(mask, logp, 0), np.where(mask, ref, 0), rtol=1e-5, atol=1e-5)
    _, metrics = _plain_step()(state, put_batch(batch))
    np.testing.assert_allclose(float(metrics["loss"]), -ref[mask].sum() / mask.sum(), rtol=1e-5)
    assert int(metrics["tokens"]) == mask.sum()
    assert float(metrics["lr"]) == pytest.approx(0.0)  # warmup starts at 0


def _run(steps, microbatches=1, mesh=None, remat="none"):
    static, state = _state(mesh, cfg=TINY.replace(remat=remat))
    step = _plain_step() if microbatches == 1 and mesh is None and remat == "none" else make_sft_step(
        static, SFTConfig(microbatches=microbatches), learning_rate_schedule(OPT), state_shardings(state), mesh)
    losses = []
    for i in range(steps):
        state, m = step(state, put_batch(_batch(seed=i % 2), mesh))
        losses.append(float(m["loss"]))
    return state, losses


@pytest.mark.slow
def test_microbatches_remat_and_mesh_match_plain_step_and_loss_falls():
    state, losses = _run(4)
    assert losses[-1] < losses[0] - 0.2
    mesh = make_mesh("data:1,fsdp:2,tensor:2", devices=jax.devices()[:4])
    for kwargs in ({"microbatches": 2, "remat": "full"}, {"mesh": mesh}):
        other, other_losses = _run(4, **kwargs)
        np.testing.assert_allclose(other_losses, losses, rtol=2e-5, err_msg=str(kwargs))
        for a, b in zip(jax.tree.leaves(state.llm), jax.tree.leaves(other.llm)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5, err_msg=str(kwargs))
    assert int(state.step) == 4


def test_non_finite_loss_skips_the_update():
    _, state = _state()
    step = _plain_step()
    batch = put_batch(_batch())
    poisoned = jax.tree.map(lambda x: x, state)
    poisoned = poisoned.replace(llm=jax.tree.map(lambda x: x * jnp.nan if x.ndim == 1 else x, poisoned.llm))
    before = jax.tree.map(np.asarray, poisoned.llm)
    new, metrics = step(poisoned, batch)
    assert int(metrics["skipped"]) == 1 and int(new.step) == 0
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(new.llm)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _shared_examples(n=8, seed=0, shared=5):
    """`random_examples` whose prompts all begin with the same `shared` tokens (an instruction block)."""
    head = tuple(int(x) for x in np.random.default_rng(99).integers(3, 40, shared))
    return [dataclasses.replace(e, prompt_ids=head + e.prompt_ids) for e in random_examples(n, seed=seed)]


def test_shared_prefix_layout_then_the_rest_of_each_prompt_left_padded():
    ex = _shared_examples(3, seed=1)
    b = sft_data.Collate(4, (24,), (8,), pad_id=0, shared_prefix=5)(ex)
    p = 24
    for i, e in enumerate(ex):
        n, m = len(e.prompt_ids), len(e.response_ids)
        assert list(b["tokens"][i, :5]) == list(e.prompt_ids[:5]) and list(b["positions"][i, :5]) == list(range(5))
        assert list(b["tokens"][i, p - n + 5:p]) == list(e.prompt_ids[5:])
        assert list(b["positions"][i, p - n + 5:p + m]) == list(range(5, n + m))
        assert (b["positions"][i, 5:p - n + 5] == -1).all() and list(b["tokens"][i, p:p + m]) == list(e.response_ids)
    # The padding row carries the prefix too (any row can stand for it), and nothing else.
    assert list(b["tokens"][3, :5]) == list(ex[0].prompt_ids[:5]) and (b["positions"][3, 5:] == -1).all()
    assert not b["example_mask"][3]


def test_shared_prefix_steps_equal_per_row_steps():
    """Three steps on batches in the shared layout (one with a padding row, microbatches of 2 rows) give the same
    losses and parameters as the same batches laid out per row."""
    static, state = _state()
    shared_step = make_sft_step(static, SFTConfig(microbatches=2, shared_prefix=5), learning_rate_schedule(OPT))
    plain_step = make_sft_step(static, SFTConfig(microbatches=2), learning_rate_schedule(OPT))
    states = {"shared": state, "plain": _state()[1]}
    for i, n in enumerate((8, 8, 5)):
        ex = _shared_examples(n, seed=i)
        batches = {"shared": sft_data.Collate(8, (24,), (8,), 0, shared_prefix=5)(ex),
                   "plain": sft_data.Collate(8, (24,), (8,), 0)(ex)}
        losses = {}
        for name, step in (("shared", shared_step), ("plain", plain_step)):
            states[name], m = step(states[name], put_batch(batches[name]))
            losses[name] = float(m["loss"])
        assert losses["shared"] == pytest.approx(losses["plain"], rel=1e-5)
    for a, b in zip(jax.tree.leaves(states["shared"].llm), jax.tree.leaves(states["plain"].llm)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    # The check can fail: a row whose first columns differ from row 0's is read per row by the plain step and
    # through row 0's prefix by the shared one.
    batch = sft_data.Collate(8, (24,), (8,), 0, shared_prefix=5)(_shared_examples(8, seed=0))
    batch["tokens"][3, 2] = (batch["tokens"][3, 2] + 1) % 40
    _, m = shared_step(_state()[1], put_batch(batch))
    _, ref = plain_step(_state()[1], put_batch(batch))
    assert abs(float(m["loss"]) - float(ref["loss"])) > 1e-4


def test_a_prompt_without_the_shared_prefix_is_refused_by_name():
    ex = _shared_examples(4)
    ex[2] = dataclasses.replace(ex[2], prompt_ids=(39,) + ex[2].prompt_ids[1:])
    with pytest.raises(DataError, match=r"random:3.*shared_prefix=5.*shares only its first 0 tokens"):
        sft_data.make_dataset(ex, sft_data.SFTDataConfig(batch_size=2, prompt_buckets=(24,), response_buckets=(8,),
                                                         shared_prefix=5), pad_id=0)
    with pytest.raises(ValueError, match="shared_prefix must be in"):
        sft_data.SFTDataConfig(prompt_buckets=(24,), shared_prefix=24)
