"""Candidate position sensitivity: move each user's positive to position 1, 10, 20 of the candidate
list (the negatives keep their relative order), rescore, and compare every candidate's score with
its score in the benchmark's order.

R2Rank scores each candidate from its own prompt (a shared prefix without the other candidates plus
that candidate), so its scores must not move (max |Δ| <= 1e-5, float noise); the listwise baseline
sees all candidates in one prompt in list order, so its scores may.

    python -m r2rank_jax.analyses.position --workdir DIR [--positions 1,10,20]
        [--methods r2rank,zero_shot_listwise] [--max-users N] [--split test]

Writes WORKDIR/analyses/position.{md,json,png}: per method and placement the max abs score change
and NDCG@10 (ties at their expected value).
"""
from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

import numpy as np

from r2rank_jax.analyses import common
from r2rank_jax.data.benchmark import Record
from r2rank_jax.eval.per_user import per_user_metrics
from r2rank_jax.eval.score_files import positive_indices

TOLERANCE = 1e-5
ORIGINAL = "original"


def placement(record: Record, position: int) -> tuple[int, ...]:
    """perm with new candidates[j] = candidates[perm[j]]: the positive at 1-based `position`, the
    negatives in their original relative order."""
    k = len(record.candidates)
    if not 1 <= position <= k:
        raise ValueError(f"position {position} outside 1..{k} (user {record.user_id!r} has {k} candidates)")
    pos = record.candidates.index(record.positive)
    rest = [j for j in range(k) if j != pos]
    return tuple(rest[:position - 1] + [pos] + rest[position - 1:])


def placed(records: Sequence[Record], position: int) -> tuple[list[Record], np.ndarray]:
    """(records with reordered candidates, perms `[N, K]`)."""
    perms = np.array([placement(r, position) for r in records])
    moved = common.replace_records(records, candidates=[[r.candidates[j] for j in p] for r, p in zip(records, perms)])
    return moved, perms


def back_to_original(scores: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """Scores `[N, K]` of reordered candidates -> the same scores in the original candidate order."""
    out = np.empty_like(scores)
    np.put_along_axis(out, perms, scores, axis=1)
    return out


def position_sensitivity(scorers: Mapping[str, common.Scorer], records: Sequence[Record],
                         positions: Sequence[int] = (1, 10, 20), tolerance: float = TOLERANCE
                         ) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """(summary, name -> placement -> scores `[N, K]` in the original candidate order)."""
    positives = positive_indices(records)
    moved = {str(p): placed(records, p) for p in positions}
    summary: dict = {"positions": list(positions), "num_users": len(records), "tolerance": tolerance, "methods": {}}
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for name, scorer in scorers.items():
        runs = {ORIGINAL: np.asarray(scorer(records), dtype=np.float64)}
        parse = {ORIGINAL: getattr(scorer, "last_stats", None)}
        for label, (recs, perms) in moved.items():
            runs[label] = back_to_original(np.asarray(scorer(recs), dtype=np.float64), perms)
            parse[label] = getattr(scorer, "last_stats", None)
        change = {label: float(np.max(np.abs(s - runs[ORIGINAL]))) for label, s in runs.items() if label != ORIGINAL}
        entry = {
            "ndcg@10": {label: float(per_user_metrics(s, positives)["ndcg@10"].mean()) for label, s in runs.items()},
            "max_abs_change": change,
            "max_abs_change_overall": max(change.values()),
            "invariant": max(change.values()) <= tolerance,
            "score_spread": float(np.mean(np.ptp(runs[ORIGINAL], axis=1))),  # mean per-user max - min
        }
        if any(v is not None for v in parse.values()):
            entry["parse"] = parse
        summary["methods"][name] = entry
        arrays[name] = runs
    return summary, arrays


def render_markdown(summary: dict) -> str:
    labels = [ORIGINAL] + [str(p) for p in summary["positions"]]
    head = ("| Method | " + " | ".join(f"NDCG@10 ({'benchmark order' if l == ORIGINAL else 'positive at ' + l})"
                                      for l in labels)
            + f" | max abs score change | invariant (<= {summary['tolerance']:g}) |")
    lines = [f"# Candidate position sensitivity ({summary['num_users']} users)", "",
             "Each user's positive is moved to the given 1-based position of the candidate list (negatives keep "
             "their relative order); every candidate's score is compared with its score in the benchmark's "
             "order.", "", head, "|---|" + "---:|" * (len(labels) + 1) + "---|"]
    for name, e in summary["methods"].items():
        cells = [common.fmt(e["ndcg@10"][l]) for l in labels]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {e['max_abs_change_overall']:.3g} | "
                     + ("yes" if e["invariant"] else "no") + " |")
    lines += ["", "Max abs score change per placement:", "",
              "| Method | " + " | ".join(f"positive at {p}" for p in summary["positions"]) + " | mean score spread |",
              "|---|" + "---:|" * (len(summary["positions"]) + 1)]
    for name, e in summary["methods"].items():
        lines.append(f"| {name} | " + " | ".join(f"{e['max_abs_change'][str(p)]:.3g}" for p in summary["positions"])
                     + f" | {e['score_spread']:.3g} |")
    parsed = {n: e["parse"] for n, e in summary["methods"].items() if "parse" in e}
    for name, per in parsed.items():
        lines += ["", f"Parse rate of {name} (fully / at least partly parsed): "
                  + ", ".join(f"{l}: {per[l]['parse_rate']:.2f} / {per[l]['any_parse_rate']:.2f}" for l in labels if per[l])]
        if all(per[l] and per[l]["any_parse_rate"] == 0 for l in labels):
            lines += ["", f"Every output of {name} was unparsable and scored as the worst case, which does not "
                      "depend on the candidate order: its invariance here says nothing about position bias."]
    return "\n".join(lines) + "\n"


def plot(summary: dict):
    fig, axes = common.figure(ncols=2, width=4.8)
    left, right = axes[0]
    positions = summary["positions"]
    for name, e in summary["methods"].items():
        line = left.plot(positions, [e["ndcg@10"][str(p)] for p in positions], marker="o", label=name)[0]
        left.axhline(e["ndcg@10"][ORIGINAL], color=line.get_color(), linestyle=":", linewidth=1)
    left.set_xlabel("position of the positive (1-based)")
    left.set_ylabel("NDCG@10 (dotted: benchmark order)")
    left.set_xticks(positions)
    left.legend(fontsize=7)
    names = list(summary["methods"])
    width = 0.8 / max(len(positions), 1)
    x = np.arange(len(names))
    for j, p in enumerate(positions):
        right.bar(x + (j - (len(positions) - 1) / 2) * width,
                  [summary["methods"][n]["max_abs_change"][str(p)] for n in names], width, label=f"positive at {p}")
    right.axhline(summary["tolerance"], color="k", linestyle="--", linewidth=1, label="tolerance")
    right.set_yscale("symlog", linthresh=summary["tolerance"])
    top = max([e["max_abs_change_overall"] for e in summary["methods"].values()] + [1.0])
    right.set_ylim(0, top * 2)
    right.set_xticks(x, names)
    right.set_ylabel("max abs score change")
    right.legend(fontsize=7)
    fig.suptitle("Candidate position sensitivity")
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    p = common.parser("position", __doc__)
    common.add_model_args(p, "r2rank,zero_shot_listwise")
    p.add_argument("--positions", default="1,10,20", help="1-based positions of the positive (default 1,10,20)")
    p.add_argument("--tolerance", type=float, default=TOLERANCE)
    args = p.parse_args(argv)
    positions = [int(x) for x in args.positions.split(",") if x.strip()]
    ctx = common.ModelContext.load(args.workdir, args.split, args.max_users, args.mesh)
    scorers = {m: ctx.scorer(m) for m in common.parse_methods(args.methods)}
    summary, _ = position_sensitivity(scorers, ctx.records, positions, args.tolerance)
    summary = {"analysis": "position", "split": ctx.source.split, **summary}
    common.write_outputs(common.output_dir(args), "position", summary, render_markdown(summary), plot(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
