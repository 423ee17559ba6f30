"""prepare() on the shared Amazon-18 Video Games data (50,546 users, 16,859 items, 440,264 interactions).

Skipped when ../shared/data is absent (see the `shared_data_dir` fixture in tests/conftest.py).
"""
import os
import pathlib
import subprocess
import sys

import pytest

from r2rank_jax.data import benchmark
from r2rank_jax.data.prepare import prepare
from r2rank_jax.data.sources import read_source

pytestmark = pytest.mark.shared_data
K, L = 20, 20
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def raw_sequences(path: pathlib.Path) -> dict[str, list[str]]:
    """Independent parse of an LLMRank per-user .inter file: user -> history + [target]."""
    out = {}
    with open(path, encoding="utf-8") as f:
        next(f)
        for line in f:
            user, history, target = line.rstrip("\n").split("\t")
            out[user] = history.split() + [target]
    return out


@pytest.fixture(scope="module")
def games(shared_data_dir):
    return f"recbole:{shared_data_dir / 'amazon18_video_games' / 'Games-6k'}"


@pytest.fixture(scope="module")
def raw(shared_data_dir):
    return raw_sequences(shared_data_dir / "amazon18_video_games" / "Games-6k.test.inter")


@pytest.fixture(scope="module")
def prepared(games, tmp_path_factory):
    out = tmp_path_factory.mktemp("games") / "bench"
    manifest = prepare(games, str(out), seed=0, verbose=False)
    return out, manifest


def test_reader_counts(games, raw):
    ds = read_source(games)
    assert (ds.num_users, ds.num_items, ds.num_interactions) == (50_546, 16_859, 440_264)
    assert {u: list(s.item_ids) for u, s in ds.sequences.items()} == raw


def test_candidate_lists_and_histories(prepared, raw):
    out, manifest = prepared
    assert (manifest["num_users"], manifest["num_items"]) == (50_546, 16_859)
    users = []
    for split in benchmark.SPLIT_NAMES:
        for r in benchmark.load_split(out, split):
            users.append(r.user_id)
            full = raw[r.user_id]
            assert len(r.candidates) == K and len(set(r.candidates)) == K
            assert r.candidates.count(r.positive) == 1 and r.positive == full[-1]
            assert not (set(r.candidates) - {r.positive}) & set(full), r.user_id
            assert list(r.history) == full[:-1][-L:]
    assert sorted(users) == sorted(raw)  # every user exactly once (all have >= 4 items of history)
    items = benchmark.load_items(out)
    assert len(items) == 16_859 and all(it["title"] for it in items.values())


def test_split_sizes_8_1_1(prepared):
    counts = prepared[1]["counts"]
    n = sum(counts.values())
    assert n == 50_546
    for split, share in (("train", 0.8), ("valid", 0.1), ("test", 0.1)):
        assert abs(counts[split] - share * n) <= 1, counts


def test_second_run_in_fresh_process_is_byte_identical(prepared, games, tmp_path):
    out, manifest = prepared
    other = tmp_path / "again"
    env = dict(os.environ, PYTHONHASHSEED="12345")  # different str hashing must not matter
    subprocess.run([sys.executable, "-m", "r2rank_jax.data.prepare", "--input", games, "--out", str(other),
                    "--seed", "0", "--quiet"], check=True, cwd=REPO_ROOT, env=env)
    assert benchmark.load_manifest(other)["content_hash"] == manifest["content_hash"]
    for name in (*benchmark.HASHED_FILES, benchmark.MANIFEST):
        assert (other / name).read_bytes() == (out / name).read_bytes(), name
    assert benchmark.verify(other)["content_hash"] == manifest["content_hash"]


@pytest.mark.slow  # ~13 s idle on 2 cores (3 examples per user), more under load
def test_loo_valid_matches_llmrank_valid_file(games, shared_data_dir, tmp_path):
    out = tmp_path / "loo"
    prepare(games, str(out), split="loo", verbose=False)
    valid_raw = raw_sequences(shared_data_dir / "amazon18_video_games" / "Games-6k.valid.inter")
    records = benchmark.load_split(out, "valid")
    assert len(records) == 50_546
    for r in records:
        assert [*r.history[-L:], r.positive] == valid_raw[r.user_id][-(len(r.history) + 1):]
        assert r.positive == valid_raw[r.user_id][-1]


def test_nothing_written_on_failure(games, tmp_path):
    parent = tmp_path / "outs"
    parent.mkdir()
    with pytest.raises(ValueError, match="cannot draw"):
        prepare(games, str(parent / "bench"), num_candidates=16_859, verbose=False)
    assert list(parent.iterdir()) == []
