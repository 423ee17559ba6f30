"""The end-to-end demo: synthetic world, tiny random decoder + its sentencepiece tokenizer, scripted
teacher, SFT, RL, evaluation — on 2 CPU cores. Why each setting, and what it gives: docs/demo.md."""
from r2rank_jax.config import DataConfig, EvalSpec, ExperimentConfig, ModelSpec, OptimSpec, RLSpec, SFTSpec, TeacherSpec


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="demo",
        seed=0,
        tokenizer="synthetic",
        # 2000 users: 1600 train / 200 valid / 200 test (the test table needs >= 200 users). Every record is cut
        # to its last 3 items, for every method (the classic baselines too), and each item is shown with its
        # attribute fields: "Title (genre: X; platform: Y; brand: Z)".
        data=DataConfig(source="synthetic", synthetic_users=2000, synthetic_items=300, history_len=3,
                        item_fields=("genre", "platform", "brand"), max_prompt_tokens=320,
                        prefix_buckets=(256,), suffix_buckets=(48,)),
        # 3 layers (session 26; 4 until then): every quality target held in three seeds with 3, and SFT and RL cost a
        # quarter less; with 2, RL added nothing over SFT (docs/demo.md). Unrolled layers: ~25% faster fwd+bwd than one
        # lax.scan on the CPU.
        model=ModelSpec(kind="random", hidden_size=128, intermediate_size=256, num_layers=3, num_heads=4,
                        num_kv_heads=2, head_dim=32, head_hidden=64, scan_layers=False),
        # "tally": per attribute, each shown history item's value, same/no against the candidate's and a running
        # count, then the counts, a match level 0..7 and the decision (131-155 tokens for 3-item histories).
        teacher=TeacherSpec(kind="scripted", negatives_per_user=2, noise=0.15, style="tally"),
        # The comparison (same/no) is learnt abruptly, at a trajectory-dependent step (session 24's seed 2: held-out loss
        # 0.105 at 1000, 0.025 at 1400); 800- and 1100-step schedules did not learn it (docs/demo.md).
        # shared_prefix=122: every demo prompt begins with the same 122 tokens (chat header, instructions); each
        # SFT batch runs them once (the same loss and gradients, ~1.27x faster steps; docs/demo.md, session 24).
        sft=SFTSpec(steps=1600, batch_size=8, response_buckets=(160,),
                    optim=OptimSpec(learning_rate=3e-3, warmup_steps=10, decay_steps=1590),
                    # One held-out evaluation, at the end (the training trajectory does not depend on it).
                    eval_every=1600, checkpoint_every=200, shared_prefix=122),
        # 50 steps, for the 15-minute budget: with 3 layers, test NDCG@10 at step 50 / 100 was 0.584 / 0.596,
        # 0.543 / 0.558, 0.538 / 0.571 (seeds 0-2, session 25's runs; the rate is constant, so a 50-step run is the
        # first 50 steps of a 100-step one).
        rl=RLSpec(steps=50, batch_users=2, max_new_tokens=160, temperature=1.0, num_rankings=32, baseline="mean",
                  # θ at RLSpec's default 1e-6: at 3e-5 the PPO steps moved the features the head reads, and the
                  # result swung with the sampling stream (docs/demo.md, session 6).
                  advantage="item", llm_optim=OptimSpec(learning_rate=1e-6), head_optim=OptimSpec(learning_rate=1e-2),
                  eval_every=50, eval_users=32, patience=2, checkpoint_every=50),
        # The classic baselines trained on the same world (epochs chosen on its valid split, docs/demo.md) and the
        # world's own attribute scores as a ceiling (`oracle`: reads hidden attributes; not a method). The
        # zero-shot baselines are left out: the base model has random weights, so they are random by construction
        # (pointwise 0.234 against random 0.221 in session 15; listwise never writes a ranking).
        eval=EvalSpec(split="test", max_users=200, max_new_tokens=160, batch_users=8, listwise=False,
                      methods=("r2rank", "sft_only"),
                      baselines=("random", "popularity", "sasrec", "bert4rec", "lightgcn", "oracle"),
                      # max_len 3 = the demo's history length (the default 20 left 17 of 20 slots padding: 4x slower,
                      # and lower validation NDCG@10); epochs chosen on the valid split (docs/demo.md).
                      baseline_args=("sasrec --epochs 150 --max_len 3", "bert4rec --epochs 60 --max_len 3",
                                     "lightgcn --epochs 30")),
    )
