"""Exact resume: N steps in one run == N/2 + resume + N/2 == (SIGTERM in a real subprocess) + resume,
step by step (losses) and bitwise (final parameters)."""
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from r2rank_jax.train import sft_run
from r2rank_jax.train.checkpoint import CheckpointConfig, Checkpointer, abstract_like
from r2rank_jax.train.logging import read_metrics
from sft_fixtures import run_argv, small_run_files

N = 12
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(argv, step_fn=None):
    setup = sft_run.build(sft_run.parse_args(argv), step_fn)
    abstract = abstract_like({"llm": setup.state.llm, "head": setup.state.head})
    return setup.step_fn, abstract, sft_run.execute(setup)


def _trace(workdir):
    return {r["step"]: (r["loss"], r["grad_norm"], r["lr"]) for r in read_metrics(workdir, "sft")}


def _final_params(workdir, abstract):
    with Checkpointer(CheckpointConfig(str(workdir / "checkpoints"))) as ckpt:
        return ckpt.latest_step(), ckpt.restore_params(abstract)


def _assert_same(ref_dir, other_dir, abstract):
    assert _trace(other_dir) == _trace(ref_dir)  # every step's loss, grad norm and lr, exactly
    (s1, p1), (s2, p2) = _final_params(ref_dir, abstract), _final_params(other_dir, abstract)
    assert s1 == s2 == N
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_resume_and_sigterm_resume_are_exact(tmp_path):
    FILES = small_run_files(tmp_path / "inputs")
    ref = tmp_path / "ref"
    step_fn, abstract, summary = _run(run_argv(FILES, ref, N))
    assert summary["step"] == N and not summary["preempted"]

    half = tmp_path / "half"
    _, _, s = _run(run_argv(FILES, half, N, "--stop_at", str(N // 2)), step_fn)
    assert s["step"] == N // 2
    _, _, s = _run(run_argv(FILES, half, N, "--resume"), step_fn)
    assert s["resumed_from"] == N // 2 and s["step"] == N
    _assert_same(ref, half, abstract)

    # A real preemption: SIGTERM to a running CLI process, which must checkpoint and exit 0.
    sig = tmp_path / "sig"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "r2rank_jax.train.sft_run",
                             *run_argv(FILES, sig, N, "--throttle", "0.4")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    metrics = sig / "metrics.jsonl"
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    assert proc.poll() is None, f"the run ended before SIGTERM: {proc.communicate()}"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    with Checkpointer(CheckpointConfig(str(sig / "checkpoints"))) as ckpt:
        stopped = ckpt.latest_step()
    assert 3 <= stopped < N, (stopped, out)
    assert '"preempted": true' in out
    _, _, s = _run(run_argv(FILES, sig, N, "--resume"), step_fn)
    assert s["resumed_from"] == stopped and s["step"] == N
    _assert_same(ref, sig, abstract)
