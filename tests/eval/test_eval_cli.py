"""`python -m r2rank_jax.eval`: results.json shape, results.md table, and clear errors when score files
do not cover the benchmark's users and candidate lists."""
import json

import numpy as np
import pytest

from r2rank_jax.data.benchmark import load_manifest, load_split
from r2rank_jax.data.errors import DataError
from r2rank_jax.eval.__main__ import main
from r2rank_jax.eval.per_user import METRICS
from r2rank_jax.eval.score_files import positive_indices, read_score_file, write_score_file


def _write(path, records, scores):
    write_score_file(path, records, scores)
    return path


@pytest.fixture(scope="module")
def score_files(eval_world, tmp_path_factory):
    records = load_split(eval_world, "test")
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("scores")
    cheat = rng.random((len(records), 20)) * 0.1
    cheat[np.arange(len(records)), positive_indices(records)] += 0.08  # usually on top
    return records, {
        "good": _write(d / "good.jsonl", records, cheat),
        "random": _write(d / "random.jsonl", records, rng.random((len(records), 20))),
        "const": _write(d / "const.jsonl", records, np.zeros((len(records), 20))),
    }


def test_results_json_and_md(eval_world, score_files, tmp_path):
    records, files = score_files
    out = tmp_path / "report"
    argv = ["--benchmark", str(eval_world), "--split", "test", "--reference", "good", "--out", str(out),
            "--resamples", "500", "--scores"] + [f"{n}={p}" for n, p in files.items()]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) >= {"methods", "significance", "num_users", "benchmark"}
    assert list(results["methods"]) == ["good", "random", "const"]
    for entry in results["methods"].values():
        for m in METRICS:
            lo, hi = entry[f"{m}_ci"]
            assert lo <= entry[m] <= hi
    assert results["num_users"] == len(records)
    assert results["benchmark"]["content_hash"] == load_manifest(eval_world)["content_hash"]
    assert results["benchmark"]["split"] == "test"
    assert results["methods"]["const"]["ndcg@10"] == pytest.approx(0.22718, abs=1e-5)
    assert results["methods"]["const"]["ties"] == {"users_with_ties": len(records), "users_with_tied_positive": len(records)}
    assert results["methods"]["good"]["ndcg@10"] > 0.8
    comp = results["significance"]["comparisons"]
    assert results["significance"]["reference"] == "good" and set(comp) == {"random", "const"}
    assert comp["random"]["ndcg@10"]["marker"] == "§" and comp["random"]["ndcg@10"]["p_value"] < 1e-3
    md = (out / "results.md").read_text()
    assert "| Method | NDCG@1 | NDCG@5 | NDCG@10 | HR@1 | HR@5 | HR@10 | MRR |" in md
    assert "| good (ref) |" in md and "§" in md


def _edit_lines(src, dst, edit):
    lines = [json.loads(x) for x in src.read_text().splitlines()]
    dst.write_text("".join(json.dumps(o) + "\n" for o in edit(lines)))
    return dst


def test_mismatched_users_and_candidates_are_named(eval_world, score_files, tmp_path):
    _, files = score_files
    good = files["good"]

    def run(path):
        return main(["--benchmark", str(eval_world), "--reference", "good", "--out", str(tmp_path / "r"),
                     "--scores", f"good={good}", f"other={path}"])

    missing = _edit_lines(good, tmp_path / "missing.jsonl", lambda ls: ls[1:])
    first_user = json.loads(good.read_text().splitlines()[0])["user_id"]
    with pytest.raises(DataError, match=f"missing.jsonl: user '{first_user}' of the benchmark's test is missing"):
        run(missing)

    def extra_user(ls):
        ls[3]["user_id"] = "nobody"
        return ls
    with pytest.raises(DataError, match="extra.jsonl:4: user 'nobody' is not in the benchmark's test"):
        run(_edit_lines(good, tmp_path / "extra.jsonl", extra_user))

    def swapped(ls):
        ls[2]["candidates"] = ls[2]["candidates"][::-1]
        return ls
    user = json.loads(good.read_text().splitlines()[2])["user_id"]
    with pytest.raises(DataError, match=f"swapped.jsonl:3: user '{user}': candidates differ"):
        run(_edit_lines(good, tmp_path / "swapped.jsonl", swapped))

    def short(ls):
        ls[0]["scores"] = ls[0]["scores"][:-1]
        return ls
    with pytest.raises(DataError, match="short.jsonl:1: .* 'scores' must be a list of 20 numbers"):
        read_score_file(_edit_lines(good, tmp_path / "short.jsonl", short))

    def repeated(ls):
        return ls + [ls[0]]
    with pytest.raises(DataError, match="repeated"):
        run(_edit_lines(good, tmp_path / "repeated.jsonl", repeated))


def test_cli_argument_errors(eval_world, score_files, tmp_path):
    _, files = score_files
    with pytest.raises(SystemExit):
        main(["--benchmark", str(eval_world), "--reference", "x", "--out", str(tmp_path), "--scores", f"good={files['good']}"])
    with pytest.raises(SystemExit):
        main(["--benchmark", str(eval_world), "--reference", "good", "--out", str(tmp_path), "--scores", str(files["good"])])
