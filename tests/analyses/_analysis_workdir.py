"""Tiny debug workdirs for the analyses tests: prepared synthetic world, an `rl` checkpoint of the random
base model with a random (non-zero) scoring head, and the eval stage's score files for NUM_USERS users."""
import json
import pathlib

import jax
import jax.numpy as jnp

from r2rank_jax import launch

DEBUG = str(pathlib.Path(__file__).resolve().parents[2] / "configs" / "debug_cpu.py")
NUM_USERS = 4


def save_random_head_checkpoint(workdir: pathlib.Path, seed: int = 0) -> None:
    """WORKDIR/rl/checkpoints/1: the base model and a head whose output layer is random, so that
    candidates get distinct scores (the default head's zero output layer ties them all)."""
    from r2rank_jax.config import OptimSpec, from_dict
    from r2rank_jax.run import builders as common
    from r2rank_jax.run.build import build_model
    from r2rank_jax.run.workdir import Workdir

    wd = Workdir(workdir)
    cfg = from_dict(json.loads((workdir / "config.json").read_text()))
    model, head = build_model(cfg, common.tokenizer(cfg, wd, "test"))
    head.w2.set_value(jax.random.normal(jax.random.PRNGKey(seed), head.w2.shape, jnp.float32))
    _, state = common.train_state(model, head, OptimSpec(), OptimSpec(), seed)
    with common.checkpointer(wd.rl, model, head, None) as ckpt:
        ckpt.save(1, state)


def make_workdir(path: pathlib.Path, seed: int = 0, evaluate: bool = True) -> pathlib.Path:
    args = [f"--config={DEBUG}", f"--workdir={path}", f"--config.eval.max_users={NUM_USERS}",
            f"--config.data.seed={seed}"]
    assert launch.main(args + ["prepare"]) == 0
    if evaluate:
        save_random_head_checkpoint(path)
        assert launch.main(args + ["eval"]) == 0
    return path
