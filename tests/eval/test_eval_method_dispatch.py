"""Which scorers an eval stage runs, the same rule for every registered method (r2rank_jax.methods.eval_plan)."""
import dataclasses

import pytest

from r2rank_jax.config import ConfigError, EvalSpec, ExperimentConfig
from r2rank_jax.methods import registry
from r2rank_jax.methods.eval_plan import eval_plan


def test_r2rank_run_scores_its_configured_methods():
    cfg = ExperimentConfig()
    plan = eval_plan(cfg)
    assert plan.order == cfg.eval.methods == ("r2rank", "sft_only", "zero_shot_pointwise")
    assert set(plan.scorers) == {"r2rank", "sft_only", "zero_shot_pointwise"} and not plan.unavailable
    # Another method's checkpoint scorer is skipped with the reason, not an error.
    plan = eval_plan(dataclasses.replace(cfg, eval=EvalSpec(methods=("r2rank", "tallrec"))))
    assert set(plan.scorers) == {"r2rank"} and "method 'tallrec'" in plan.unavailable["tallrec"]


def test_every_method_scores_itself_first_and_skips_other_runs_checkpoints():
    owners = registry.scorer_owners()
    for method in registry.known():
        cfg = ExperimentConfig(method=method)
        plan = eval_plan(cfg)
        own = registry.get(method).scorers()
        if method in own:
            assert plan.order[0] == method
        assert set(plan.order) == set(cfg.eval.methods) | ({method} & set(own))
        for name in plan.order:
            owner, scorer = owners[name]
            assert (name in plan.scorers) == (owner == method or not scorer.reads_run), (method, name)
            assert (name in plan.unavailable) != (name in plan.scorers)
        assert "zero_shot_pointwise" in plan.scorers            # reads no run: every run can score it
        with pytest.raises(ConfigError, match=r"unknown method\(s\) \['bogus'\]"):
            eval_plan(dataclasses.replace(cfg, eval=EvalSpec(methods=("bogus",))))


def test_unknown_method_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown method 'tallrek'; known: r2rank, prompt4nr"):
        registry.get("tallrek")


def test_registry_refuses_a_second_method_of_the_same_name():
    from r2rank_jax.methods.protocol import MethodBase

    class Impostor(MethodBase):
        name = "tallrec"

    with pytest.raises(ValueError, match="registered twice"):
        registry.register(Impostor)
