"""The paper's ablation findings over several seeds: each run once per seed, then one table of
mean ± spread and paired p-values.

    python -m r2rank_jax.findings --config=configs/demo.py --workdir=W [--seeds 0,1,2]
        [--findings sft_rl_vs_rl_only,llm_mlp_vs_mlp_only,cot_vs_no_cot] [--config.F=V ...]

Each finding compares two runs (`FINDINGS`): ``main`` (the config as given), and the ablations of
`r2rank_jax.ablations` (``rl_only``, ``mlp_only``, ``no_cot``). Run NAME of seed S lives in
``W/seed{S}/NAME`` (``launch --config=C --config.seed=S <ablation overrides> ... STAGE`` for each stage,
each in its own process, evaluating its R2Rank checkpoint only); ``no_cot`` starts from the same seed's main SFT checkpoint (its definition: the
same SFT, only the RL and evaluation prompts change), so it runs ``rl`` and ``eval`` on a copy of main's
``data``, ``teacher`` and ``sft``. A run whose ``eval/results.json`` exists is skipped: after an
interruption (SIGTERM is passed to the running stage, which checkpoints) the same command continues,
the interrupted stage from its checkpoints (the launcher's ``--resume``).

Writes ``W/findings.json`` and ``W/findings.md``: per finding and seed NDCG@10 (and MRR) of both runs,
the paired two-sided Wilcoxon p-value over the seed's test users, and over all seeds the mean ± standard
deviation, the number of seeds where the first run is ahead, and the p-value of users × seeds pooled.
The last stdout line is one JSON object: ``{"findings": PATH, "<finding>": {"delta_ndcg@10": ..., "p": ...}}``.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Sequence

import numpy as np

from r2rank_jax import ablations, runner
from r2rank_jax.data.benchmark import load_split
from r2rank_jax.eval.evaluate import evaluate_score_files
from r2rank_jax.eval.significance import TEST_NAME, wilcoxon_p
from r2rank_jax.runner import Run

# finding -> (run A, run B, the paper's claim "A > B")
FINDINGS: dict[str, tuple[str, str, str]] = {
    "sft_rl_vs_rl_only": ("main", "rl_only", "SFT&RL > RL-only (Table 3)"),
    "llm_mlp_vs_mlp_only": ("rl_only", "mlp_only", "LLM+MLP > MLP-only (Table 3)"),
    "cot_vs_no_cot": ("main", "no_cot", "with CoT > without CoT (Table 5)"),
}
STAGES: tuple[str, ...] = ("prepare", "synthesize", "sft", "rl", "eval")
MAIN_EVAL: tuple[str, ...] = ablations.ABLATION_EVAL
METRICS: tuple[str, ...] = ("ndcg@10", "mrr")


def runs_needed(findings: Sequence[str]) -> list[str]:
    """The run names the findings compare, main first."""
    unknown = [f for f in findings if f not in FINDINGS]
    if unknown:
        raise ValueError(f"--findings: unknown finding(s) {unknown}; known: {list(FINDINGS)}")
    names = {n for f in findings for n in FINDINGS[f][:2]}
    if "no_cot" in names:
        names.add("main")               # no_cot starts from main's SFT
    return [n for n in ("main", *ablations.ABLATIONS) if n in names]


def plan(workdir: str | pathlib.Path, seeds: Sequence[int], findings: Sequence[str]) -> list[Run]:
    """Every run, seed by seed, in dependency order."""
    root = pathlib.Path(workdir)
    out = []
    for seed in seeds:
        base = root / f"seed{seed}"
        for name in runs_needed(findings):
            wd = base / name
            if name == "main":
                out.append(Run(name, wd, tuple(f"--config.{o}" for o in MAIN_EVAL), STAGES, seed=seed))
            elif name == "no_cot":
                out.append(Run(name, wd, tuple(ablations.overrides(name)), ("rl", "eval"), copy_from=base / "main",
                               seed=seed))
            else:
                out.append(Run(name, wd, tuple(ablations.overrides(name)), STAGES, seed=seed))
    return out


def _stage_argv(run: Run, config: str, extra: Sequence[str], stage: str) -> list[str] | None:
    """The launcher arguments of one stage, or None when the stage is finished (prepare: its manifest
    exists); sft, rl and synthesize continue from what an interrupted run left (``--resume``)."""
    if stage == "prepare" and (run.workdir / "data" / "benchmark" / "manifest.json").is_file():
        return None
    return runner.launch_argv(run, config, extra, stage)


def execute(runs: Sequence[Run], config: str, extra: Sequence[str], dry_run: bool = False) -> bool:
    """Runs every unfinished stage as its own ``python -m r2rank_jax.launch`` process; returns False when
    SIGTERM stopped it (forwarded to the running stage, which checkpoints and exits)."""
    with runner.Children() as children:
        for run in runs:
            if run.done:
                print(f"# {run.name} seed {run.seed}: done ({run.workdir})", flush=True)
                continue
            for stage in run.stages:
                argv = _stage_argv(run, config, extra, stage)
                if argv is None:
                    continue
                if dry_run:
                    print(runner.command_line(runner.LAUNCH, argv), flush=True)
                    continue
                runner.start_from(run)
                result = children.run(runner.LAUNCH, argv)
                if children.stopped:
                    print("# stopped by SIGTERM; the same command continues", flush=True)
                    return False
                if result.rc != 0:
                    raise RuntimeError(f"{run.name} seed {run.seed}: stage {stage} failed (exit {result.rc})")
    return True


def _per_user(run_dir: pathlib.Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """(user ids, metric -> `[N]`) of a run's R2Rank scores on its eval split."""
    results = json.loads((run_dir / "eval" / "results.json").read_text())
    split = results["benchmark"]["split"]
    path = run_dir / "eval" / "scores" / "r2rank.jsonl"
    users = [json.loads(line)["user_id"] for line in path.read_text().splitlines() if line.strip()]
    records = {r.user_id: r for r in load_split(run_dir / "data" / "benchmark", split)}
    missing = [u for u in users if u not in records]
    if missing:
        raise ValueError(f"{path}: users {missing[:3]} are not in the {split} split of {run_dir}/data/benchmark")
    per_user, _ = evaluate_score_files({"r2rank": path}, [records[u] for u in users], split)
    return users, per_user["r2rank"]


def _paired(a_dir: pathlib.Path, b_dir: pathlib.Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    users_a, a = _per_user(a_dir)
    users_b, b = _per_user(b_dir)
    if users_a != users_b:
        raise ValueError(f"{a_dir} and {b_dir} evaluated different users (same eval.split and eval.max_users "
                         "and the same prepared data are needed)")
    return a, b


def summarize(workdir: str | pathlib.Path, seeds: Sequence[int], findings: Sequence[str]) -> dict:
    """The findings table's data (module docstring) from finished runs."""
    root = pathlib.Path(workdir)
    out: dict = {"test": TEST_NAME, "seeds": list(seeds), "findings": {}}
    for finding in findings:
        name_a, name_b, claim = FINDINGS[finding]
        per_seed, pooled_a, pooled_b = [], [], []
        for seed in seeds:
            a, b = _paired(root / f"seed{seed}" / name_a, root / f"seed{seed}" / name_b)
            row = {"seed": seed, "users": int(len(a["ndcg@10"])),
                   "p_ndcg@10": wilcoxon_p(a["ndcg@10"], b["ndcg@10"])}
            for m in METRICS:
                row[f"{name_a} {m}"] = float(np.mean(a[m]))
                row[f"{name_b} {m}"] = float(np.mean(b[m]))
            per_seed.append(row)
            pooled_a.append(a["ndcg@10"])
            pooled_b.append(b["ndcg@10"])
        ma = np.array([r[f"{name_a} ndcg@10"] for r in per_seed])
        mb = np.array([r[f"{name_b} ndcg@10"] for r in per_seed])
        out["findings"][finding] = {
            "claim": claim, "a": name_a, "b": name_b, "per_seed": per_seed,
            "mean_a": float(ma.mean()), "sd_a": float(ma.std(ddof=1)) if len(ma) > 1 else 0.0,
            "mean_b": float(mb.mean()), "sd_b": float(mb.std(ddof=1)) if len(mb) > 1 else 0.0,
            "delta_ndcg@10": float(ma.mean() - mb.mean()), "a_ahead_in": int((ma > mb).sum()),
            "p_pooled": wilcoxon_p(np.concatenate(pooled_a), np.concatenate(pooled_b)),
        }
    return out


def render(summary: dict) -> str:
    lines = [f"Paired test: {summary['test']}; seeds {summary['seeds']}; NDCG@10 of each run's R2Rank scores.", "",
             "| finding (paper's claim) | A | A mean ± sd | B | B mean ± sd | Δ | A ahead | p per seed | p pooled |",
             "|---|---|---:|---|---:|---:|---:|---|---:|"]
    for f in summary["findings"].values():
        ps = ", ".join(f"{r['p_ndcg@10']:.2g}" for r in f["per_seed"])
        lines.append(f"| {f['claim']} | {f['a']} | {f['mean_a']:.4f} ± {f['sd_a']:.4f} | {f['b']} | "
                     f"{f['mean_b']:.4f} ± {f['sd_b']:.4f} | {f['delta_ndcg@10']:+.4f} | "
                     f"{f['a_ahead_in']}/{len(f['per_seed'])} | {ps} | {f['p_pooled']:.2g} |")
    lines += ["", "| finding | seed | users | " + " | ".join(["A NDCG@10", "B NDCG@10", "A MRR", "B MRR", "p"]) + " |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, f in summary["findings"].items():
        a, b = f["a"], f["b"]
        for r in f["per_seed"]:
            values = (r[f"{a} ndcg@10"], r[f"{b} ndcg@10"], r[f"{a} mrr"], r[f"{b} mrr"])
            lines.append(f"| {name} | {r['seed']} | {r['users']} | " + " | ".join(f"{v:.4f}" for v in values)
                         + f" | {r['p_ndcg@10']:.2g} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m r2rank_jax.findings", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--findings", default=",".join(FINDINGS), help=f"comma-separated, of {list(FINDINGS)}")
    parser.add_argument("--dry_run", action="store_true", help="print the launcher commands only")
    args, extra = runner.parse_args(parser, argv)
    if any(e.startswith("--config.seed=") for e in extra):
        parser.error("--config.seed is set per run from --seeds")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    if not seeds or len(set(seeds)) != len(seeds):
        parser.error(f"--seeds: need distinct seeds, got {args.seeds!r}")
    findings = [f for f in args.findings.split(",") if f.strip()]
    try:
        runs = plan(args.workdir, seeds, findings)
    except ValueError as e:
        parser.error(str(e))
    if not execute(runs, args.config, extra, dry_run=args.dry_run):
        return 0
    if args.dry_run:
        return 0
    summary = summarize(args.workdir, seeds, findings)
    root = pathlib.Path(args.workdir)
    (root / "findings.json").write_text(json.dumps(summary, indent=2) + "\n")
    (root / "findings.md").write_text(render(summary))
    print(render(summary), end="")
    print(json.dumps({"findings": str(root / "findings.json"),
                      **{k: {"delta_ndcg@10": v["delta_ndcg@10"], "p": v["p_pooled"]}
                         for k, v in summary["findings"].items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
