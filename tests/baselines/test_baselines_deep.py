"""SASRec, BERT4Rec and LightGCN: a few training steps lower the loss (small configs without dropout,
which compile faster; dropout is on in the slow tests), and fully trained on a synthetic world they
beat popularity and random by a wide, significant margin (slow)."""
import json
import pathlib

import numpy as np
import pytest
from flax import nnx

from r2rank_jax.baselines import bert4rec, common, lightgcn, popularity, sasrec
from r2rank_jax.baselines import random as random_baseline
from r2rank_jax.baselines.training import FitConfig
from r2rank_jax.data.benchmark import load_split
from r2rank_jax.eval.evaluate import evaluate_scores
from r2rank_jax.eval.significance import wilcoxon_p

FEW_STEPS = FitConfig(epochs=100, batch_size=32, learning_rate=1e-2, max_steps=16)


def _decreased(losses, margin=0.02):
    assert len(losses) == FEW_STEPS.max_steps and np.all(np.isfinite(losses))
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - margin, losses


def _data(world):
    return common.ItemIndex.from_benchmark(world), load_split(world, "train"), load_split(world, "test")


@pytest.mark.parametrize("loss", ["bce", "ce"])
def test_sasrec_loss_decreases_and_scores_shape(loss, tiny_world):
    index, train, test = _data(tiny_world)
    cfg = sasrec.SASRecConfig(dim=32, layers=1, dropout=0.0, loss=loss)
    model, losses = sasrec.train_sasrec(train, index, cfg, FEW_STEPS, log=None)
    _decreased(losses)
    if loss == "bce":
        scores = sasrec.sasrec_scores(model, test, index, cfg.max_len)
        assert scores.shape == (len(test), 20) and np.all(np.isfinite(scores))


def test_bert4rec_loss_decreases_and_scores_shape(tiny_world):
    index, train, test = _data(tiny_world)
    cfg = bert4rec.BERT4RecConfig(dim=32, layers=1, dropout=0.0)
    model, losses = bert4rec.train_bert4rec(train, index, cfg, FEW_STEPS, log=None)
    _decreased(losses)
    scores = bert4rec.bert4rec_scores(model, test, index, cfg.max_len)
    assert scores.shape == (len(test), 20) and np.all(np.isfinite(scores))


def test_bert4rec_batches_mask_and_target_consistently(tiny_world):
    index, train, _ = _data(tiny_world)
    seqs = common.train_sequences(train, index)
    cfg = bert4rec.BERT4RecConfig()
    batch = bert4rec.make_batches(seqs, cfg, index.num_items + 1, 64)(np.arange(64), np.random.default_rng(0))
    padded = common.left_pad(seqs[:64], cfg.max_len + 1)
    masked = batch["inputs"] == index.num_items + 1
    assert masked.any(1).all() and batch["weights"].sum() == masked.sum() <= 3 * 64
    slots = batch["slots"][batch["weights"] > 0]
    assert masked.ravel()[slots].all()
    np.testing.assert_array_equal(batch["targets"][batch["weights"] > 0], padded.ravel()[slots])
    np.testing.assert_array_equal(batch["inputs"][~masked], padded[~masked])
    tight = bert4rec.BERT4RecConfig(predictions_per_sequence=0.5)
    batch = bert4rec.make_batches(seqs, tight, index.num_items + 1, 64)(np.arange(64), np.random.default_rng(0))
    assert batch["weights"].sum() == 32 == (batch["inputs"] == index.num_items + 1).sum()


def test_lightgcn_loss_decreases_and_fold_ins(tiny_world):
    index, train, test = _data(tiny_world)
    cfg = lightgcn.LightGCNConfig(dim=32)
    model, graph, losses = lightgcn.train_lightgcn(train, index, cfg, FEW_STEPS, log=None)
    _decreased(losses, margin=0.002)  # BPR starts near log 2 with small embeddings and moves slowly
    assert graph.num_users == len(train) and graph.weights.shape == graph.users.shape
    for fold_in in ("propagate", "mean_items"):
        scores = lightgcn.lightgcn_scores(model, graph, test, index, fold_in)
        assert scores.shape == (len(test), 20) and np.all(np.isfinite(scores))


def _train_and_score(name, index, train, test):
    if name == "sasrec":
        model, losses = sasrec.train_sasrec(train, index, fit_cfg=FitConfig(epochs=10), log=None)
        return sasrec.sasrec_scores(model, test, index, 20), losses
    if name == "bert4rec":
        model, losses = bert4rec.train_bert4rec(train, index, fit_cfg=FitConfig(epochs=10), log=None)
        return bert4rec.bert4rec_scores(model, test, index, 20), losses
    model, graph, losses = lightgcn.train_lightgcn(
        train, index, fit_cfg=FitConfig(epochs=20, batch_size=1024, learning_rate=5e-3), log=None)
    return lightgcn.lightgcn_scores(model, graph, test, index), losses


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sasrec", "bert4rec", "lightgcn"])
def test_beats_popularity_and_random_on_the_synthetic_world(name, quality_world):
    # Synthetic world (2000 users, 200 test users): popularity ~0.24 NDCG@10 (items are about equally
    # popular), random 0.227; measured SASRec 0.55, BERT4Rec 0.53, LightGCN 0.69, attribute oracle ~0.72.
    index, train, test = _data(quality_world)
    scores, losses = _train_and_score(name, index, train, test)
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    model = evaluate_scores(test, scores)
    pop = evaluate_scores(test, popularity.popularity_scores(train, test, index))
    rnd = evaluate_scores(test, random_baseline.random_scores(test, seed=0))
    for metric in ("ndcg@10", "hr@10", "mrr"):
        for other in (pop, rnd):
            assert model[metric].mean() > other[metric].mean() + 0.1, (metric, model[metric].mean(), other[metric].mean())
            assert wilcoxon_p(model[metric], other[metric]) < 1e-3


def test_sasrec_batches_shift_by_one_and_skip_padding():
    make_batch = sasrec.make_batches([[5, 6, 7], [1, 2, 3, 4]], num_items=9, max_len=4)
    batch = make_batch(np.array([0, 1]), np.random.default_rng(0))
    assert batch["inputs"].tolist() == [[0, 0, 5, 6], [0, 1, 2, 3]]
    assert batch["targets"].tolist() == [[0, 5, 6, 7], [1, 2, 3, 4]]
    # A padding slot followed by the first item predicts nothing.
    assert np.asarray(sasrec._weights(batch, np.float32)).tolist() == [[0, 0, 1, 1], [0, 1, 1, 1]]


def test_bert4rec_cli_max_len_reaches_the_model(tiny_world, tmp_path, monkeypatch):
    seen = []
    train = bert4rec.train_bert4rec

    def recording(train_records, index, cfg, fit_cfg, log=print):
        seen.append(cfg.max_len)
        return train(train_records, index, cfg, FitConfig(epochs=1, max_steps=1), log=None)

    monkeypatch.setattr(bert4rec, "train_bert4rec", recording)
    out = tmp_path / "b.jsonl"
    bert4rec.main(["--benchmark", str(tiny_world), "--out", str(out), "--max_len", "3"])
    assert seen == [3]
    assert json.loads(pathlib.Path(f"{out}.meta.json").read_text())["args"]["max_len"] == 3
    model = bert4rec.BERT4Rec(5, bert4rec.BERT4RecConfig(max_len=3), rngs=nnx.Rngs(0))
    assert model.encoder.pos_embed.embedding[...].shape[0] == 4  # history slots + [MASK]
