"""Exact resume through the launcher (debug config, `sft` stage, N steps, every step logged, a warmup +
cosine learning-rate schedule): one uninterrupted run == a run of N/2 steps continued to N with
`--resume` == a `python -m r2rank_jax.launch` process stopped by SIGTERM, continued with `--resume`;
step by step (loss, gradient norm, learning rate) and bitwise (final parameters).

Only the launcher's interface is used: its command line, config overrides and workdir layout
(WORKDIR/metrics.jsonl, WORKDIR/sft/checkpoints); the checkpoints are read with train.checkpoint onto
the shapes their own metadata records.
"""
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

from r2rank_jax import launch
from r2rank_jax.train.checkpoint import Checkpointer, with_rule_shardings
from r2rank_jax.train.logging import read_metrics

REPO = pathlib.Path(__file__).resolve().parents[2]
DEBUG = str(REPO / "configs" / "debug_cpu.py")
N = 12


def _argv(workdir, steps, *extra):
    # sft.eval_every=0: no held-out evaluation, so every step is logged (log_every = min(10, eval_every) or 1);
    # checkpoints only at the end of a run and on SIGTERM. The schedule (2 warmup steps, then cosine decay
    # over 10) does not depend on sft.steps, so a run of N/2 steps continued to N follows the one of N.
    return [f"--config={DEBUG}", f"--workdir={workdir}", f"--config.sft.steps={steps}", "--config.sft.eval_every=0",
            "--config.sft.checkpoint_every=0", "--config.sft.optim.warmup_steps=2",
            f"--config.sft.optim.decay_steps={N - 2}", *extra, "sft"]


def _trace(workdir):
    return {r["step"]: (r["loss"], r["grad_norm"], r["lr"]) for r in read_metrics(workdir, "sft")}


def _final_params(workdir):
    """(latest step, its {"llm", "head"} parameters), restored onto the shapes and dtypes the checkpoint records."""
    with Checkpointer.reopen(workdir / "sft" / "checkpoints") as ckpt:
        step = ckpt.latest_step()
        saved = ckpt.manager.item_metadata(step)["params"]
        abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), saved)
        return step, ckpt.restore_params(with_rule_shardings(abstract, None), step)


def _assert_same(ref_dir, other_dir):
    ref = _trace(ref_dir)
    assert sorted(ref) == list(range(1, N + 1))
    assert _trace(other_dir) == ref                  # every step's loss, grad norm and lr, exactly
    (s1, p1), (s2, p2) = _final_params(ref_dir), _final_params(other_dir)
    assert s1 == s2 == N
    assert jax.tree.structure(p1) == jax.tree.structure(p2)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _sft_records(workdir):
    path = workdir / "metrics.jsonl"
    return path.read_text().count('"stage": "sft"') if path.exists() else 0


@pytest.mark.slow
def test_resume_and_sigterm_resume_are_exact(tmp_path, capsys):
    base = tmp_path / "base"
    for stage in ("prepare", "synthesize"):
        assert launch.main([f"--config={DEBUG}", f"--workdir={base}", stage]) == 0
    ref, half, sig = (tmp_path / n for n in ("ref", "half", "sig"))
    for d in (ref, half, sig):
        shutil.copytree(base, d)

    assert launch.main(_argv(ref, N)) == 0
    lrs = [lr for _, _, lr in _trace(ref).values()]
    assert lrs[0] < lrs[1] and lrs[2] > lrs[-1] > 0   # warmup, then decay: the schedule's position matters

    assert launch.main(_argv(half, N // 2)) == 0      # a finished run of N/2 steps, then continued to N
    with pytest.raises(FileExistsError, match="already holds checkpoints"):  # not without --resume
        launch.main(_argv(half, N))
    capsys.readouterr()
    assert launch.main(_argv(half, N, "--resume")) == 0
    assert f"resume: restored step {N // 2} " in capsys.readouterr().err
    _assert_same(ref, half)

    # A real preemption: SIGTERM to a running launcher process, which must checkpoint and exit 0. The
    # process is paused (SIGSTOP) as soon as it has logged 3 steps, so that the signal lands mid-run
    # however fast the steps are; it is handled once the process continues.
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(tmp_path / "sig.out", "w+") as out, open(tmp_path / "sig.err", "w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "r2rank_jax.launch", *_argv(sig, N)], env=env,
                                stdout=out, stderr=err, text=True)
        try:
            deadline = time.time() + 300
            while time.time() < deadline and proc.poll() is None and _sft_records(sig) < 3:
                time.sleep(0.01)
            if proc.poll() is None:
                proc.send_signal(signal.SIGSTOP)
            assert proc.poll() is None, f"the run ended before SIGTERM: {(tmp_path / 'sig.err').read_text()[-3000:]}"
            logged = _sft_records(sig)
            assert 3 <= logged < N, logged
            proc.send_signal(signal.SIGTERM)
            proc.send_signal(signal.SIGCONT)
            returncode = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    assert returncode == 0, stderr[-3000:]
    assert '"preempted": true' in stdout
    with Checkpointer.reopen(sig / "sft" / "checkpoints") as ckpt:
        stopped = ckpt.latest_step()
        assert ckpt.all_steps() == [stopped]
    assert logged <= stopped < N, (logged, stopped, stdout)
    assert f"SIGTERM: saved step {stopped} " in stderr
    capsys.readouterr()
    assert launch.main(_argv(sig, N, "--resume")) == 0
    assert f"resume: restored step {stopped} " in capsys.readouterr().err
    _assert_same(ref, sig)
