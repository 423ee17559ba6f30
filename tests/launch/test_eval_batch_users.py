"""`eval.batch_users`: more users per decode batch at evaluation changes the speed, not the scores."""
import json
import pathlib
import shutil

import pytest

from r2rank_jax import launch
from r2rank_jax.config import ConfigError, EvalSpec

DEBUG = str(pathlib.Path(__file__).resolve().parents[2] / "configs" / "debug_cpu.py")


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_zero_means_the_rl_batch_and_negative_is_refused():
    assert EvalSpec().decode_users(2) == 2 and EvalSpec(batch_users=8).decode_users(2) == 8
    with pytest.raises(ConfigError, match="eval.batch_users must be >= 0"):
        EvalSpec(batch_users=-1)


@pytest.mark.slow
def test_eight_users_per_decode_batch_give_the_scores_of_two(debug_run, tmp_path, monkeypatch):
    """The debug run decoded its 8 test users 2 at a time (rl.batch_users); here all 8 at once. The
    greedy rationales are the same text and every score agrees to float rounding."""
    from r2rank_jax.run import builders

    seen, original = [], builders.prompts_and_pipeline

    def spy(*args, batch_users, **kwargs):
        seen.append(batch_users)
        return original(*args, batch_users=batch_users, **kwargs)

    monkeypatch.setattr(builders, "prompts_and_pipeline", spy)
    for part in ("data", "sft", "rl", "config.json"):
        src = debug_run / part
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / part)
    assert launch.main([f"--config={DEBUG}", f"--workdir={tmp_path}", "--config.eval.batch_users=8",
                        "--config.eval.methods=r2rank,sft_only", "--config.eval.baselines=random", "eval"]) == 0
    assert seen and set(seen) == {8}      # every eval scorer's pipeline, the listwise baseline's too
    for name in ("r2rank", "sft_only"):
        ours, theirs = (_rows(d / "eval" / "scores" / f"{name}.jsonl") for d in (tmp_path, debug_run))
        assert [(r["user_id"], r["candidates"]) for r in ours] == [(r["user_id"], r["candidates"]) for r in theirs]
        assert len(ours) == 8
        for a, b in zip(ours, theirs):
            assert a["scores"] == pytest.approx(b["scores"], abs=1e-4), (name, a["user_id"])
        ours, theirs = (_rows(d / "eval" / "scores" / f"{name}.rationales.jsonl") for d in (tmp_path, debug_run))
        assert ours == theirs
