"""prepare() on small hand-made sources: candidate lists, splits, determinism, manifest, atomic output."""
import json
import pathlib

import numpy as np
import pytest

from r2rank_jax.data import benchmark, prepare as prepare_mod
from r2rank_jax.data.errors import DataError
from r2rank_jax.data.negatives import NegativeSampler
from r2rank_jax.data.prepare import prepare

NUM_ITEMS = 60
NUM_USERS = 40


def make_source(directory: pathlib.Path, with_profiles: bool = False, seed: int = 0) -> str:
    """A RecBole per-interaction source: 40 users with 1..12 distinct items each, timestamps shuffled."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    items = "".join(f"i{j}\tTitle {j} ✓\n" for j in range(NUM_ITEMS))
    (directory / "S.item").write_text("item_id:token\ttitle:token_seq\n" + items, encoding="utf-8")
    rows = []
    for u in range(NUM_USERS):
        n = 1 + u % 12
        for t, j in enumerate(rng.choice(NUM_ITEMS, size=n, replace=False)):
            rows.append(f"u{u}\ti{j}\t{1000 * u + t}\n")
    rng.shuffle(rows)
    (directory / "S.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n" + "".join(rows), encoding="utf-8")
    if with_profiles:
        (directory / "S.user").write_text("user_id:token\tage:token\n" + "".join(f"u{u}\t{20 + u}\n" for u in range(NUM_USERS)))
    return f"recbole:{directory / 'S'}"


def sequences(spec: str) -> dict[str, tuple[str, ...]]:
    from r2rank_jax.data.sources import read_source
    return {u: s.item_ids for u, s in read_source(spec).sequences.items()}


def dir_bytes(path: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_user_split_records(tmp_path):
    spec = make_source(tmp_path / "src")
    out = tmp_path / "bench"
    manifest = prepare(spec, str(out), seed=3, history_len=5, num_candidates=8, verbose=False)
    seqs = sequences(spec)
    eligible = {u for u, s in seqs.items() if len(s) >= 2}  # min_history=1
    users = {}
    for split in benchmark.SPLIT_NAMES:
        for r in benchmark.load_split(out, split, verify_hash=True):
            users[r.user_id] = split
            full = seqs[r.user_id]
            assert r.positive == full[-1] and r.history == full[:-1][-5:]
            assert len(r.candidates) == 8 and len(set(r.candidates)) == 8
            assert r.candidates.count(r.positive) == 1
            assert not set(r.candidates) - {r.positive} & set(full)
            assert r.profile is None
    assert set(users) == eligible  # each eligible user exactly once
    n = len(eligible)
    assert manifest["counts"] == {"train": n - 2 * round(n / 10), "valid": round(n / 10), "test": round(n / 10)}
    items = benchmark.load_items(out)
    assert len(items) == manifest["num_candidate_pool_items"] and items["i0"]["title"] == "Title 0 ✓"
    assert manifest["num_users"] == NUM_USERS and manifest["num_items"] == NUM_ITEMS
    assert manifest["options"]["seed"] == 3 and manifest["source"] == spec
    assert manifest == benchmark.load_manifest(out)
    # Positive positions are spread over the list (shuffled), not always first.
    positions = [r.candidates.index(r.positive) for r in benchmark.load_split(out, "train")]
    assert len(set(positions)) > 3


def test_loo_split_and_profiles(tmp_path):
    spec = make_source(tmp_path / "src", with_profiles=True)
    out = tmp_path / "bench"
    prepare(spec, str(out), split="loo", history_len=4, num_candidates=6, min_history=2, verbose=False)
    seqs = sequences(spec)
    for split, offset in (("test", 1), ("valid", 2), ("train", 3)):
        records = benchmark.load_split(out, split)
        expected_users = [u for u in seqs if len(seqs[u]) - offset >= 2]
        assert [r.user_id for r in records] == expected_users  # canonical order u0, u1, ..., u10, ...
        for r in records:
            full = seqs[r.user_id]
            pos = len(full) - offset
            assert r.positive == full[pos] and r.history == full[:pos][-4:]
            assert r.profile == f"age: {20 + int(r.user_id[1:])}"
            assert not set(r.candidates) - {r.positive} & set(full)
    line = json.loads((out / "test.jsonl").read_text().splitlines()[0])
    assert set(line) == {"user_id", "history", "candidates", "positive", "profile"}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    spec = make_source(tmp_path / "src")
    a = prepare(spec, str(tmp_path / "a"), seed=7, negatives="popularity", verbose=False, num_candidates=10)
    b = prepare(spec, str(tmp_path / "b"), seed=7, negatives="popularity", verbose=False, num_candidates=10)
    c = prepare(spec, str(tmp_path / "c"), seed=8, negatives="popularity", verbose=False, num_candidates=10)
    assert a["content_hash"] == b["content_hash"] != c["content_hash"]
    assert dir_bytes(tmp_path / "a") == dir_bytes(tmp_path / "b")
    text = (tmp_path / "a" / "train.jsonl").read_text(encoding="utf-8")
    assert text.startswith('{"candidates":[') and "\\u" not in (tmp_path / "a" / "items.jsonl").read_text()


def test_manifest_hash_detects_tampering(tmp_path):
    out = tmp_path / "bench"
    prepare(make_source(tmp_path / "src"), str(out), verbose=False)
    assert benchmark.verify(out)["content_hash"]
    with open(out / "valid.jsonl", "a", encoding="utf-8") as f:
        f.write("\n")
    with pytest.raises(DataError, match="valid.jsonl: sha256"):
        benchmark.load_split(out, "test", verify_hash=True)


def test_refuses_non_empty_out_and_overwrites_on_request(tmp_path):
    spec = make_source(tmp_path / "src")
    out = tmp_path / "bench"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="--overwrite"):
        prepare(spec, str(out), verbose=False)
    assert dir_bytes(out) == {"keep.txt": b"x"}
    prepare(spec, str(out), overwrite=True, verbose=False)
    assert sorted(p.name for p in out.iterdir()) == ["items.jsonl", "manifest.json", "test.jsonl", "train.jsonl", "valid.jsonl"]
    empty = tmp_path / "empty"
    empty.mkdir()
    prepare(spec, str(empty), verbose=False)  # an existing empty directory is fine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench", "empty", "src"]  # no temporaries left


@pytest.mark.parametrize("case", ["malformed_input", "too_few_items"])
def test_nothing_written_on_failure(tmp_path, case):
    spec = make_source(tmp_path / "src")
    if case == "malformed_input":
        with open(tmp_path / "src" / "S.inter", "a") as f:
            f.write("u1\tnope\t5\n")
        expected, kwargs = DataError, {}
    else:
        expected, kwargs = ValueError, {"num_candidates": NUM_ITEMS}
    outs = tmp_path / "outs"
    outs.mkdir()
    with pytest.raises(expected):
        prepare(spec, str(outs / "bench"), verbose=False, **kwargs)
    assert list(outs.iterdir()) == []


def test_cli_summary_and_errors(tmp_path, capsys):
    spec = make_source(tmp_path / "src")
    assert prepare_mod.main(["--input", spec, "--out", str(tmp_path / "b"), "--num_candidates", "5"]) == 0
    out = capsys.readouterr().out
    assert "users 40" in out and "history length min" in out and "cold-start test positives" in out
    assert prepare_mod.main(["--input", spec, "--out", str(tmp_path / "b")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert prepare_mod.main(["--input", "recbole:" + str(tmp_path / "none"), "--out", str(tmp_path / "c")]) == 2
    assert "file not found" in capsys.readouterr().err
    with pytest.raises(ValueError, match="num_candidates"):
        prepare(spec, str(tmp_path / "d"), num_candidates=1, verbose=False)


def test_negative_sampler_popularity_and_zero_weights():
    pool = [f"i{j}" for j in range(6)]
    sampler = NegativeSampler(pool, np.array([0.0, 1.0, 1.0, 1.0, 1.0, 20.0]))
    rng = np.random.default_rng(0)
    draws = [sampler.sample(rng, ["i1"], 1)[0] for _ in range(2000)]
    assert "i0" not in draws and "i1" not in draws  # zero weight / excluded
    assert draws.count("i5") > 1500  # ~20/23 of the mass
    assert sorted(sampler.sample(rng, ["i1"], 4)) == ["i2", "i3", "i4", "i5"]
    with pytest.raises(ValueError, match="only 4 items"):
        sampler.sample(rng, ["i1"], 5, who="user 'x'")
    uniform = NegativeSampler(pool)
    counts = np.unique([uniform.sample(rng, [], 1)[0] for _ in range(3000)], return_counts=True)[1]
    assert len(counts) == 6 and counts.min() > 400


def test_prepare_movielens_and_amazon2023_sources(tmp_path):
    ml = tmp_path / "ml"
    ml.mkdir()
    (ml / "movies.dat").write_bytes("".join(f"{m}::Film {m} é::Drama\n" for m in range(1, 31)).encode("latin-1"))
    ratings = [f"{u}::{m}::4::{1000 * m + u}\n" for u in range(1, 11) for m in range(u, u + 5)]
    (ml / "ratings.dat").write_text("".join(ratings))
    (ml / "users.dat").write_text("".join(f"{u}::M::25::12::000\n" for u in range(1, 11)))
    prepare(f"movielens:{ml}", str(tmp_path / "b1"), num_candidates=5, split="loo", verbose=False)
    rec = benchmark.load_split(tmp_path / "b1", "test")[0]
    assert rec.profile == "Gender: male; age: 25-34; occupation: programmer"
    assert rec.history == ("1", "2", "3", "4") and rec.positive == "5"
    assert benchmark.load_items(tmp_path / "b1")["1"] == {"item_id": "1", "title": "Film 1 é", "genres": "Drama"}

    amazon = tmp_path / "amazon"
    amazon.mkdir()
    day = 86_400_000
    start = 1_640_995_200_000  # 2022-01-01
    (amazon / "meta_Toys.jsonl").write_text("".join(
        json.dumps({"parent_asin": f"A{j}", "title": f"Toy {j}", "store": "S"}) + "\n" for j in range(30)))
    (amazon / "Toys.jsonl").write_text("".join(
        json.dumps({"user_id": f"U{u}", "parent_asin": f"A{(u + t) % 30}", "timestamp": start + (t - 2) * 365 * day})
        + "\n" for u in range(10) for t in range(6)))
    manifest = prepare(f"amazon2023:{amazon / 'Toys'}", str(tmp_path / "b2"), num_candidates=5, window="paper",
                       verbose=False)
    assert manifest["options"]["window"] == "paper"
    # t = 0, 1 fall before Oct 2021 and t = 4, 5 after Oct 2023: 2 of 6 reviews per user remain.
    assert manifest["num_interactions"] == 20 and manifest["source_notes"]["reviews_outside_window"] == 40
    assert all(r.positive == f"A{(int(r.user_id[1:]) + 3) % 30}" for r in benchmark.load_split(tmp_path / "b2", "train"))
