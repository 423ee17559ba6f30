"""export_checkpoint: a training checkpoint -> HF directory (+ head safetensors) from its own metadata."""
import json

import jax
import numpy as np
from flax import nnx

from r2rank_jax.models.hf_port import load_hf
from r2rank_jax.models.safetensors_io import SafetensorsFile
from r2rank_jax.tools import export_checkpoint
from r2rank_jax.train.checkpoint import CheckpointConfig, Checkpointer, train_metadata
from r2rank_jax.train.optim import OptimConfig, make_optimizer
from r2rank_jax.train.state import create_train_state
from rl_fixtures import TINY, tiny_models


def test_export_rebuilds_model_and_head_from_the_checkpoint_alone(tmp_path, capsys):
    model, head = tiny_models(3)
    head.w2[...] = jax.random.normal(jax.random.key(1), head.w2.shape)
    tx = make_optimizer(OptimConfig())
    static, state = create_train_state(model, head, tx, tx, jax.random.PRNGKey(0))
    ckpt_dir = tmp_path / "ckpt"
    with Checkpointer(CheckpointConfig(str(ckpt_dir), best_metric="eval_loss"), train_metadata(TINY, head)) as ckpt:
        ckpt.save(3, state, metrics={"eval_loss": 1.0})
        ckpt.save(7, state.replace(llm=jax.tree.map(lambda x: x * 2, state.llm)), metrics={"eval_loss": 2.0})

    assert export_checkpoint.main(["--checkpoint", str(ckpt_dir), "--out", str(tmp_path / "hf"), "--best"]) == 0
    exported = load_hf(tmp_path / "hf")  # step 3, the best: the original weights
    tokens = jax.numpy.arange(12).reshape(2, 6) % TINY.vocab_size
    positions = jax.numpy.broadcast_to(jax.numpy.arange(6), (2, 6))
    want = model(tokens, positions, logits_at="all").logits
    got = exported(tokens, positions, logits_at="all").logits
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)
    head_file = SafetensorsFile(tmp_path / "hf" / export_checkpoint.HEAD_FILE)
    assert json.loads(head_file.metadata["head_config"]) == {"hidden_size": 32, "head_hidden": 32, "param_dtype": "float32"}
    for name in ("w1", "b1", "w2", "b2"):
        np.testing.assert_array_equal(head_file.array(name), np.asarray(getattr(head, name)[...]))

    assert export_checkpoint.main(["--checkpoint", str(ckpt_dir), "--out", str(tmp_path / "latest")]) == 0
    latest = load_hf(tmp_path / "latest")
    np.testing.assert_array_equal(np.asarray(latest.embed[...]), 2 * np.asarray(model.embed[...]))
    assert export_checkpoint.main(["--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert "checkpoint directory not found" in capsys.readouterr().err
