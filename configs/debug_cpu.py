"""The smallest config that runs every stage: for tests and for debugging on one CPU."""
from r2rank_jax.config import DataConfig, EvalSpec, ExperimentConfig, ModelSpec, OptimSpec, RLSpec, SFTSpec, TeacherSpec


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="debug_cpu",
        seed=0,
        tokenizer="synthetic",
        data=DataConfig(source="synthetic", synthetic_users=120, synthetic_items=80, max_prompt_tokens=320,
                        prefix_buckets=(256, 320), suffix_buckets=(48,)),
        model=ModelSpec(kind="random", hidden_size=32, intermediate_size=48, num_layers=1, num_heads=2,
                        num_kv_heads=1, head_dim=16, head_hidden=16),
        teacher=TeacherSpec(kind="scripted", negatives_per_user=1, noise=0.1),
        sft=SFTSpec(steps=4, batch_size=4, optim=OptimSpec(learning_rate=1e-3), eval_every=2,
                    checkpoint_every=2),
        rl=RLSpec(steps=2, batch_users=2, max_new_tokens=8, num_rankings=2, baseline="loo_users", eval_every=2,
                  eval_users=4, checkpoint_every=2),
        eval=EvalSpec(split="test", max_users=8, max_new_tokens=8, baselines=("random", "popularity")),
    )
