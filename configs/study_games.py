"""The reproducibility study (issue 20): SmolLM2-135M-Instruct × Amazon Video Games (2018, Games-6k), every
method of the paper's tables on the same saved candidate lists. Run it with the study runner, not the
launcher (docs/study.md):

    python -m r2rank_jax.study --config=configs/study_games.py --workdir=/path/outside/the/repo/study

Protocol: user split 8:1:1 (`data.split="user"`), K = 20 candidates (1 positive + 19 negatives), the first
500 users of the test split for every method (`eval.max_users`), greedy decoding at evaluation (every
eval scorer decodes greedily). Negatives: popularity-weighted (the main table) here; the runner prepares
a uniform-negatives benchmark too (`r2rank_jax.study.PROTOCOLS` sets `data.negatives` per protocol).

Every method's hyperparameters live in this one config, in its own section: R2Rank's (`sft`, `rl`,
`teacher`, also read by its ablations and by R2Rec) and the model, data and prompt budget are those of
configs/smollm2_games.py, except SFT's shared prefix and held-out cadence (speed only, below) and the teacher: the grounded programmatic teacher (`teacher.kind="grounded"`,
r2rank_jax/teacher/grounded.py) instead of SmolLM2 itself; `tallrec`, `prompt4nr`, `r2ec` and `r2rec` are taken from
configs/{tallrec,prompt4nr,r2ec,r2rec}_games.py. The runner sets `method` and `eval.*` per run (which
rows each run scores); a method's config hash covers the sections it reads, so tuning one method does
not invalidate another's finished run.
"""
import dataclasses
import pathlib

from r2rank_jax.config import ExperimentConfig, load_config_file

HERE = pathlib.Path(__file__).parent


def _section(config_name: str, section: str):
    return getattr(load_config_file(HERE / config_name), section)


def get_config() -> ExperimentConfig:
    base = load_config_file(HERE / "smollm2_games.py")
    data = dataclasses.replace(base.data, source="recbole:../shared/data/amazon18_video_games/Games-6k", split="user",
                               num_candidates=20, negatives="popularity", seed=0)
    # The grounded programmatic teacher (docs/study.md, "Teacher"): the paper's DeepSeek-R1 is not reachable
    # and SmolLM2 as its own teacher writes weak rationales (and no Step lines for R2Rec). It costs seconds, so
    # 2,000 train users (4,000 pairs, ~3,000 accepted) give SFT's shuffled 60 x 4 examples a varied pool.
    teacher = dataclasses.replace(base.teacher, kind="grounded", max_users=2000, negatives_per_user=1)
    # 4 users per decode batch (80 rationales per step): ~1.4x faster evaluation than rl.batch_users=1, measured
    # (docs/study.md, "Budget"); no score changes beyond float rounding, and not part of any method's hash.
    evaluation = dataclasses.replace(base.eval, split="test", max_users=500, batch_users=4,
                                     baselines=("random", "popularity", "sasrec", "bert4rec", "lightgcn"))
    # SFT's prompts all begin with the same 158 tokens (the chat header and the instructions, up to "interacted
    # items (oldest first):"): run once per batch (sft.shared_prefix; same loss and gradients up to float
    # rounding, ~1.2x faster). The held-out evaluation (286 examples + 572 decision pairs, ~15 min each on 2
    # cores, diagnostic only: SFT keeps its last step) every 30 steps instead of 20.
    sft = dataclasses.replace(base.sft, shared_prefix=158, eval_every=30)
    return dataclasses.replace(
        base, name="study_games", data=data, eval=evaluation, teacher=teacher, sft=sft,
        tallrec=_section("tallrec_games.py", "tallrec"),
        prompt4nr=_section("prompt4nr_games.py", "prompt4nr"),
        r2ec=_section("r2ec_games.py", "r2ec"),
        # 512 teacher users: the grounded chain teacher keeps ~49% of traces (docs/study.md), ~250 for SFT's 240
        # max_new_tokens 160: its traces average 127 tokens (max 157; the 20-candidate ranking alone is ~80), so
        # 128 would cut half of them in RL and eval.
        r2rec=dataclasses.replace(_section("r2rec_games.py", "r2rec"), teacher_users=512, max_new_tokens=160),
    )
