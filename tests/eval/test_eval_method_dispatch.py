"""Which LLM methods an eval stage scores: R2Rank runs vs baseline runs (r2rank_jax.methods)."""
import dataclasses

import pytest

from r2rank_jax.config import ConfigError, EvalSpec, ExperimentConfig
from r2rank_jax.methods import known
from r2rank_jax.stages import evaluate


def test_r2rank_run_scores_its_configured_methods():
    cfg = ExperimentConfig()
    assert evaluate.run_methods(cfg) == cfg.eval.methods
    assert set(evaluate.llm_methods(cfg)) == {"r2rank", "sft_only", "zero_shot_pointwise"}
    bad = dataclasses.replace(cfg, eval=EvalSpec(methods=("r2rank", "tallrec")))
    with pytest.raises(ConfigError, match=r"unknown method\(s\) \['tallrec'\] for a run of method 'r2rank'"):
        evaluate._check_config(bad)


@pytest.mark.parametrize("method", [m for m in known() if m != "r2rank"])
def test_baseline_run_scores_itself_first_and_skips_r2rank_checkpoints(method):
    cfg = ExperimentConfig(method=method)
    order = evaluate.run_methods(cfg)
    assert order[0] == method and set(order[1:]) == set(cfg.eval.methods)
    available = evaluate.llm_methods(cfg)
    assert method in available and "zero_shot_pointwise" in available
    assert not set(evaluate.R2RANK_CHECKPOINT_METHODS) & set(available)
    evaluate._check_config(cfg)      # the default eval.methods are accepted (r2rank/sft_only get skipped)
    with pytest.raises(ConfigError, match="unknown method"):
        evaluate._check_config(dataclasses.replace(cfg, eval=EvalSpec(methods=("bogus",))))


def test_unknown_method_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown method 'tallrek'; known: r2rank, prompt4nr"):
        ExperimentConfig(method="tallrek")
