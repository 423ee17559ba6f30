"""The end-to-end demo: synthetic world, tiny random decoder + its sentencepiece tokenizer, scripted
teacher, SFT, RL, evaluation — on 2 CPU cores."""
from r2rank_jax.config import DataConfig, EvalSpec, ExperimentConfig, ModelSpec, OptimSpec, RLSpec, SFTSpec, TeacherSpec


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="demo",
        seed=0,
        tokenizer="synthetic",
        # 2000 users: 1600 train / 200 valid / 200 test (the test table needs >= 200 users).
        data=DataConfig(source="synthetic", synthetic_users=2000, synthetic_items=300, max_prompt_tokens=320,
                        prefix_buckets=(256, 320), suffix_buckets=(48,)),
        model=ModelSpec(kind="random", hidden_size=128, intermediate_size=256, num_layers=4, num_heads=4,
                        num_kv_heads=2, head_dim=32, head_hidden=64),
        teacher=TeacherSpec(kind="scripted", negatives_per_user=2, noise=0.15, style="concise"),
        sft=SFTSpec(steps=300, batch_size=8, response_buckets=(80,),
                    optim=OptimSpec(learning_rate=3e-3, warmup_steps=10, decay_steps=290),
                    eval_every=100, checkpoint_every=100),
        rl=RLSpec(steps=150, batch_users=2, max_new_tokens=80, temperature=1.0, num_rankings=32, baseline="mean",
                  # θ at RLSpec's default 1e-6: at 3e-5 the PPO steps (pure noise for this tiny model) moved
                  # the features the head reads, and the result swung with the sampling stream (docs/demo.md).
                  advantage="item", llm_optim=OptimSpec(learning_rate=1e-6), head_optim=OptimSpec(learning_rate=1e-2),
                  eval_every=50, eval_users=32, patience=2, checkpoint_every=50),
        # The classic baselines trained on the same world (epochs chosen on the valid split, docs/demo.md) and
        # the world's own attribute scores as a ceiling (`oracle`: reads hidden attributes; not a method).
        eval=EvalSpec(split="test", max_users=200, max_new_tokens=80,
                      baselines=("random", "popularity", "sasrec", "bert4rec", "lightgcn", "oracle"),
                      baseline_args=("sasrec --epochs 60", "bert4rec --epochs 60", "lightgcn --epochs 100")),
    )
