"""TALLRec and Prompt4NR (r2rank_jax.methods.pointwise_llm*): P(Yes) / verbalizer scores against a
direct softmax of a full-sequence forward, the class loss against a hand computation, training on the
synthetic debug world, training pairs and config plumbing."""
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from r2rank_jax import launch
from r2rank_jax.config import ConfigError, OptimSpec, apply_overrides, load_config_file
from r2rank_jax.methods import pointwise_llm as pl
from r2rank_jax.methods import pointwise_llm_data as data
from r2rank_jax.methods import prompt4nr, tallrec
from r2rank_jax.methods.pointwise_llm_step import class_nll, make_class_step
from r2rank_jax.run import builders as common
from r2rank_jax.run.build import build_model
from r2rank_jax.run.workdir import Workdir
from r2rank_jax.train import sft_data
from r2rank_jax.train.sft import make_sft_step, put_batch

DEBUG = str(pathlib.Path(__file__).resolve().parents[2] / "configs" / "debug_cpu.py")
METHODS = {"tallrec": tallrec.METHOD, "prompt4nr": prompt4nr.METHOD}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(workdir, tokenizer) of the prepared debug world (prepare only: ~1 s)."""
    root = tmp_path_factory.mktemp("pointwise-world")
    assert launch.main([f"--config={DEBUG}", f"--workdir={root}", "prepare"]) == 0
    wd = Workdir(root)
    return wd, common.tokenizer(load_config_file(DEBUG), wd, "test")


def _cfg(name, **overrides):
    return apply_overrides(load_config_file(DEBUG), {"method": name, **overrides})


def _forward_logprobs(model, rows) -> np.ndarray:
    """`[N, V]` log-softmax (float64) of the logits after the last token of each row of token ids: one
    forward pass over the full sequences, right padded (position -1, never attended to)."""
    width = max(len(r) for r in rows)
    tokens = np.zeros((len(rows), width), np.int32)
    positions = np.full((len(rows), width), -1, np.int32)
    for i, r in enumerate(rows):
        tokens[i, :len(r)], positions[i, :len(r)] = r, np.arange(len(r))
    last = np.asarray([[len(r) - 1] for r in rows], np.int32)
    logits = np.asarray(model(jnp.asarray(tokens), jnp.asarray(positions), logits_at=jnp.asarray(last)).logits[:, 0],
                        np.float64)
    top = logits.max(axis=1, keepdims=True)
    return logits - top - np.log(np.sum(np.exp(logits - top), axis=1, keepdims=True))


@pytest.mark.parametrize("name", ["tallrec", "prompt4nr"])
def test_scores_match_a_direct_softmax_of_the_full_sequence(world, name):
    """The scoring path (shared prefix, K suffixes, batches of 2 users with a padded last batch) vs the
    softmax of one full-sequence forward per (user, candidate), with the answer words' token ids read
    off the tokenization of prompt text + word."""
    wd, tok = world
    method, cfg = METHODS[name], _cfg(name)
    source = common.source(wd, "test")
    model, _ = build_model(pl.run_config(cfg, method.spec(cfg)), tok)
    # Larger weights: logits that differ clearly between candidates and words (a fresh model is near uniform).
    nnx.update(model, jax.tree.map(lambda x: x * 6.0, nnx.state(model, nnx.Param)))
    parts = pl.Parts(method, cfg, tok, source.items, batch_users=2)
    got = parts.split_scores(parts.scorer(model, cfg), source, max_users=3)
    spec = method.spec(cfg)
    rel = spec.relevant_words if method.all_words else spec.relevant_words[:1]
    irr = spec.irrelevant_words if method.all_words else spec.irrelevant_words[:1]
    rows, where, word_ids = [], [], []
    for u, record in enumerate(source.records[:3]):
        prompts = parts.builder.build(record)
        for k in range(len(record.candidates)):
            ids = prompts.prompt_ids(k)
            text = prompts.prefix_text + prompts.suffix_texts[k]
            assert tok(text, add_special_tokens=False)["input_ids"] == ids
            rows.append(ids)
            where.append((u, k))
            word_ids.append({w: tok(text + w, add_special_tokens=False)["input_ids"][len(ids)] for w in rel + irr})
    for (u, k), logp, word_id in zip(where, _forward_logprobs(model, rows), word_ids):
        if name == "tallrec":
            want = logp[word_id["Yes"]] - logp[word_id["No"]]
        else:
            p = {w: math.exp(logp[i]) for w, i in word_id.items()}
            want = sum(p[w] for w in rel) / sum(p.values())
        np.testing.assert_allclose(got.scores[u, k], want, rtol=2e-4, atol=2e-5,
                                   err_msg=f"{name} user {u} candidate {k}")
    assert np.ptp(got.scores[0]) > 1e-3  # the candidates are actually told apart


def test_class_loss_matches_a_hand_computation():
    logits = jnp.asarray([[0.5, 2.0, -1.0, 0.3, 1.5], [1.0, -0.5, 0.2, 2.5, 0.0]], jnp.float32)
    word_ids, word_class = (1, 3, 4, 0), (0, 0, 1, 1)       # relevant: tokens 1, 3; irrelevant: 4, 0
    labels = jnp.asarray([1, 0])
    want = []
    for row, label in zip(np.asarray(logits, np.float64), (1, 0)):
        rel = math.log(math.exp(row[1]) + math.exp(row[3]))
        irr = math.log(math.exp(row[4]) + math.exp(row[0]))
        p_rel = math.exp(rel) / (math.exp(rel) + math.exp(irr))
        want.append(-math.log(p_rel if label == 1 else 1.0 - p_rel))
    np.testing.assert_allclose(class_nll(logits, labels, word_ids, word_class), want, rtol=1e-6)


def _pairs_batch(world, name, users=4, negatives=1):
    wd, tok = world
    method, cfg = METHODS[name], _cfg(name, **{f"{name}.lora.rank": "0"})
    parts = pl.Parts(method, cfg, tok, common.source(wd, "train").items, batch_users=2)
    v = parts.verbalizer
    response = ({1: v.responses[0], 0: v.responses[1]} if method.loss == "lm"
                else {1: (v.word_ids[0],), 0: (v.word_ids[v.word_class.index(1)],)})
    pairs = data.training_pairs(common.source(wd, "train").records[:users], negatives, 0, seed=0)
    examples = data.sft_examples(pairs, parts.builder, response)
    width = max(len(e.prompt_ids) for e in examples)
    batch = sft_data.Collate(len(examples), (width + 3,), (max(len(r) for r in response.values()),),
                             tok.pad_token_id)(examples)
    return method, cfg, parts, examples, batch


def test_class_step_loss_matches_per_example_forwards(world):
    """The Prompt4NR step's loss on a padded batch = the mean class NLL from unpadded per-example forwards."""
    _, tok = world
    method, cfg, parts, examples, batch = _pairs_batch(world, "prompt4nr", users=2, negatives=2)
    model, head = build_model(pl.run_config(cfg, method.spec(cfg)), tok)
    nnx.update(model, jax.tree.map(lambda x: x * 6.0, nnx.state(model, nnx.Param)))
    v = parts.verbalizer
    want = []
    for e, logp in zip(examples, _forward_logprobs(model, [list(e.prompt_ids) for e in examples])):
        p = np.exp(logp[list(v.word_ids)])
        p_rel = p[np.asarray(v.word_class) == 0].sum() / p.sum()
        want.append(-math.log(p_rel if e.label == 1 else 1.0 - p_rel))
    static, state = common.train_state(model, head, OptimSpec(learning_rate=1e-3), OptimSpec(), 0)
    before = jax.tree.map(np.asarray, state.llm)
    new, metrics = make_class_step(static, v.word_ids, v.word_class, microbatches=2)(state, put_batch(batch))
    np.testing.assert_allclose(float(metrics["loss"]), np.mean(want), rtol=1e-4)
    assert int(metrics["tokens"]) == len(examples) and int(metrics["skipped"]) == 0
    changed = jax.tree.map(lambda a, b: bool(np.any(a != np.asarray(b))), before, new.llm)
    assert all(jax.tree.leaves(changed))  # full fine-tuning: every parameter moves


@pytest.mark.parametrize("name,steps", [("tallrec", 100), ("prompt4nr", 30)])
def test_training_separates_positives_from_negatives(world, name, steps):
    """Full fine-tuning on the pairs of 4 train users (bounded steps, one batch): the loss falls and
    every positive pair then scores above every negative pair (through the scoring path)."""
    _, tok = world
    method, cfg, parts, examples, batch = _pairs_batch(world, name)
    model, head = build_model(pl.run_config(cfg, method.spec(cfg)), tok)
    static, state = common.train_state(model, head, OptimSpec(learning_rate=1e-2), OptimSpec(), 0)
    v = parts.verbalizer
    step = make_sft_step(static) if method.loss == "lm" else make_class_step(static, v.word_ids, v.word_class)
    device = put_batch(batch)
    losses = []
    for _ in range(steps):
        state, metrics = step(state, device)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.1 * losses[0], losses[::10]
    scorer = pl.AnswerScorer(model, [(i,) for i in v.word_ids], (batch["tokens"].shape[1],), pad_id=tok.pad_token_id)
    scores = parts.scores(scorer.logprobs([list(e.prompt_ids) for e in examples], state=state.llm))
    labels = np.asarray([e.label for e in examples])
    assert labels.sum() == 4 and scores[labels == 1].min() > scores[labels == 0].max(), (labels, scores)


def test_training_pairs_are_the_positive_and_distinct_other_candidates(world):
    wd, _ = world
    records = common.source(wd, "train").records
    pairs = data.training_pairs(records, negatives=3, limit=0, seed=5)
    assert pairs == data.training_pairs(records, negatives=3, limit=0, seed=5)
    by_user = {}
    for record, k, label in pairs:
        by_user.setdefault(record.user_id, []).append((record.candidates[k], label))
    assert len(by_user) == len(records) and len(pairs) == 4 * len(records)
    for record in records:
        got = by_user[record.user_id]
        assert got[0] == (record.positive, 1)
        negs = [c for c, label in got[1:]]
        assert all(label == 0 for _, label in got[1:]) and len(set(negs)) == 3
        assert set(negs) <= set(record.candidates) - {record.positive}
    assert len(data.training_pairs(records, negatives=1, limit=10, seed=0)) == 10


def test_lora_defaults_and_override():
    cfg = _cfg("tallrec")
    lora = pl.run_config(cfg, cfg.tallrec).model.lora
    assert (lora.rank, lora.alpha, tuple(lora.targets)) == (8, 16.0, ("q", "v"))
    assert pl.run_config(_cfg("tallrec", **{"model.lora.rank": "4"}), cfg.tallrec).model.lora.rank == 4
    assert pl.run_config(cfg, cfg.prompt4nr).model.lora.rank == 0   # Prompt4NR: full fine-tuning


def test_answer_words_sharing_a_first_token_are_rejected(world):
    wd, tok = world
    cfg = _cfg("prompt4nr", **{"prompt4nr.relevant_words": "yes", "prompt4nr.irrelevant_words": "yeah"})
    with pytest.raises(ConfigError, match="prompt4nr.relevant_words.*share a first token"):
        pl.Parts(prompt4nr.METHOD, cfg, tok, common.source(wd, "train").items, batch_users=1)
