"""Every analysis command end to end on the tiny workdir: it writes its PNG, Markdown and JSON, and
the numbers agree with independent recomputations (score files' own per-user metrics, results.json,
the popularity baseline)."""
import json
import math

import numpy as np
import pytest

from _analysis_workdir import NUM_USERS, make_workdir
from r2rank_jax.analyses import cold_start, cross_domain, history_length, history_order, position
from r2rank_jax.baselines.common import ItemIndex
from r2rank_jax.baselines.popularity import popularity_scores
from r2rank_jax.data.benchmark import load_split
from r2rank_jax.run.workdir import MissingInputError

# The shared workdir fixture runs prepare + eval (~20 s on a quiet machine, ~45 s loaded).
pytestmark = pytest.mark.slow


def _outputs(workdir, name):
    out = workdir / "analyses"
    for ext in ("png", "md", "json"):
        assert (out / f"{name}.{ext}").stat().st_size > 0, f"{name}.{ext} missing"
    assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return json.loads((out / f"{name}.json").read_text()), (out / f"{name}.md").read_text()


def test_eval_stage_reports_the_listwise_baseline(analysis_workdir):
    results = json.loads((analysis_workdir / "eval" / "results.json").read_text())
    parse = results["methods"]["zero_shot_listwise"]["parse"]
    assert parse["total"] == NUM_USERS == parse["parsed"] + parse["partial"] + parse["unparsable"]
    assert 0.0 <= parse["parse_rate"] <= parse["any_parse_rate"] <= 1.0
    lines = (analysis_workdir / "eval" / "scores" / "zero_shot_listwise.outputs.jsonl").read_text().splitlines()
    assert [json.loads(x)["status"] for x in lines].count("unparsable") == parse["unparsable"]
    if parse["unparsable"] == NUM_USERS:  # every positive last of K = 20: NDCG@10 0, MRR 1/20
        assert results["methods"]["zero_shot_listwise"]["ndcg@10"] == 0.0
        assert results["methods"]["zero_shot_listwise"]["mrr"] == pytest.approx(1 / 20)


@pytest.mark.parametrize("module, name", [(cold_start, "cold_start"), (history_length, "history_length")])
def test_stratified_commands(analysis_workdir, module, name):
    assert module.main(["--workdir", str(analysis_workdir), "--tiers", "2"]) == 0
    data, md = _outputs(analysis_workdir, name)
    assert data["num_users"] == NUM_USERS and sum(t["num_users"] for t in data["tiers"]) == NUM_USERS
    assert {"r2rank", "zero_shot_listwise", "popularity"} <= set(data["tiers"][0]["methods"])
    assert data["reference"] == "r2rank" and "## NDCG@10" in md
    # Per-tier means recomputed from the score files' own per-user fields and the reported user values.
    edges = data["edges"]
    for method, path in data["score_files"].items():
        rows = {json.loads(x)["user_id"]: json.loads(x) for x in open(path)}
        for tier in data["tiers"]:
            users = [u for u, v in data["user_values"].items()
                     if sum(v > e for e in edges) == tier["tier"]]
            assert len(users) == tier["num_users"]
            if users:
                expected = np.mean([rows[u]["ndcg@10"] for u in users])
                assert tier["methods"][method]["ndcg@10"] == pytest.approx(expected)
    records = {r.user_id: r for r in load_split(analysis_workdir / "data" / "benchmark", "test")}
    if name == "history_length":
        assert all(v == len(records[u].history) for u, v in data["user_values"].items())
    else:  # the popularity baseline's score of the positive is the same train count
        bench = analysis_workdir / "data" / "benchmark"
        recs = [records[u] for u in data["user_values"]]
        pop = popularity_scores(load_split(bench, "train"), recs, ItemIndex.from_benchmark(bench))
        counts = [pop[i, r.candidates.index(r.positive)] for i, r in enumerate(recs)]
        assert list(data["user_values"].values()) == counts


def test_position_command(analysis_workdir):
    assert position.main(["--workdir", str(analysis_workdir), "--positions", "1,10,20"]) == 0
    data, md = _outputs(analysis_workdir, "position")
    r2 = data["methods"]["r2rank"]
    assert r2["invariant"] and r2["max_abs_change_overall"] <= 1e-5 and r2["score_spread"] > 1e-2
    assert len(set(round(v, 9) for v in r2["ndcg@10"].values())) == 1
    listwise = data["methods"]["zero_shot_listwise"]
    assert set(listwise["parse"]) == {"original", "1", "10", "20"}
    assert "| r2rank |" in md and "invariant" in md


def test_history_order_command(analysis_workdir):
    results = json.loads((analysis_workdir / "eval" / "results.json").read_text())
    assert history_order.main(["--workdir", str(analysis_workdir), "--shuffles", "2", "--seed", "1"]) == 0
    data, md = _outputs(analysis_workdir, "history_order")
    m = data["methods"]["r2rank"]
    assert len(m["shuffles"]) == 2 and m["min"] <= m["mean"] <= m["max"]
    assert m["std"] == pytest.approx(abs(m["shuffles"][0] - m["shuffles"][1]) / math.sqrt(2))
    # The original order is the eval stage's scoring of the same users.
    assert m["original"] == pytest.approx(results["methods"]["r2rank"]["ndcg@10"], abs=1e-6)


def test_cross_domain_command(analysis_workdir, tmp_path):
    other = make_workdir(tmp_path / "other", seed=7, evaluate=False) / "data" / "benchmark"
    with pytest.raises(MissingInputError, match="results.json"):
        cross_domain.main(["--workdir", str(tmp_path / "other"), "--benchmark", str(other)])
    assert cross_domain.main(["--workdir", str(analysis_workdir), "--benchmark", str(other)]) == 0
    data, md = _outputs(analysis_workdir, "cross_domain")
    results = json.loads((analysis_workdir / "eval" / "results.json").read_text())
    assert data["target"]["num_users"] == NUM_USERS
    assert data["target"]["content_hash"] != data["source"]["content_hash"]
    for name in ("r2rank", "popularity", "random"):
        row = data["methods"][name]
        assert row["in_domain"]["ndcg@10"] == results["methods"][name]["ndcg@10"]
        rows = [json.loads(x) for x in open(data["score_files"][name])]
        target_users = [r.user_id for r in load_split(other, "test")[:NUM_USERS]]
        assert [r["user_id"] for r in rows] == target_users
        assert row["cross_domain"]["ndcg@10"] == pytest.approx(np.mean([r["ndcg@10"] for r in rows]))
        assert row["delta_ndcg@10"] == pytest.approx(row["cross_domain"]["ndcg@10"] - row["in_domain"]["ndcg@10"])
