"""`serve --config --workdir [--checkpoint]`: the model and a trained head restored from a run's checkpoint."""
import pathlib

import jax
import numpy as np
import pytest

from r2rank_jax.serve.engine import Engine
from r2rank_jax.serve.from_config import head_is_trained, load_from_config
from r2rank_jax.serve.schema import RankRequest
from r2rank_jax.teacher.generator import SamplerGenerator

CONFIG = str(pathlib.Path(__file__).resolve().parents[2] / "configs" / "debug_cpu.py")


def _save_checkpoint(model, head, directory):
    """A checkpoint as the training stages write one (step 7)."""
    from r2rank_jax.train.checkpoint import CheckpointConfig, Checkpointer, train_metadata
    from r2rank_jax.train.optim import OptimConfig, make_optimizer
    from r2rank_jax.train.state import create_train_state

    _, state = create_train_state(model, head, make_optimizer(OptimConfig()), make_optimizer(OptimConfig()),
                                  jax.random.PRNGKey(0))
    with Checkpointer(CheckpointConfig(directory=str(directory), async_save=False),
                      metadata=train_metadata(model.config, head)) as ckpt:
        ckpt.save(7, state)


@pytest.mark.slow  # builds the config's model twice (eager init) and writes an Orbax checkpoint: ~40 s when busy
def test_config_base_model_then_checkpoint_with_trained_head(tiny_world, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "tokenizer").symlink_to(tiny_world[1])
    model, tok, head, name = load_from_config(CONFIG, str(tmp_path))
    assert head is None and name == "debug_cpu" and model.config.vocab_size == len(tok)

    from r2rank_jax.config import load_config_file
    from r2rank_jax.run.build import build_model

    _, fresh_head = build_model(load_config_file(CONFIG), tok)
    assert not head_is_trained(fresh_head)
    fresh_head.w2[...] = jax.random.normal(jax.random.key(3), fresh_head.w2[...].shape)  # "trained"
    _save_checkpoint(model, fresh_head, tmp_path / "rl" / "checkpoints")

    model, tok, head, name = load_from_config(CONFIG, str(tmp_path))
    assert head is not None and name == "debug_cpu:rl-7"
    np.testing.assert_array_equal(np.asarray(head.w2[...]), np.asarray(fresh_head.w2[...]))
    engine = Engine(model, tok, SamplerGenerator(model, tok), name=name, head=head)
    out = engine.rank(RankRequest(history=("Nebula Racer - Racing - PS5 - Vortex Games",), profile=None,
                                  candidates=("A - Puzzle - PC - Red Maple", "B - Racing - PS5 - Vortex Games"),
                                  max_new_tokens=4))
    assert out["head"] == "trained" and out["ranking"][0]["score"] >= out["ranking"][1]["score"]
    with pytest.raises(ValueError, match="not a directory"):
        load_from_config(CONFIG, str(tmp_path), checkpoint=str(tmp_path / "nowhere"))
