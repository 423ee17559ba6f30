"""The seeded findings runner: its plan (runs, order, reuse of main's SFT, resume), and its table checked
against by-hand means and scipy's Wilcoxon on constructed runs."""
import json
import pathlib
import shutil

import numpy as np
import pytest
from scipy import stats

from r2rank_jax import ablations, findings
from r2rank_jax.data import synthetic
from r2rank_jax.data.benchmark import load_split
from r2rank_jax.eval.score_files import write_score_file


def test_plan_orders_runs_and_starts_no_cot_from_main(tmp_path):
    runs = findings.plan(tmp_path, [0, 1], ["cot_vs_no_cot", "llm_mlp_vs_mlp_only"])
    assert [(r.name, r.seed) for r in runs] == [(n, s) for s in (0, 1) for n in ("main", "rl_only", "mlp_only", "no_cot")]
    no_cot = runs[3]
    assert no_cot.stages == ("rl", "eval") and no_cot.copy_from == tmp_path / "seed0" / "main"
    assert set(ablations.overrides("no_cot")) <= set(no_cot.overrides)
    assert runs[0].stages == findings.STAGES and runs[0].copy_from is None
    argv = runs[2].argv("C.py", ["--config.rl.steps=3"], "rl")
    assert argv[:3] == ["--config=C.py", "--config.rl.steps=3", "--config.seed=0"]
    assert "--config.rl.freeze_llm=true" in argv and argv[-2:] == [f"--workdir={tmp_path / 'seed0' / 'mlp_only'}", "rl"]
    with pytest.raises(ValueError, match=r"unknown finding\(s\) \['cot'\]"):
        findings.plan(tmp_path, [0], ["cot"])


def test_dry_run_skips_finished_runs_and_resumes_started_ones(tmp_path, capsys):
    done = tmp_path / "seed0" / "main" / "eval"
    done.mkdir(parents=True)
    (done / "results.json").write_text("{}")
    started = tmp_path / "seed0" / "no_cot"
    started.mkdir(parents=True)
    (started / "config.json").write_text("{}")
    assert findings.main(["--config=C.py", f"--workdir={tmp_path}", "--seeds=0", "--findings=cot_vs_no_cot",
                          "--dry_run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# main seed 0: done")
    assert "--resume" in out[1] and out[1].endswith(f"--workdir={started} --resume rl")
    assert out[2].endswith(f"--workdir={started} --resume eval")           # continues from its score journals


def test_bad_arguments_are_refused(tmp_path):
    for bad in (["--seeds=0,0"], ["--seeds=a"], ["--config.seed=3"], ["--findings=nope"], ["--oops"]):
        with pytest.raises(SystemExit):
            findings.main(["--config=C.py", f"--workdir={tmp_path}", "--dry_run", *bad])


def _fake_run(root: pathlib.Path, bench: pathlib.Path, records, scores) -> None:
    shutil.copytree(bench, root / "data" / "benchmark")
    write_score_file(root / "eval" / "scores" / "r2rank.jsonl", records, scores)
    (root / "eval" / "results.json").write_text(json.dumps({"benchmark": {"split": "test"}}))


def _ndcg10(scores, records):
    out = []
    for s, r in zip(scores, records):
        rank = int((s > s[r.candidates.index(r.positive)]).sum())        # no ties in these scores
        out.append(1.0 / np.log2(rank + 2) if rank < 10 else 0.0)
    return np.array(out)


def test_summary_matches_by_hand_means_and_scipy(tmp_path):
    world = tmp_path / "world"
    synthetic.build_benchmark(world, synthetic.WorldConfig(num_users=120, num_items=80, seed=3))
    bench = world / "benchmark"
    records = load_split(bench, "test")
    rng = np.random.default_rng(0)
    expected = {}
    for seed in (0, 1):
        main = rng.normal(size=(len(records), 20))
        for i, r in enumerate(records):                 # main is better: the positive often on top
            if rng.random() < 0.6:
                main[i, r.candidates.index(r.positive)] = 10.0
        other = rng.normal(size=(len(records), 20))
        _fake_run(tmp_path / "W" / f"seed{seed}" / "main", bench, records, main)
        _fake_run(tmp_path / "W" / f"seed{seed}" / "no_cot", bench, records, other)
        expected[seed] = (_ndcg10(main, records), _ndcg10(other, records))
    summary = findings.summarize(tmp_path / "W", [0, 1], ["cot_vs_no_cot"])
    f = summary["findings"]["cot_vs_no_cot"]
    means_a = [expected[s][0].mean() for s in (0, 1)]
    means_b = [expected[s][1].mean() for s in (0, 1)]
    assert f["mean_a"] == pytest.approx(np.mean(means_a)) and f["mean_b"] == pytest.approx(np.mean(means_b))
    assert f["sd_a"] == pytest.approx(np.std(means_a, ddof=1))
    assert f["a_ahead_in"] == 2 and f["delta_ndcg@10"] > 0.2
    for row, seed in zip(f["per_seed"], (0, 1)):
        a, b = expected[seed]
        assert row["p_ndcg@10"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
    pooled = stats.wilcoxon(np.concatenate([expected[s][0] for s in (0, 1)]),
                            np.concatenate([expected[s][1] for s in (0, 1)])).pvalue
    assert f["p_pooled"] == pytest.approx(pooled)
    table = findings.render(summary)
    assert "| with CoT > without CoT (Table 5) | main |" in table and "| cot_vs_no_cot | 1 |" in table


def test_runs_on_other_users_are_refused(tmp_path):
    world = tmp_path / "world"
    synthetic.build_benchmark(world, synthetic.WorldConfig(num_users=120, num_items=80, seed=3))
    records = load_split(world / "benchmark", "test")
    scores = np.zeros((len(records), 20))
    _fake_run(tmp_path / "W" / "seed0" / "main", world / "benchmark", records, scores)
    _fake_run(tmp_path / "W" / "seed0" / "no_cot", world / "benchmark", records[1:], scores[1:])
    with pytest.raises(ValueError, match="evaluated different users"):
        findings.summarize(tmp_path / "W", [0], ["cot_vs_no_cot"])
