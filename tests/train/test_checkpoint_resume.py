"""Exact resume through the launcher (debug config, `sft` stage): N steps in one run == N/2, then
`--resume` with N == (SIGTERM to a real `python -m r2rank_jax.launch` process) + `--resume`, step by step
(losses, gradient norms, learning rates) and bitwise (final parameters)."""
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from flax import nnx

from r2rank_jax import launch
from r2rank_jax.config import load_config_file
from r2rank_jax.run.build import build_model, load_tokenizer
from r2rank_jax.run.workdir import Workdir
from r2rank_jax.train.checkpoint import Checkpointer, abstract_like
from r2rank_jax.train.logging import read_metrics

REPO = pathlib.Path(__file__).resolve().parents[2]
DEBUG = str(REPO / "configs" / "debug_cpu.py")
N = 240


def _argv(workdir, steps, *extra):
    # Held-out evaluation and checkpoints only at the end: they do not touch the training state.
    return [f"--config={DEBUG}", f"--workdir={workdir}", f"--config.sft.steps={steps}", f"--config.sft.eval_every={N}",
            f"--config.sft.checkpoint_every={N}", *extra, "sft"]


def _trace(workdir):
    return {r["step"]: (r["loss"], r["grad_norm"], r["lr"]) for r in read_metrics(workdir, "sft")}


def _final_params(workdir):
    cfg = load_config_file(DEBUG)
    model, head = build_model(cfg, load_tokenizer(cfg, Workdir(workdir)))
    abstract = abstract_like({"llm": nnx.split(model)[1], "head": nnx.split(head)[1]})
    with Checkpointer.reopen(workdir / "sft" / "checkpoints") as ckpt:
        return ckpt.latest_step(), ckpt.restore_params(abstract)


def _assert_same(ref_dir, other_dir):
    assert _trace(other_dir) == _trace(ref_dir)      # every logged step's loss, grad norm and lr, exactly
    (s1, p1), (s2, p2) = _final_params(ref_dir), _final_params(other_dir)
    assert s1 == s2 == N
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_resume_and_sigterm_resume_are_exact(tmp_path):
    base = tmp_path / "base"
    for stage in ("prepare", "synthesize"):
        assert launch.main([f"--config={DEBUG}", f"--workdir={base}", stage]) == 0
    ref, half, sig = (tmp_path / n for n in ("ref", "half", "sig"))
    for d in (ref, half, sig):
        shutil.copytree(base, d)
    assert launch.main(_argv(ref, N)) == 0
    assert len(_trace(ref)) >= N // 10

    assert launch.main(_argv(half, N // 2)) == 0      # a finished shorter run, then continued to N
    with pytest.raises(Exception, match="resume"):      # without --resume, existing checkpoints are refused
        launch.main(_argv(half, N))
    assert launch.main(_argv(half, N, "--resume")) == 0
    _assert_same(ref, half)

    # A real preemption: SIGTERM to a running launcher process, which must checkpoint and exit 0.
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "r2rank_jax.launch", *_argv(sig, N)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    metrics = sig / "metrics.jsonl"
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and '"stage": "sft"' in metrics.read_text():
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before SIGTERM: {proc.communicate()}"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert '"preempted": true' in out
    with Checkpointer.reopen(sig / "sft" / "checkpoints") as ckpt:
        stopped = ckpt.latest_step()
    assert 10 <= stopped < N, (stopped, out)
    assert launch.main(_argv(sig, N, "--resume")) == 0
    _assert_same(ref, sig)
