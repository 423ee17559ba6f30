"""The paper's main setting: Qwen2.5-3B-Instruct on Amazon Video Games, K=20 candidates, for a TPU pod or
an 8-GPU host. Point `model.path` at a local Hugging Face directory of the checkpoint and `data.source`
at the RecBole files, e.g.

    python -m r2rank_jax.launch --config=configs/qwen2_5_3b.py --mesh=fsdp:16 \
        --config.model.path=/ckpt/Qwen2.5-3B-Instruct --workdir=/runs/qwen3b all

Memory plan (bf16 compute, fp32 master weights and AdamW state, remat per layer, scanned layers):
`python -m r2rank_jax.tools.aot_memory --config=configs/qwen2_5_3b.py --mesh=fsdp:16 --hbm_gib=16`.
"""
from r2rank_jax.config import DataConfig, EvalSpec, ExperimentConfig, ModelSpec, OptimSpec, RLSpec, SFTSpec, TeacherSpec


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="qwen2_5_3b",
        seed=0,
        data=DataConfig(source="recbole:../shared/data/amazon18_video_games/Games-6k", history_len=20,
                        num_candidates=20, max_prompt_tokens=512, prefix_buckets=(384, 448, 512),
                        suffix_buckets=(64,)),
        model=ModelSpec(kind="hf", path="checkpoints/Qwen2.5-3B-Instruct", preset="qwen2.5-3b-instruct",
                        dtype="bfloat16", param_dtype="float32", remat="full", head_hidden=256),
        teacher=TeacherSpec(kind="openai", model="deepseek-reasoner", negatives_per_user=3, noise=0.0,
                            max_new_tokens=1024, concurrency=16),
        sft=SFTSpec(steps=1000, batch_size=64, microbatches=4, response_buckets=(256, 384, 512),
                    optim=OptimSpec(learning_rate=1e-5, warmup_steps=50, decay_steps=950, weight_decay=0.01),
                    eval_every=100, checkpoint_every=100),
        rl=RLSpec(steps=1000, batch_users=16, max_new_tokens=512, temperature=1.0, num_rankings=1,
                  advantage="listwise", baseline="none", microbatches=4,
                  llm_optim=OptimSpec(learning_rate=1e-6, warmup_steps=20), head_optim=OptimSpec(learning_rate=1e-4),
                  eval_every=50, eval_users=512, patience=5, checkpoint_every=50),
        eval=EvalSpec(split="test", max_users=0, max_new_tokens=512,
                      baselines=("random", "popularity", "sasrec", "bert4rec", "lightgcn")),
    )
