"""TALLRec and Prompt4NR through the launcher on configs/debug_cpu.py: `all` per method writes its score
file on the test users' saved candidate lists, and the session's R2Rank run (`debug_run`) brings both
into its results through `eval.compare`, with significance against r2rank."""
import json
import pathlib
import shutil

import pytest

from r2rank_jax import launch
from r2rank_jax.eval.score_files import read_score_file
from r2rank_jax.run import builders as common
from r2rank_jax.run.workdir import Workdir

DEBUG = str(pathlib.Path(__file__).resolve().parents[2] / "configs" / "debug_cpu.py")
pytestmark = pytest.mark.slow  # two `all` runs (~20 s each) plus the session's R2Rank run
NAMES = ("tallrec", "prompt4nr")


@pytest.fixture(scope="module")
def method_runs(tmp_path_factory) -> dict[str, pathlib.Path]:
    runs = {}
    for name in NAMES:
        workdir = tmp_path_factory.mktemp(f"{name}-run")
        assert launch.main([f"--config={DEBUG}", f"--workdir={workdir}", f"--config.method={name}",
                            f"--config.{name}.steps=4", f"--config.{name}.batch_size=4",
                            f"--config.{name}.eval_every=2", f"--config.{name}.eval_users=2",
                            f"--config.{name}.checkpoint_every=2", f"--config.eval.methods={name}",
                            "--config.eval.baselines=", "all"]) == 0
        runs[name] = workdir
    return runs


@pytest.mark.parametrize("name", NAMES)
def test_method_run_writes_its_scores(method_runs, name):
    workdir = method_runs[name]
    cfg = json.loads((workdir / "config.json").read_text())
    assert cfg["method"] == name
    metrics = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if m.get("stage") == "sft_eval"] == [2, 4]
    assert (workdir / "sft" / "checkpoints").is_dir() and not (workdir / "rl").exists()
    records = common.source(Workdir(workdir), "test").records[:cfg["eval"]["max_users"]]
    scores = read_score_file(workdir / "eval" / "scores" / f"{name}.jsonl")
    assert scores.user_ids == tuple(r.user_id for r in records)
    assert scores.candidates == tuple(r.candidates for r in records)
    assert {len(s) for s in scores.scores} == {len(records[0].candidates)}
    results = json.loads((workdir / "eval" / "results.json").read_text())
    assert results["methods"][name]["checkpoint_step"] in (2, 4)   # the better of the two validated steps
    assert results["methods"][name]["ties"]["users_with_ties"] == 0


def test_r2rank_run_compares_both_methods(debug_run, method_runs, tmp_path):
    main = tmp_path / "main"
    main.mkdir()
    shutil.copy(debug_run / "config.json", main / "config.json")
    for part in ("data", "rl"):
        shutil.copytree(debug_run / part, main / part)
    compare = ",".join(f"{name}={method_runs[name]}" for name in NAMES)
    assert launch.main([f"--config={DEBUG}", f"--workdir={main}", "--config.eval.methods=r2rank",
                        "--config.eval.baselines=", f"--config.eval.compare={compare}", "eval"]) == 0
    results = json.loads((main / "eval" / "results.json").read_text())
    assert results["significance"]["reference"] == "r2rank"
    assert results["compared_runs"] == {name: str(method_runs[name]) for name in NAMES}
    table = (main / "eval" / "results.md").read_text()
    for name in NAMES:
        assert name in results["methods"] and set(results["significance"]["comparisons"][name])
        assert f"| {name} |" in table
        ours = read_score_file(method_runs[name] / "eval" / "scores" / f"{name}.jsonl")
        imported = read_score_file(main / "eval" / "scores" / f"{name}.jsonl")
        assert imported.user_ids == ours.user_ids and imported.scores == ours.scores
