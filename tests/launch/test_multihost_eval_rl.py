"""Multi-host `rl` (per-host rollouts), `eval` and the position analysis: 2 `jax.distributed` CPU processes
× 2 devices (mesh fsdp:4 across both) against one process on 4 devices, from the same SFT checkpoint
(the session's `debug_run`).

- `rl`: each process reads and samples only its 2 users of every global batch of 4 on a host-local
  copy of θ and puts its rows of the RLBatch; per-step metrics and the step-2 parameters equal the
  one-process run's.
- `eval`: each process scores its 4 of the 8 users with host-local models; process 0 merges the
  per-user files and writes results.json, equal to the one-process results (per-user scores to 1e-5).
- `position`: each process rescores its block for every placement; the same summary as one process.
"""
import json
import math
import pathlib
import shutil
import time

import jax
import numpy as np
import pytest
from multihost_harness import REPO, spawn

from r2rank_jax.stages import eval_hosts

DEBUG = str(REPO / "configs" / "debug_cpu.py")
MESH = "fsdp:4"
# A global batch of 4 users (2 per process, divisible by fsdp:4); validation and a checkpoint at step 2.
OVERRIDES = {"rl.steps": "2", "rl.batch_users": "4", "rl.eval_every": "2", "rl.checkpoint_every": "2"}
POSITION = ["--methods", "r2rank", "--positions", "1,5"]
TIMEOUT_S = 420
IGNORED = {"time", "seconds", "tokens_per_s", "wall_s", "elapsed_s", "steps_per_s"}


def _copy(debug_run: pathlib.Path, to: pathlib.Path) -> pathlib.Path:
    shutil.copytree(debug_run, to, ignore=shutil.ignore_patterns("rl", "eval", "analyses", "metrics.jsonl",
                                                                 "tensorboard", "config.json"))
    return to


def _records(workdir: pathlib.Path, stage_prefix: str) -> list[dict]:
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if str(r.get("stage", "")).startswith(stage_prefix)]


def _close(a, b, where="", tol=1e-5):
    """Equal JSON-like values, floats to `tol` (absolute and relative)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            _close(a[k], b[k], f"{where}.{k}", tol)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{where}: {a} vs {b}"
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{where}[{i}]", tol)
    elif isinstance(a, float) and isinstance(b, (int, float)):
        assert math.isclose(a, b, rel_tol=tol, abs_tol=tol) or (math.isnan(a) and math.isnan(b)), f"{where}: {a} vs {b}"
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def _params(workdir: pathlib.Path, step: int, run: str = "rl") -> dict:
    from flax import nnx

    from r2rank_jax.config import load_config_file
    from r2rank_jax.run.build import build_model, load_tokenizer
    from r2rank_jax.run.workdir import Workdir
    from r2rank_jax.train.checkpoint import CheckpointConfig, Checkpointer, abstract_like

    cfg, wd = load_config_file(DEBUG), Workdir(workdir)
    model, head = build_model(cfg, load_tokenizer(cfg, wd))
    target = {"llm": nnx.split(model)[1], "head": nnx.split(head)[1]}
    with Checkpointer(CheckpointConfig(directory=str(workdir / run / "checkpoints"))) as ckpt:
        return jax.tree.map(np.asarray, ckpt.restore_params(abstract_like(target), step=step))


def _max_diff(a, b) -> float:
    return max(jax.tree.leaves(jax.tree.map(lambda x, y: float(np.max(np.abs(x - y))), a, b)))


def _driver(workdir: pathlib.Path) -> list[str]:
    args = [f"--config={DEBUG}", f"--workdir={workdir}", f"--mesh={MESH}",
            *(f"--config.{k}={v}" for k, v in OVERRIDES.items())]
    code = ("import sys; from r2rank_jax import launch; from r2rank_jax.analyses import position; "
            f"a = {args!r}; "
            "assert launch.main(a + ['rl']) == 0; assert launch.main(a + ['eval']) == 0; "
            f"assert position.main(['--workdir', {str(workdir)!r}, '--mesh', {MESH!r}, *{POSITION!r}]) == 0")
    return ["-c", code]


@pytest.mark.slow
def test_two_process_rl_eval_position_match_one_process(debug_run, tmp_path):
    from r2rank_jax.analyses import position
    from r2rank_jax.config import apply_overrides, load_config_file, write_resolved
    from r2rank_jax.eval.score_files import read_score_file
    from r2rank_jax.mesh import make_mesh
    from r2rank_jax.methods.eval_plan import eval_plan
    from r2rank_jax.methods.r2rank import rl
    from r2rank_jax.run.context import RunContext
    from r2rank_jax.run.workdir import Workdir
    from r2rank_jax.stages import evaluate

    one, two = _copy(debug_run, tmp_path / "one"), _copy(debug_run, tmp_path / "two")
    # One process, 4 of this test process's (8) CPU devices.
    cfg = apply_overrides(load_config_file(DEBUG), OVERRIDES)
    write_resolved(cfg, one)
    ctx = RunContext(cfg, Workdir(one), make_mesh(MESH, devices=jax.devices()[:4]))
    t0 = time.monotonic()
    rl.run(ctx)
    t1 = time.monotonic()
    evaluate.run(ctx, eval_plan(cfg))
    t2 = time.monotonic()
    assert position.main(["--workdir", str(one), *POSITION]) == 0
    t3 = time.monotonic()
    spawn(_driver(two), TIMEOUT_S, what="rl + eval + position run")
    print(f"TIMING one process: rl {t1 - t0:.1f} s, eval {t2 - t1:.1f} s, position {t3 - t2:.1f} s; "
          f"two processes (all three) {time.monotonic() - t3:.1f} s")

    # rl: the same steps, losses, rewards, validation NDCG; the same parameters after step 2.
    ref, got = _records(one, "rl"), _records(two, "rl")
    assert [(r["stage"], r["step"]) for r in got] == [(r["stage"], r["step"]) for r in ref] and len(ref) >= 2
    for r, g in zip(ref, got):
        _close({k: v for k, v in r.items() if k not in IGNORED}, {k: v for k, v in g.items() if k not in IGNORED},
               f"{r['stage']} step {r['step']}")
    a, b = _params(one, 2), _params(two, 2)
    assert _max_diff(a, b) <= 1e-5
    print(f"MEASURED rl: {[{k: r[k] for k in ('stage', 'loss', 'reward', 'grad_norm_head', 'valid_ndcg@10') if k in r} for r in ref]}"
          f" vs {[{k: g[k] for k in ('stage', 'loss', 'reward', 'grad_norm_head', 'valid_ndcg@10') if k in g} for g in got]}; "
          f"max abs param diff {_max_diff(a, b):.3g}")
    assert _max_diff(a["head"], _params(one, cfg.sft.steps, "sft")["head"]) > 1e-4   # RL did train the head

    # eval: per-user scores of every method, results.json (but the workdir path), the rationale sample.
    assert not (two / "eval" / "scores" / eval_hosts.PARTS).exists()          # merged and removed
    names = sorted(p.name for p in (one / "eval" / "scores").iterdir())
    assert sorted(p.name for p in (two / "eval" / "scores").iterdir()) == names
    for name in names:
        if name.count(".") == 1:                                                # NAME.jsonl score files
            s1, s2 = read_score_file(one / "eval" / "scores" / name), read_score_file(two / "eval" / "scores" / name)
            assert s1.user_ids == s2.user_ids and len(s1.user_ids) == cfg.eval.max_users
            np.testing.assert_allclose(s2.scores, s1.scores, atol=1e-5, err_msg=name)
            x1, x2 = np.asarray(s1.scores, np.float64), np.asarray(s2.scores, np.float64)
            print(f"MEASURED eval {name}: max abs score diff {float(np.max(np.abs(x2 - x1)[np.isfinite(x1)])):.3g}")
        elif name.endswith((".outputs.jsonl", ".rationales.jsonl")):           # generated texts, rationale samples
            assert (two / "eval" / "scores" / name).read_text() == (one / "eval" / "scores" / name).read_text(), name
    r1, r2 = (json.loads((w / "eval" / "results.json").read_text()) for w in (one, two))
    for r in (r1, r2):
        r["benchmark"].pop("path")
    _close(r1, r2, "results.json")
    print(f"MEASURED results.json identical (but the path): {r1 == r2}; ndcg@10 "
          f"{ {m: round(e['ndcg@10'], 4) for m, e in r1['methods'].items()} }")
    assert (two / "eval" / "results.md").read_text() == (one / "eval" / "results.md").read_text()
    assert {"r2rank", "sft_only", "zero_shot_listwise", "random"} <= set(r1["methods"])

    # position analysis: the same summary.
    p1, p2 = (json.loads((w / "analyses" / "position.json").read_text()) for w in (one, two))
    _close(p1, p2, "position.json")
    print(f"MEASURED position.json identical: {p1 == p2}")
    assert p1["methods"]["r2rank"]["score_spread"] > 0                          # scores are not all tied


def test_merge_extras():
    m = eval_hosts.merge_extras
    assert m([{"checkpoint_step": 4, "answer_tag_rate": 0.5}, {"checkpoint_step": 4, "answer_tag_rate": 1.0}],
             [3, 1]) == {"checkpoint_step": 4, "answer_tag_rate": 0.625}
    parse = [{"parsed": 1, "partial": 0, "unparsable": 1, "with_repeats": 0, "with_out_of_range": 1, "total": 2,
              "parse_rate": 0.5, "any_parse_rate": 0.5},
             {"parsed": 2, "partial": 1, "unparsable": 0, "with_repeats": 1, "with_out_of_range": 0, "total": 3,
              "parse_rate": 2 / 3, "any_parse_rate": 1.0}]
    assert m(parse, [2, 3]) == {"parsed": 3, "partial": 1, "unparsable": 1, "with_repeats": 1, "with_out_of_range": 1,
                                "total": 5, "parse_rate": 0.6, "any_parse_rate": 0.8}
    assert m([{"users_with_chains": 2}, {"users_with_chains": 2}], [2, 2]) == {"users_with_chains": 4}
    assert m([{"model": "rl"}, {"model": "sft"}], [1, 1]) == {"model": {"per_process": ["rl", "sft"]}}


def test_host_blocks_cover_the_users_in_order():
    from r2rank_jax import distributed

    for n, count in [(8, 2), (7, 3), (3, 3), (0, 2)]:
        blocks = [distributed.host_block(n, i, count) for i in range(count)]
        assert [i for b in blocks for i in range(n)[b]] == list(range(n))
        assert max(b.stop - b.start for b in blocks) - min(b.stop - b.start for b in blocks) <= 1
    with pytest.raises(distributed.DistributedError, match="0 <= index < count"):
        distributed.host_block(4, 2, 2)


@pytest.mark.parametrize("resume", [False, True])
def test_a_part_directory_keeps_its_journals_only_on_resume(tmp_path, resume):
    part = tmp_path / "parts" / "process-1-of-2"
    (part / "sub").mkdir(parents=True)
    for name in ("r2rank.jsonl", "r2rank.journal.jsonl", "extras.json", "sub/x"):
        (part / name).write_text("old\n")
    eval_hosts._clear_part(part, keep_journals=resume)
    assert sorted(p.name for p in part.iterdir()) == (["r2rank.journal.jsonl"] if resume else [])
    eval_hosts._clear_part(tmp_path / "fresh", keep_journals=resume)
    assert (tmp_path / "fresh").is_dir()
