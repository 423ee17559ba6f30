"""The launcher on the debug config: prepare and RL run end to end; bad inputs fail clearly."""
import json
import pathlib

import pytest

from r2rank_jax import launch
from r2rank_jax.config import ConfigError
from r2rank_jax.run.workdir import MissingInputError

DEBUG = str(pathlib.Path(__file__).resolve().parents[2] / "configs" / "debug_cpu.py")


def test_unknown_config_key_and_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="unknown config field 'rl.stepz'"):
        launch.main([f"--config={DEBUG}", f"--workdir={tmp_path}", "--config.rl.stepz=3", "prepare"])
    with pytest.raises(SystemExit):
        launch.main([f"--config={DEBUG}", f"--workdir={tmp_path}", "--bogus=1", "prepare"])


def test_help_lists_every_registered_method_and_its_stages(capsys):
    from r2rank_jax.methods import protocol, registry

    with pytest.raises(SystemExit):
        launch.main(["--help"])
    out = capsys.readouterr().out
    for name in registry.known():
        stages = ", ".join(protocol.stages_of(registry.get(name))) or "none"
        assert any(line.split()[:1] == [name] and f"stages: {stages};" in line for line in out.splitlines()), name
    assert "r2rank" in out and "stages: synthesize, sft, rl;" in out


@pytest.mark.parametrize("method,stage", [("tallrec", "rl"), ("r2ec", "sft"), ("zero_shot_pointwise", "synthesize")])
def test_a_stage_the_method_lacks_is_skipped_the_same_way(tmp_path, capsys, method, stage):
    assert launch.main([f"--config={DEBUG}", f"--workdir={tmp_path}", f"--config.method={method}", stage]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {"stage": stage, "skipped": f"method {method!r} has no {stage!r} stage"}


def test_unknown_method_fails_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="method: unknown method 'tallrek'; known: r2rank, prompt4nr"):
        launch.main([f"--config={DEBUG}", f"--workdir={tmp_path / 'w'}", "--config.method=tallrek", "prepare"])
    assert not (tmp_path / "w").exists()


def test_stage_without_its_inputs(tmp_path):
    with pytest.raises(MissingInputError, match="stage 'rl' needs .*benchmark, which stage 'prepare' writes"):
        launch.main([f"--config={DEBUG}", f"--workdir={tmp_path}", "rl"])


def test_workdir_of_another_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"name": "demo"}))
    with pytest.raises(ConfigError, match="holds a run of config 'demo', not 'debug_cpu'"):
        launch.main([f"--config={DEBUG}", f"--workdir={tmp_path}", "prepare"])


@pytest.mark.slow
def test_all_stages_write_metrics_checkpoints_and_results(debug_run):
    tmp_path = debug_run
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["stage"] == "rl"]
    evals = [r for r in rows if r["stage"] == "rl_eval"]
    assert train and evals and train[-1]["step"] == 2 and train[-1]["skipped"] == 0
    assert 0.0 <= evals[-1]["valid_ndcg@10"] <= 1.0
    assert (tmp_path / "rl" / "checkpoints" / "2").is_dir()
    assert json.loads((tmp_path / "config.json").read_text())["rl"]["steps"] == 2
    assert (tmp_path / "teacher" / "corpus.jsonl").stat().st_size > 0
    assert any(r["stage"] == "sft" for r in rows) and (tmp_path / "sft" / "checkpoints").is_dir()
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert {"r2rank", "sft_only", "zero_shot_pointwise", "random", "popularity"} <= set(results["methods"])
    assert all(0.0 <= m["ndcg@10"] <= 1.0 for m in results["methods"].values())
    assert (tmp_path / "eval" / "results.md").read_text().startswith("# Results")


@pytest.mark.slow
def test_rerun_with_the_same_seed_gives_the_same_numbers(debug_run, tmp_path):
    """A second `all` run of the same config in a fresh workdir: identical per-user scores and results."""
    assert launch.main([f"--config={DEBUG}", f"--workdir={tmp_path}", "--config.rl.steps=2", "all"]) == 0
    first = json.loads((debug_run / "eval" / "results.json").read_text())
    second = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert first["methods"] == second["methods"]
    names = sorted(p.name for p in (debug_run / "eval" / "scores").glob("*.jsonl"))
    assert names == sorted(p.name for p in (tmp_path / "eval" / "scores").glob("*.jsonl")) and "r2rank.jsonl" in names
    for name in names:
        assert (debug_run / "eval" / "scores" / name).read_bytes() == (tmp_path / "eval" / "scores" / name).read_bytes()


@pytest.mark.slow
def test_ppo_epochs_bind_the_clip_in_the_rl_stage(debug_run, tmp_path):
    import shutil

    for part in ("data", "teacher", "sft", "config.json"):
        src = debug_run / part
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / part)
    assert launch.main([f"--config={DEBUG}", f"--workdir={tmp_path}", "--config.rl.ppo_epochs=4",
                        "--config.rl.ppo_minibatches=2", "--config.rl.batch_users=4", "--config.rl.llm_optim.learning_rate=0.01",
                        "--config.rl.clip_eps=0.05", "--config.rl.steps=2", "rl"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    rl = [r for r in rows if r["stage"] == "rl"]
    assert rl and max(r["clip_frac"] for r in rl) > 0.0
    assert {"ratio_mean", "ratio_max", "approx_kl"} <= set(rl[-1])


def test_rl_batch_that_does_not_split_is_refused_before_running(tmp_path):
    with pytest.raises(ConfigError, match="needs >= 2 users per microbatch"):
        launch.main([f"--config={DEBUG}", f"--workdir={tmp_path}", "--config.rl.ppo_minibatches=2", "rl"])


@pytest.mark.slow
def test_eval_runs_the_oracle_and_passes_baseline_arguments(debug_run, tmp_path):
    import shutil

    for part in ("data", "config.json"):
        src = debug_run / part
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / part)
    common = [f"--config={DEBUG}", f"--workdir={tmp_path}", "--config.eval.methods=zero_shot_pointwise",
              "--config.eval.max_users=4"]
    with pytest.raises(ConfigError, match=r"eval.baselines: unknown baseline\(s\) \['sasrek'\]"):
        launch.main([*common, "--config.eval.baselines=random,sasrek", "eval"])
    assert not (tmp_path / "eval" / "scores").exists()     # refused before any model ran
    assert launch.main([*common, "--config.eval.baselines=oracle,sasrec",
                        "--config.eval.baseline_args=sasrec --epochs 1 --seed 5", "eval"]) == 0
    meta = json.loads((tmp_path / "eval" / "scores" / "sasrec.full.jsonl.meta.json").read_text())
    assert meta["args"]["epochs"] == 1 and meta["args"]["seed"] == 5
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["methods"]["oracle"]["ndcg@10"] > results["methods"]["zero_shot_pointwise"]["ndcg@10"]
    table = (tmp_path / "eval" / "results.md").read_text()
    assert "| *oracle (ceiling)* |" in table and "a ceiling, not a method" in table
