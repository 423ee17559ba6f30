"""SFT on the synthetic world (scripted teacher rationales) lowers the held-out response loss and
raises teacher-forced decision accuracy on held-out users; its held-out evaluation in the shared-prefix layout."""
import dataclasses

import jax
import pytest
from flax import nnx

from r2rank_jax.data.errors import DataError
from r2rank_jax.models.decoder import Decoder
from r2rank_jax.models.head import ScoringHead
from r2rank_jax.train import sft_data
from r2rank_jax.train.logging import MetricsLogger, read_metrics
from r2rank_jax.train.loop import LoopConfig, run_loop
from r2rank_jax.train.optim import OptimConfig, learning_rate_schedule, make_optimizer
from r2rank_jax.train.sft import SFTConfig, make_sft_step, put_batch
from r2rank_jax.train.sft_eval import make_sft_eval
from r2rank_jax.train.state import create_train_state, state_shardings
from sft_fixtures import make_world, tiny_config, write_corpus

STEPS = 80


@pytest.mark.slow
def test_sft_lowers_loss_and_raises_decision_accuracy(tmp_path):
    bdir, tok = make_world(tmp_path / "world", num_users=160, history_len=2)
    write_corpus(bdir, tok, "train", tmp_path / "train.jsonl")
    write_corpus(bdir, tok, "valid", tmp_path / "valid.jsonl")  # held-out users
    train = sft_data.load_corpus(tmp_path / "train.jsonl", tok)
    held_out = sft_data.load_corpus(tmp_path / "valid.jsonl", tok)
    assert len(train) > 150 and len(held_out) > 15

    cfg = tiny_config(len(tok))
    opt = OptimConfig(learning_rate=1e-2, warmup_steps=5, decay_steps=STEPS - 5)
    static, state = create_train_state(Decoder(cfg, rngs=nnx.Rngs(0)), ScoringHead(cfg.hidden_size, 32, rngs=nnx.Rngs(1)),
                                       make_optimizer(opt), make_optimizer(OptimConfig()), jax.random.PRNGKey(0))
    step = make_sft_step(static, SFTConfig(), learning_rate_schedule(opt), state_shardings(state))
    data_cfg = sft_data.SFTDataConfig(batch_size=8, prompt_buckets=(208,), response_buckets=(64,))
    evaluate = make_sft_eval(static, held_out, tok, data_cfg, batch_size=8)
    before = evaluate(state)
    with MetricsLogger(tmp_path / "run", "sft", STEPS, progress=False) as logger:
        result = run_loop(LoopConfig(total_steps=STEPS, log_every=10, eval_every=STEPS), state, step,
                          sft_data.make_iterator(train, data_cfg, tok.pad_token_id), logger=logger,
                          put=put_batch, eval_fn=evaluate, stage="sft")
    after = read_metrics(tmp_path / "run", "sft_eval")[-1]
    losses = [r["loss"] for r in read_metrics(tmp_path / "run", "sft")]
    print("before", before, "after", after, "train losses", losses)
    assert result.step == STEPS
    assert losses[-1] < 0.3 * losses[0]
    assert after["eval_loss"] < 0.3 * before["eval_loss"]
    assert after["decision_acc"] >= 0.85 and after["decision_acc"] >= before["decision_acc"] + 0.2
    assert after["decision_margin"] > before["decision_margin"] + 1.0


def test_held_out_eval_with_a_shared_prefix_equals_per_row(tmp_path):
    """make_sft_eval on prompts that share their chat header and instructions: run once per batch (the shared
    layout) or per row, the same loss, decision accuracy and margin (the decision pairs' prompts share it too)."""
    bdir, tok = make_world(tmp_path / "world", num_users=40, history_len=2)
    write_corpus(bdir, tok, "valid", tmp_path / "valid.jsonl")
    held_out = sft_data.load_corpus(tmp_path / "valid.jsonl", tok)
    first = held_out[0].prompt_ids
    shared = next(j for j in range(len(first)) if any(e.prompt_ids[j] != first[j] for e in held_out))
    assert shared > 20                                          # the chat header and the instructions
    cfg = tiny_config(len(tok))
    static, state = create_train_state(Decoder(cfg, rngs=nnx.Rngs(0)), ScoringHead(cfg.hidden_size, 32, rngs=nnx.Rngs(1)),
                                       make_optimizer(OptimConfig()), make_optimizer(OptimConfig()), jax.random.PRNGKey(0))
    data_cfg = sft_data.SFTDataConfig(batch_size=8, prompt_buckets=(208,), response_buckets=(64,))
    plain = make_sft_eval(static, held_out, tok, data_cfg, batch_size=8)(state)
    with_prefix = make_sft_eval(static, held_out, tok, dataclasses.replace(data_cfg, shared_prefix=shared),
                                batch_size=8)(state)
    assert with_prefix["eval_tokens"] == plain["eval_tokens"]
    for key in ("eval_loss", "decision_acc", "decision_margin"):
        assert with_prefix[key] == pytest.approx(plain[key], rel=1e-5, abs=1e-6), key
    with pytest.raises(DataError, match="shared_prefix"):
        make_sft_eval(static, held_out, tok, dataclasses.replace(data_cfg, shared_prefix=shared + 1), batch_size=8)
