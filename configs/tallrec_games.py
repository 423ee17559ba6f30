"""TALLRec (r2rank_jax.methods.tallrec) on SmolLM2-135M-Instruct × Amazon Video Games: the data,
model and evaluation of configs/smollm2_games.py; LoRA r=8, alpha=16 on q,v (the `tallrec` defaults),
yes/no pairs from the train split's candidate lists, scored by log P(Yes) − log P(No).

    python -m r2rank_jax.launch --config=configs/tallrec_games.py --workdir=/tmp/tallrec_games all

An R2Rank run of configs/smollm2_games.py brings it into its table with
`--config.eval.compare=tallrec=/tmp/tallrec_games`.
"""
import dataclasses
import pathlib

from r2rank_jax.config import ExperimentConfig, OptimSpec, load_config_file


def get_config() -> ExperimentConfig:
    base = load_config_file(pathlib.Path(__file__).with_name("smollm2_games.py"))
    tallrec = dataclasses.replace(base.tallrec, steps=200, batch_size=8, eval_every=50, eval_users=32,
                                  checkpoint_every=50,
                                  optim=OptimSpec(learning_rate=1e-4, warmup_steps=10, decay_steps=190))
    return dataclasses.replace(base, name="tallrec_games", method="tallrec", tallrec=tallrec,
                               eval=dataclasses.replace(base.eval, methods=("tallrec",), baselines=()))
