"""R2Rec (interaction-of-thought, issue 9 item 4) with SmolLM2-135M-Instruct on the shared Amazon Video Games
data: the data, model and optimizers of configs/smollm2_games.py; the teacher is the model itself (local) with
answer-conditioned progressive masked prompting. A small slice (docs/baselines_llm.md):

    python -m r2rank_jax.launch --config=configs/r2rec_games.py --workdir=/tmp/r2rec_games \
        --config.r2rec.teacher_users=8 --config.sft.steps=4 --config.rl.steps=2 --config.eval.max_users=10 all
"""
import dataclasses
import pathlib

from r2rank_jax.config import ExperimentConfig, R2RecSpec, load_config_file


def get_config() -> ExperimentConfig:
    base = load_config_file(pathlib.Path(__file__).with_name("smollm2_games.py"))
    return dataclasses.replace(
        base, name="r2rec_games", method="r2rec",
        r2rec=R2RecSpec(chains_per_user=3, max_item_users=200, recent_items=10, max_new_tokens=128, teacher_users=256,
                        group_size=4, response_buckets=(64, 128, 256)),
        rl=dataclasses.replace(base.rl, batch_users=1, eval_every=10),
        eval=dataclasses.replace(base.eval, methods=("r2rec",), baselines=()))
