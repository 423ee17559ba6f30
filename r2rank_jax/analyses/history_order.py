"""History-order randomization (the paper's Table 7): shuffle every user's history S times (seeded),
rescore, and report NDCG@10 over the shuffles (mean, sample std, min, max) next to the original order.

The prompts say "interacted items (oldest first)", so a shuffle removes the order signal while
keeping the set of items; a method that reads order should move, one that uses the items as a bag
should not. When the prompt budget cuts the history, the oldest items *of the shuffled order* go.

    python -m r2rank_jax.analyses.history_order --workdir DIR [--shuffles 5] [--seed 0]
        [--methods r2rank] [--max-users N] [--split test]

Writes WORKDIR/analyses/history_order.{md,json,png}.
"""
from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

import numpy as np

from r2rank_jax.analyses import common
from r2rank_jax.data.benchmark import Record
from r2rank_jax.eval.per_user import per_user_metrics
from r2rank_jax.eval.score_files import positive_indices


def shuffled_histories(records: Sequence[Record], shuffle: int, seed: int = 0) -> list[Record]:
    """Records with each history permuted; shuffle s of seed t is the same on every run and machine."""
    rng = np.random.default_rng([seed, shuffle])
    return common.replace_records(records, history=[[r.history[j] for j in rng.permutation(len(r.history))]
                                                    for r in records])


def summarize(values: Sequence[float]) -> dict[str, float]:
    """mean, sample std (ddof=1; 0 for one shuffle), min, max."""
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max())}


def history_order(scorers: Mapping[str, common.Scorer], records: Sequence[Record], num_shuffles: int = 5,
                  seed: int = 0) -> dict:
    if num_shuffles < 1:
        raise ValueError(f"need at least one shuffle, got {num_shuffles}")
    positives = positive_indices(records)
    variants = [shuffled_histories(records, s, seed) for s in range(num_shuffles)]

    def ndcg(scores) -> float:
        return float(per_user_metrics(np.asarray(scores), positives)["ndcg@10"].mean())

    methods = {}
    for name, scorer in scorers.items():
        original = ndcg(scorer(records))
        per_shuffle = [ndcg(scorer(v)) for v in variants]
        methods[name] = {"original": original, "shuffles": per_shuffle, **summarize(per_shuffle)}
    return {"num_users": len(records), "num_shuffles": num_shuffles, "seed": seed, "metric": "ndcg@10",
            "methods": methods}


def render_markdown(result: dict) -> str:
    lines = [f"# History-order randomization ({result['num_users']} users, {result['num_shuffles']} shuffles, "
             f"seed {result['seed']})", "",
             "NDCG@10 with each user's history in its original order and over random orders "
             "(std: sample standard deviation over the shuffles).", "",
             "| Method | original order | mean | std | min | max |", "|---|---:|---:|---:|---:|---:|"]
    for name, m in result["methods"].items():
        lines.append(f"| {name} | {m['original']:.4f} | {m['mean']:.4f} | {m['std']:.4f} | {m['min']:.4f} | "
                     f"{m['max']:.4f} |")
    return "\n".join(lines) + "\n"


def plot(result: dict):
    fig, axes = common.figure()
    ax = axes[0, 0]
    names = list(result["methods"])
    for i, name in enumerate(names):
        m = result["methods"][name]
        jitter = np.linspace(-0.15, 0.15, len(m["shuffles"])) if len(m["shuffles"]) > 1 else [0.0]
        ax.scatter(i + np.asarray(jitter), m["shuffles"], s=14, alpha=0.7, label="shuffled" if i == 0 else None)
        ax.errorbar(i, m["mean"], yerr=m["std"], fmt="o", color="k", capsize=4, label="mean ± std" if i == 0 else None)
        ax.hlines(m["original"], i - 0.3, i + 0.3, colors="r", label="original order" if i == 0 else None)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("NDCG@10")
    ax.set_title("History-order randomization")
    ax.legend(fontsize=7)
    return fig


def main(argv: list[str] | None = None) -> int:
    p = common.parser("history_order", __doc__)
    common.add_model_args(p, "r2rank")
    p.add_argument("--shuffles", type=int, default=5, help="number of shuffles S (default 5)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    ctx = common.ModelContext.load(args.workdir, args.split, args.max_users, args.mesh)
    scorers = {m: ctx.scorer(m) for m in common.parse_methods(args.methods)}
    result = {"analysis": "history_order", "split": ctx.source.split,
              **history_order(scorers, ctx.records, args.shuffles, args.seed)}
    common.write_outputs(common.output_dir(args), "history_order", result, render_markdown(result), plot(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
