"""Synthetic world: determinism, file formats, the prepare path, and learnability from text."""
from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np
import pytest

from _data_world import SMALL, world_benchmark, world_dir
from r2rank_jax.data import benchmark, synthetic
from r2rank_jax.data.recbole import read_recbole
from r2rank_jax.ranking import metrics

REPO = pathlib.Path(__file__).resolve().parents[2]


def file_bytes(directory: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(tmp_path):
    first = file_bytes(world_dir())
    out = tmp_path / "again"
    synthetic.build_benchmark(out, SMALL)
    again = file_bytes(out)
    assert again.keys() == first.keys()
    # manifest.json names its source directory; everything else is identical anywhere.
    assert {k: v for k, v in again.items() if k != "benchmark/manifest.json"} == \
           {k: v for k, v in first.items() if k != "benchmark/manifest.json"}
    m1, m2 = benchmark.load_manifest(out / "benchmark"), benchmark.load_manifest(world_benchmark())
    assert m1["content_hash"] == m2["content_hash"]
    # Into the same directory again: every byte identical, the manifest included.
    synthetic.build_benchmark(out, SMALL, overwrite=True)
    assert file_bytes(out) == again
    other = synthetic.generate_world(synthetic.WorldConfig(num_users=150, num_items=120, seed=4))
    assert other.items != synthetic.generate_world(SMALL).items


def test_atomic_files_and_known_attributes():
    prefix = world_dir() / "recbole" / "world"
    raw = read_recbole(prefix)
    world = synthetic.generate_world(SMALL)
    assert raw.num_users == SMALL.num_users and raw.num_items == SMALL.num_items
    header = (prefix.parent / "world.inter").read_text().splitlines()[0]
    assert header == "user_id:token\titem_id:token\ttimestamp:float"
    for user in world.users[:20]:
        seq = raw.sequences[user.user_id]
        assert seq.item_ids == user.item_ids
        assert list(seq.timestamps) == sorted(seq.timestamps)
        assert len(set(seq.item_ids)) == len(seq.item_ids)
    attrs = synthetic.load_item_attributes(world_benchmark())
    assert attrs == {i: a for i, a in world.item_attributes().items() if i in attrs}
    for item in world.items:
        a = item.attributes
        assert item.title.endswith(f" - {a['genre']} - {a['platform']} - {a['brand']}")
        assert a["edition"] == "Standard" or f" {a['edition']} - " in item.title
    assert len({it.title for it in world.items}) == len(world.items)
    profiles = raw.profiles
    assert all(p.startswith("age_group: ") for p in profiles.values())
    assert any("favorite_platform: " in p for p in profiles.values())


def test_histories_follow_latent_preferences():
    world = synthetic.generate_world(SMALL)
    attrs = world.item_attributes()
    share = {a: np.mean([attrs[i][a] == u.preferences[a] for u in world.users for i in u.item_ids])
             for a in synthetic.PREFERENCE_ATTRIBUTES}
    assert share["genre"] > 0.5 and share["platform"] > 0.4  # chance: 1/8 and 1/5
    assert share["genre"] < 0.95  # and there is noise


def test_attribute_oracle_ranks_the_positive_well():
    ndcg, rand = [], []
    rng = np.random.default_rng(0)
    for split in ("train", "valid", "test"):
        scores, relevance = synthetic.oracle_scores(world_benchmark(), split)
        assert relevance.shape[1] == 20 and (relevance.sum(1) == 1).all()
        ndcg.append(metrics.ndcg_at_k_from_scores(scores, relevance, 10))
        rand.append(metrics.ndcg_at_k_from_scores(rng.random(scores.shape), relevance, 10))
    ndcg, rand = np.concatenate(ndcg).mean(), np.concatenate(rand).mean()
    assert ndcg >= 0.6, ndcg
    assert abs(rand - metrics.expected_random_ndcg(10, 20)) < 0.05, rand


def test_invalid_sizes_are_rejected():
    with pytest.raises(ValueError, match="num_items"):
        synthetic.WorldConfig(num_items=10)
    with pytest.raises(ValueError, match="min_length"):
        synthetic.WorldConfig(min_length=1)
    with pytest.raises(ValueError, match="too few negatives"):
        synthetic.build_benchmark("/nonexistent/never-written", synthetic.WorldConfig(num_items=30))


def test_cli(tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "r2rank_jax.data.synthetic", "--out", str(out), "--users", "60", "--items", "60",
           "--seed", "5", "--tokenizer_vocab", "600"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert benchmark.verify(out / "benchmark")["num_users"] == 60
    assert len(benchmark.load_items(out / "benchmark")) <= 60
    assert (out / "tokenizer" / "tokenizer.json").is_file() and (out / "tokenizer" / "spm.model").is_file()
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "not empty" in again.stderr
