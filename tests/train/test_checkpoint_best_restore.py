"""Evaluation and the next stage load a run's best checkpoint (by the metric it tracked), not its latest."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from r2rank_jax.run import builders as common
from r2rank_jax.train.checkpoint import CheckpointConfig, Checkpointer, train_metadata
from r2rank_jax.train.state import create_train_state
from rl_fixtures import tiny_models


def _write_run(run_dir, metric, mode, values):
    """Checkpoints 1..n whose head weights all equal the step number, saved with metric values `values`."""
    model, head = tiny_models()
    static, state = create_train_state(model, head, optax.sgd(0.1), optax.sgd(0.1), jax.random.PRNGKey(0))
    config = CheckpointConfig(directory=str(run_dir / "checkpoints"), best_metric=metric, best_mode=mode, keep_last=1)
    with Checkpointer(config, metadata=train_metadata(model.config, head)) as ckpt:
        for step, value in enumerate(values, start=1):
            head_state = jax.tree.map(lambda x: jnp.full_like(x, step), state.head)
            ckpt.save(step, state.replace(step=jnp.int32(step), head=head_state), metrics={metric: value})


@pytest.mark.parametrize("metric,mode,values,best", [
    ("valid_ndcg@10", "max", [0.2, 0.5, 0.3, 0.4], 2),
    ("eval_loss", "min", [0.9, 0.7, 0.8, 0.75], 2),
])
def test_restore_params_takes_the_best_step(tmp_path, metric, mode, values, best):
    _write_run(tmp_path, metric, mode, values)
    model, head = tiny_models(seed=5)
    assert common.restore_params(model, head, tmp_path) == best
    leaves = jax.tree.leaves(nnx.state(head, nnx.Param))
    assert all(np.all(np.asarray(x) == best) for x in leaves)
    with Checkpointer.reopen(tmp_path / "checkpoints") as ckpt:
        assert ckpt.config.best_metric == metric and ckpt.config.best_mode == mode
        assert ckpt.latest_step() == len(values) and ckpt.best_step() == best


def test_a_run_without_a_best_metric_restores_its_latest(tmp_path):
    model, head = tiny_models()
    static, state = create_train_state(model, head, optax.sgd(0.1), optax.sgd(0.1), jax.random.PRNGKey(0))
    with Checkpointer(CheckpointConfig(directory=str(tmp_path / "checkpoints")),
                      metadata=train_metadata(model.config, head)) as ckpt:
        for step in (1, 2):
            ckpt.save(step, state.replace(head=jax.tree.map(lambda x: jnp.full_like(x, step), state.head)))
    fresh, fresh_head = tiny_models(seed=3)
    assert common.restore_params(fresh, fresh_head, tmp_path) == 2
    assert all(np.all(np.asarray(x) == 2) for x in jax.tree.leaves(nnx.state(fresh_head, nnx.Param)))
