"""The paper's smaller setting: Qwen2.5-1.5B-Instruct, otherwise the same as configs/qwen2_5_3b.py.

    python -m r2rank_jax.launch --config=configs/qwen2_5_1_5b.py --mesh=fsdp:8 \
        --config.model.path=/ckpt/Qwen2.5-1.5B-Instruct --workdir=/runs/qwen1_5b all

Memory plan: `python -m r2rank_jax.tools.aot_memory --config=configs/qwen2_5_1_5b.py --mesh=fsdp:8 --hbm_gib=16`.
"""
import dataclasses
import pathlib

from r2rank_jax.config import ExperimentConfig, load_config_file


def get_config() -> ExperimentConfig:
    base = load_config_file(pathlib.Path(__file__).with_name("qwen2_5_3b.py"))
    model = dataclasses.replace(base.model, path="checkpoints/Qwen2.5-1.5B-Instruct", preset="qwen2.5-1.5b-instruct")
    return dataclasses.replace(base, name="qwen2_5_1_5b", model=model)
