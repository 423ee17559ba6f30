"""The launcher's synthesize stage entry point on the debug_cpu config."""
import json
import pathlib

from r2rank_jax.config import apply_overrides, load_config_file
from r2rank_jax.run.workdir import Workdir
from r2rank_jax.run.teacher import from_experiment, run_stage

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"


def test_run_stage_writes_the_corpus_into_the_workdir(tiny_world, tmp_path):
    cfg = apply_overrides(load_config_file(CONFIGS / "debug_cpu.py"), {"teacher.negatives_per_user": "2"})
    wd = Workdir(tmp_path)
    wd.data.mkdir(parents=True)
    (wd.data / "benchmark").symlink_to(tiny_world[0])
    (wd.data / "tokenizer").symlink_to(tiny_world[1])
    stats = run_stage(cfg, wd)
    n_users = sum(1 for _ in open(tiny_world[0] / "train.jsonl"))
    assert stats["responses"] == 3 * n_users and stats["teacher"] == f"scripted(noise={cfg.teacher.noise:g})"
    assert json.loads((wd.teacher / "stats.json").read_text())["accepted"] == stats["accepted"] > 0
    assert run_stage(cfg, wd)["run"]["requests"] == 0


def test_from_experiment_maps_the_teacher_section():
    cfg = apply_overrides(load_config_file(CONFIGS / "debug_cpu.py"),
                          {"teacher.kind": "openai", "teacher.base_url": "http://127.0.0.1:9/v1", "teacher.model": "r1",
                           "teacher.concurrency": "7", "data.max_prompt_tokens": "300"})
    spec, config, prompt = from_experiment(cfg)
    assert (spec.kind, spec.base_url, spec.model, spec.concurrency) == ("openai", "http://127.0.0.1:9/v1", "r1", 7)
    assert config.negatives_per_user == cfg.teacher.negatives_per_user and not config.rationalize
    assert prompt.max_prompt_tokens == 300
    local, local_config, _ = from_experiment(apply_overrides(cfg, {"teacher.kind": "local"}))
    assert local.synthetic_tiny and local_config.rationalize


def test_teacher_max_users_caps_the_synthesis_to_the_first_train_users(tiny_world, tmp_path):
    import pytest

    from r2rank_jax.config import ConfigError

    cfg = apply_overrides(load_config_file(CONFIGS / "debug_cpu.py"),
                          {"teacher.negatives_per_user": "2", "teacher.max_users": "4"})
    wd = Workdir(tmp_path)
    wd.data.mkdir(parents=True)
    (wd.data / "benchmark").symlink_to(tiny_world[0])
    (wd.data / "tokenizer").symlink_to(tiny_world[1])
    stats = run_stage(cfg, wd)
    first = [json.loads(line)["user_id"] for line in open(tiny_world[0] / "train.jsonl")][:4]
    done = [json.loads(line) for line in (wd.teacher / "done.jsonl").read_text().splitlines()]
    assert stats["responses"] == 12 and sorted({d["user_id"] for d in done}) == sorted(first)
    with pytest.raises(ConfigError, match="teacher.max_users"):
        apply_overrides(load_config_file(CONFIGS / "debug_cpu.py"), {"teacher.max_users": "-1"})
