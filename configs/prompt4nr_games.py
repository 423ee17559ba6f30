"""Prompt4NR (r2rank_jax.methods.prompt4nr) on SmolLM2-135M-Instruct × Amazon Video Games: the data,
model and evaluation of configs/smollm2_games.py; full fine-tuning with the two-class verbalizer loss
(relevant {Yes, yes}, irrelevant {No, no}), 4 negatives per positive, scored by P(relevant).

    python -m r2rank_jax.launch --config=configs/prompt4nr_games.py --workdir=/tmp/prompt4nr_games all

An R2Rank run of configs/smollm2_games.py brings it into its table with
`--config.eval.compare=prompt4nr=/tmp/prompt4nr_games`.
"""
import dataclasses
import pathlib

from r2rank_jax.config import ExperimentConfig, OptimSpec, load_config_file


def get_config() -> ExperimentConfig:
    base = load_config_file(pathlib.Path(__file__).with_name("smollm2_games.py"))
    prompt4nr = dataclasses.replace(base.prompt4nr, steps=200, batch_size=10, eval_every=50, eval_users=32,
                                    checkpoint_every=50,
                                    optim=OptimSpec(learning_rate=2e-5, warmup_steps=10, decay_steps=190))
    return dataclasses.replace(base, name="prompt4nr_games", method="prompt4nr", prompt4nr=prompt4nr,
                               eval=dataclasses.replace(base.eval, methods=("prompt4nr",), baselines=()))
