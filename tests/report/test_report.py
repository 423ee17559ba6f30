"""The run report of the session's debug run (`debug_run`): written by the eval stage, self-contained, its
numbers and ranks as the result and score files say (ranks recomputed with scipy), text escaped."""
import json
import re
import shutil

import numpy as np
import pytest
from scipy.stats import rankdata

from r2rank_jax.eval import rationale_log
from r2rank_jax.report import __main__ as report_cli
from r2rank_jax.report.page import esc

pytestmark = pytest.mark.slow  # the session's `all` run (debug_run) takes about a minute

PAYLOAD = "<script>document.documentElement.setAttribute('data-pwned','1')</script><b>x</b>"


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_eval_stage_writes_a_self_contained_report(debug_run):
    page = (debug_run / "eval" / "report.html").read_text()
    results = json.loads((debug_run / "eval" / "results.json").read_text())
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # Nothing to fetch: no external src/href, the plots are data URIs.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert page.count('src="data:image/png;base64,') >= 3
    for name, entry in results["methods"].items():
        row = re.search(rf'<tr data-method="{re.escape(name)}">(.*?)</tr>', page).group(1)
        assert f"{entry['ndcg@10']:.4f}" in row and f"[{entry['ndcg@10_ci'][0]:.3f}, {entry['ndcg@10_ci'][1]:.3f}]" in row
        marker = results["significance"]["comparisons"].get(name, {}).get("ndcg@10", {}).get("marker", "")
        assert f"{entry['ndcg@10']:.4f}{esc(marker)}" in row
    # The config shown is the resolved one.
    assert esc(json.dumps(json.loads((debug_run / "config.json").read_text()), indent=2)) in page


def test_the_eval_stage_records_rationales_of_a_seeded_sample(debug_run):
    scores = debug_run / "eval" / "scores"
    evaluated = [row["user_id"] for row in _lines(scores / "r2rank.jsonl")]
    for name in ("r2rank", "sft_only"):      # the scorers that write rationales
        rows = _lines(scores / f"{name}{rationale_log.SUFFIX}")
        assert [r["user_id"] for r in rows] == rationale_log.sample_users(evaluated, seed=0)
        by_user = {r["user_id"]: r for r in _lines(scores / f"{name}.jsonl")}
        for r in rows:
            assert r["candidates"] == by_user[r["user_id"]]["candidates"]
            assert len(r["rationales"]) == len(r["candidates"]) and all(isinstance(t, str) for t in r["rationales"])
    assert not (scores / f"zero_shot_pointwise{rationale_log.SUFFIX}").exists()     # writes none


def test_cli_shows_n_users_with_ranks_from_the_score_files(debug_run, tmp_path):
    out = tmp_path / "r.html"
    assert report_cli.main(["--workdir", str(debug_run), "--users", "3", "--out", str(out)]) == 0
    page = out.read_text()
    scores = debug_run / "eval" / "scores"
    sample = [r["user_id"] for r in _lines(scores / f"r2rank{rationale_log.SUFFIX}")][:3]
    assert re.findall(r'<section class="user" data-user="([^"]+)"', page) == sample
    rows = {r["user_id"]: r for r in _lines(scores / "r2rank.jsonl")}
    texts = {r["user_id"]: r for r in _lines(scores / f"r2rank{rationale_log.SUFFIX}")}
    for i, user in enumerate(sample):
        table = re.search(rf'<table class="candidates" id="u{i}-r2rank">(.*?)</table>', page, re.S).group(1)
        body = re.findall(r'<tr class="(positive)?" data-score="([^"]+)" data-rank="(\d+)"', table)
        expected = rankdata(-np.asarray(rows[user]["scores"]), method="min").astype(int)
        assert [int(r) for _, _, r in body] == expected.tolist()
        assert [float(s) for _, s, _ in body] == rows[user]["scores"]
        positives = [k for k, (p, _, _) in enumerate(body) if p]
        assert positives == [rows[user]["candidates"].index(rows[user]["positive"])]
        assert all(f'<pre class="rationale">{esc(t)}</pre>' in table for t in texts[user]["rationales"])


def test_missing_results_is_an_error_naming_the_stage(tmp_path, capsys):
    assert report_cli.main(["--workdir", str(tmp_path)]) == 2
    assert "stage 'eval'" in capsys.readouterr().err


def escaped_copy(debug_run, root):
    """A copy of the run's data and eval outputs in which the first sampled user's positive has a title
    holding a script, and its first r2rank rationale holds markup."""
    for part in ("data", "eval"):
        shutil.copytree(debug_run / part, root / part, ignore=shutil.ignore_patterns("report.html"))
    shutil.copy(debug_run / "config.json", root / "config.json")
    scores = root / "eval" / "scores"
    texts = _lines(scores / f"r2rank{rationale_log.SUFFIX}")
    user = texts[0]["user_id"]
    positive = next(r for r in _lines(scores / "r2rank.jsonl") if r["user_id"] == user)["positive"]
    items = root / "data" / "benchmark" / "items.jsonl"
    rows = _lines(items)
    for row in rows:
        if row["item_id"] == positive:
            row["title"] = PAYLOAD
    items.write_text("".join(json.dumps(r) + "\n" for r in rows))
    texts[0]["rationales"][0] = '<img src=x onerror="document.title=1"> & </pre>'
    (scores / f"r2rank{rationale_log.SUFFIX}").write_text("".join(json.dumps(r) + "\n" for r in texts))
    return root


def test_data_and_model_text_is_escaped(debug_run, tmp_path):
    out = report_cli.main(["--workdir", str(escaped_copy(debug_run, tmp_path)), "--out", str(tmp_path / "r.html")])
    page = (tmp_path / "r.html").read_text()
    assert out == 0 and PAYLOAD not in page and "<img src=x" not in page
    assert esc(PAYLOAD) in page and "&lt;img src=x onerror=&quot;document.title=1&quot;&gt; &amp; &lt;/pre&gt;" in page
    assert page.count("<script>") == 1     # the page's own


def test_the_analyses_plots_are_embedded(debug_run, tmp_path):
    import base64

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for part in ("data", "eval"):
        shutil.copytree(debug_run / part, tmp_path / part)
    shutil.copy(debug_run / "config.json", tmp_path / "config.json")
    (tmp_path / "analyses").mkdir()
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [1, 0])
    fig.savefig(tmp_path / "analyses" / "history_length.png")
    plt.close(fig)
    (tmp_path / "analyses" / "history_length.json").write_text("{}")
    assert report_cli.main(["--workdir", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    uri = "data:image/png;base64," + base64.b64encode((tmp_path / "analyses" / "history_length.png").read_bytes()).decode()
    assert f'<img class="plot analysis" alt="history_length" src="{uri}">' in page
