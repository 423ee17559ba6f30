"""R²ec trained with RecPO (method "r2ec", docs/baselines_llm.md) on SmolLM2-135M-Instruct × Amazon Video
Games: the data, model and evaluation of configs/smollm2_games.py; LoRA r=4, α=128 (config.R2EC_LORA),
G=4 reasonings per user, τ=0.02, ε 0.2/0.28. No synthesize/SFT stage (RecPO starts from the base model).

    python -m r2rank_jax.launch --config=configs/r2ec_games.py --workdir=/tmp/r2ec_games all
"""
import dataclasses
import pathlib

from r2rank_jax.config import ExperimentConfig, OptimSpec, R2ECSpec, load_config_file


def get_config() -> ExperimentConfig:
    base = load_config_file(pathlib.Path(__file__).with_name("smollm2_games.py"))
    r2ec = R2ECSpec(steps=30, batch_users=1, group_size=4, max_new_tokens=96, temperature=1.0,
                    optim=OptimSpec(learning_rate=1e-5), item_tokens=96, eval_every=10, eval_users=16,
                    checkpoint_every=10)
    return dataclasses.replace(base, name="r2ec_games", method="r2ec", r2ec=r2ec,
                               eval=dataclasses.replace(base.eval, methods=("r2ec",), baselines=(), reference="r2ec"))
