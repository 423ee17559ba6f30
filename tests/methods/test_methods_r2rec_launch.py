"""R2Rec through the launcher: `all` on configs/debug_cpu.py with tiny steps writes its per-user scores,
and an R2Rank run's eval stage brings them into its table through `eval.compare`."""
import json
import pathlib
import shutil

import pytest

from r2rank_jax import launch

DEBUG = str(pathlib.Path(__file__).resolve().parents[2] / "configs" / "debug_cpu.py")
TINY = ["--config.sft.steps=2", "--config.sft.checkpoint_every=2", "--config.rl.steps=1", "--config.rl.batch_users=1",
        "--config.r2rec.group_size=2", "--config.r2rec.max_new_tokens=16", "--config.r2rec.teacher_users=24",
        "--config.eval.max_users=4"]


@pytest.mark.slow
def test_r2rec_all_writes_scores_and_joins_an_r2rank_table(tmp_path):
    run = tmp_path / "r2rec"
    assert launch.main([f"--config={DEBUG}", "--config.method=r2rec", "--config.eval.methods=r2rec",
                        "--config.eval.baselines=", *TINY, f"--workdir={run}", "all"]) == 0
    stats = json.loads((run / "teacher" / "r2rec_stats.json").read_text())
    assert stats["users"] == 24 and 0 < stats["accepted"] <= 24
    ledger = [json.loads(line) for line in (run / "teacher" / "r2rec_ledger.jsonl").read_text().splitlines()]
    assert len(ledger) == 24 and sum(e["verdict"] == "accepted" for e in ledger) == stats["accepted"]
    assert (run / "sft" / "checkpoints" / "2").is_dir() and (run / "rl" / "checkpoints" / "1").is_dir()
    test = [json.loads(line) for line in (run / "data" / "benchmark" / "test.jsonl").read_text().splitlines()][:4]
    rows = [json.loads(line) for line in (run / "eval" / "scores" / "r2rec.jsonl").read_text().splitlines()]
    assert [r["user_id"] for r in rows] == [t["user_id"] for t in test]
    assert [r["candidates"] for r in rows] == [t["candidates"] for t in test]
    assert all(len(r["scores"]) == len(r["candidates"]) for r in rows)
    own = json.loads((run / "eval" / "results.json").read_text())["methods"]["r2rec"]
    assert own["model"] == "rl" and own["parse"]["total"] == 4

    main = tmp_path / "main"   # an R2Rank run on the same benchmark (its checkpoint-free method only)
    main.mkdir()
    shutil.copytree(run / "data", main / "data")
    assert launch.main([f"--config={DEBUG}", "--config.eval.max_users=4", "--config.eval.methods=zero_shot_pointwise",
                        "--config.eval.baselines=", "--config.eval.reference=zero_shot_pointwise",
                        f"--config.eval.compare=r2rec={run}", f"--workdir={main}", "eval"]) == 0
    results = json.loads((main / "eval" / "results.json").read_text())
    assert "r2rec" in results["methods"] and results["compared_runs"] == {"r2rec": str(run)}
    assert results["methods"]["r2rec"]["ndcg@10"] == pytest.approx(own["ndcg@10"])
    assert set(results["significance"]["comparisons"]["r2rec"]) >= {"ndcg@10", "mrr"}
    assert "| r2rec |" in (main / "eval" / "results.md").read_text()
