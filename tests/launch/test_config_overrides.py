"""Experiment configs: files, command-line overrides, strict round trip, workdir guard."""
import json
import pathlib

import pytest

from r2rank_jax.config import ConfigError, ExperimentConfig, apply_overrides, from_dict, load_config_file, to_dict, write_resolved

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["demo", "debug_cpu"])
def test_config_files_load_and_round_trip(name):
    cfg = load_config_file(CONFIGS / f"{name}.py")
    assert cfg.name == name
    assert from_dict(json.loads(json.dumps(to_dict(cfg)))) == cfg


def test_overrides_are_typed_and_strict():
    cfg = ExperimentConfig()
    out = apply_overrides(cfg, {"rl.steps": "7", "rl.temperature": "0.5", "rl.head_grad_into_llm": "true",
                                "data.prefix_buckets": "128,256", "model.kind": "hf", "rl.llm_optim.learning_rate": "2e-6"})
    assert (out.rl.steps, out.rl.temperature, out.rl.head_grad_into_llm) == (7, 0.5, True)
    assert out.data.prefix_buckets == (128, 256) and out.model.kind == "hf" and out.rl.llm_optim.learning_rate == 2e-6
    with pytest.raises(ConfigError, match=r"unknown config field 'rl.stepz': RLSpec has no 'stepz'"):
        apply_overrides(cfg, {"rl.stepz": "1"})
    with pytest.raises(ConfigError, match=r"--config.rl.steps: expected int, got 'many'"):
        apply_overrides(cfg, {"rl.steps": "many"})
    with pytest.raises(ConfigError, match="is a section"):
        apply_overrides(cfg, {"rl": "1"})
    with pytest.raises(ConfigError, match=r"config.rl: unknown field\(s\) \['bogus'\]"):
        from_dict({"rl": {"bogus": 1}})


def test_workdir_of_another_config_is_refused(tmp_path):
    write_resolved(ExperimentConfig(name="a"), tmp_path)
    write_resolved(ExperimentConfig(name="a", seed=3), tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 3
    with pytest.raises(ConfigError, match="holds a run of config 'a', not 'b'"):
        write_resolved(ExperimentConfig(name="b"), tmp_path)


def test_auto_compute_dtype_is_resolved_per_backend_and_written(tmp_path):
    import json

    from r2rank_jax import launch
    from r2rank_jax.config import ExperimentConfig, compute_dtype, resolve_backend_defaults

    assert ExperimentConfig().model.dtype == "auto"
    assert compute_dtype("auto", "cpu") == "float32"
    assert compute_dtype("auto", "gpu") == compute_dtype("auto", "tpu") == "bfloat16"
    assert compute_dtype("float32", "tpu") == "float32"                         # the config's own choice wins
    assert resolve_backend_defaults(ExperimentConfig(), "tpu").model.dtype == "bfloat16"
    debug = str(pathlib.Path(__file__).resolve().parents[2] / "configs" / "debug_cpu.py")
    assert launch.main([f"--config={debug}", f"--workdir={tmp_path}", "--config.method=zero_shot_pointwise",
                        "synthesize"]) == 0
    assert json.loads((tmp_path / "config.json").read_text())["model"]["dtype"] == "float32"   # this CPU host
