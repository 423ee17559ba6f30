"""Cross-domain transfer: score a trained workdir's model on another prepared benchmark (another
domain, or for tests a synthetic world with another seed) and compare with its in-domain numbers.

The model, tokenizer and prompt settings are the workdir's; items and users are the target
benchmark's. In-domain numbers are the eval stage's (WORKDIR/eval/results.json, its users);
popularity and random scored on the target benchmark's own train split give the target's floor.

    python -m r2rank_jax.analyses.cross_domain --workdir DIR --benchmark OTHER_BENCHMARK_DIR
        [--methods r2rank] [--max-users N] [--split test]

Writes WORKDIR/analyses/cross_domain.{md,json,png} and the target's per-user score files in
WORKDIR/analyses/cross_domain/METHOD.jsonl.
"""
from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

from r2rank_jax.analyses import common
from r2rank_jax.baselines.common import ItemIndex
from r2rank_jax.baselines.popularity import popularity_scores
from r2rank_jax.baselines.random import random_scores
from r2rank_jax.data.benchmark import load_manifest, load_split
from r2rank_jax.eval.evaluate import evaluate_score_files
from r2rank_jax.eval.score_files import write_score_file
from r2rank_jax.run.workdir import MissingInputError

METRICS = ("ndcg@10", "hr@10", "mrr")
REFERENCE_BASELINES = ("popularity", "random")


def in_domain_results(workdir: pathlib.Path) -> dict:
    path = workdir / "eval" / "results.json"
    if not path.is_file():
        raise MissingInputError(f"{path} is missing: run the `eval` stage first (the in-domain numbers come from it)")
    return json.loads(path.read_text())


def main(argv: list[str] | None = None) -> int:
    p = common.parser("cross_domain", __doc__)
    common.add_model_args(p, "r2rank")
    p.add_argument("--benchmark", required=True, type=pathlib.Path, help="the target prepared benchmark directory")
    args = p.parse_args(argv)
    methods = common.parse_methods(args.methods)
    in_domain = in_domain_results(args.workdir)
    target_manifest = load_manifest(args.benchmark)
    ctx = common.ModelContext.load(args.workdir, args.split, args.max_users, args.mesh, benchmark=args.benchmark)
    records, split = ctx.records, ctx.source.split
    out = common.output_dir(args)
    scores_dir = out / "cross_domain"
    paths = {m: write_score_file(scores_dir / f"{m}.jsonl", records, ctx.scorer(m)(records)) for m in methods}
    train = load_split(args.benchmark, "train")
    index = ItemIndex.from_benchmark(args.benchmark)
    baselines = {"popularity": popularity_scores(train, records, index), "random": random_scores(records, ctx.cfg.seed)}
    paths |= {b: write_score_file(scores_dir / f"{b}.jsonl", records, s) for b, s in baselines.items()}
    per_user, _ = evaluate_score_files(paths, records, split)
    cross = {m: {k: float(np.mean(per_user[m][k])) for k in METRICS} for m in paths}
    rows = {}
    for m in paths:
        source = in_domain["methods"].get(m)
        rows[m] = {"in_domain": {k: source[k] for k in METRICS} if source else None, "cross_domain": cross[m]}
        if source:
            rows[m]["delta_ndcg@10"] = cross[m]["ndcg@10"] - source["ndcg@10"]
    result = {"analysis": "cross_domain", "split": split,
              "source": {"workdir": str(args.workdir), "content_hash": in_domain["benchmark"].get("content_hash"),
                         "num_users": in_domain.get("num_users")},
              "target": {"benchmark": str(args.benchmark), "content_hash": target_manifest.get("content_hash"),
                         "num_users": len(records)},
              "methods": rows, "score_files": {m: str(p) for m, p in paths.items()}}
    common.write_outputs(out, "cross_domain", result, render_markdown(result), plot(result))
    return 0


def render_markdown(result: dict) -> str:
    src, tgt = result["source"], result["target"]
    lines = [f"# Cross-domain transfer ({result['split']} split)", "",
             f"In-domain: the workdir's eval stage ({src['num_users']} users, benchmark "
             f"{str(src['content_hash'])[:12]}). Cross-domain: {tgt['benchmark']} ({tgt['num_users']} users, benchmark "
             f"{str(tgt['content_hash'])[:12]}). Popularity and random are fit on the target's own train split.", "",
             "| Method | " + " | ".join(f"in-domain {k.upper()}" for k in METRICS) + " | "
             + " | ".join(f"cross-domain {k.upper()}" for k in METRICS) + " | Δ NDCG@10 |",
             "|---|" + "---:|" * (2 * len(METRICS) + 1)]
    for name, row in result["methods"].items():
        ind = [common.fmt(row["in_domain"][k]) if row["in_domain"] else "n/a" for k in METRICS]
        cross = [common.fmt(row["cross_domain"][k]) for k in METRICS]
        delta = f"{row['delta_ndcg@10']:+.4f}" if "delta_ndcg@10" in row else "n/a"
        lines.append(f"| {name} | " + " | ".join(ind + cross) + f" | {delta} |")
    return "\n".join(lines) + "\n"


def plot(result: dict):
    fig, axes = common.figure()
    ax = axes[0, 0]
    names = list(result["methods"])
    x = np.arange(len(names))
    ind = [r["in_domain"]["ndcg@10"] if r["in_domain"] else np.nan for r in result["methods"].values()]
    cross = [r["cross_domain"]["ndcg@10"] for r in result["methods"].values()]
    ax.bar(x - 0.2, ind, 0.4, label="in-domain")
    ax.bar(x + 0.2, cross, 0.4, label="cross-domain")
    ax.set_xticks(x, names)
    ax.set_ylabel("NDCG@10")
    ax.set_title("Cross-domain transfer")
    ax.legend(fontsize=7)
    return fig


if __name__ == "__main__":
    sys.exit(main())
