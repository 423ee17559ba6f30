"""Fitting the grounded teacher's weights and threshold on the TRAIN split, and the rule as a ranker.

    python -m r2rank_jax.analyses.grounded_fit --benchmark DIR [--negatives_per_user 1] [--seed 0]
        [--max_users N] [--eval_split test --eval_users 500]

Train pairs: every train user's positive plus ``negatives_per_user`` negatives of its saved candidate list
(`teacher.pairs.chosen_candidates`, the pairs synthesis asks about), with the record's history (the prompt
budget may show fewer items; with `data.history_len=10` and 384 prompt tokens that cut is rare). For every
weight vector of `GRID` the threshold is the one with the highest balanced accuracy (mean of the recall
of positives and of negatives) on those pairs; the chosen vector has the highest balanced accuracy, ties
broken by the train pairs' AUC of the match score, then by the smaller weight sum, then by grid order.
The eval split is used only to report the chosen rule's ranking metrics (the match score over all K
candidates, ties at their expected value), never to choose. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys

import numpy as np

from r2rank_jax.data.benchmark import Record, load_items, load_split
from r2rank_jax.teacher.grounded import FEATURES, THRESHOLD, WEIGHTS, feature_vector, load_titles
from r2rank_jax.teacher.grounded_evidence import EvidenceIndex
from r2rank_jax.teacher.pairs import chosen_candidates

GRID: dict[str, tuple[float, ...]] = {"platform": (0, 0.5, 1, 1.5, 2), "share": (0, 1, 2, 3),
                                      "franchise": (0, 1, 2, 3), "words": (0, 0.5, 1, 1.5),
                                      "popularity": (0, 0.25, 0.5, 1)}


def train_pairs(index: EvidenceIndex, records: list[Record], negatives_per_user: int, seed: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """(`[P, len(FEATURES)]` features, `[P]` bool labels) of the train pairs."""
    x, y = [], []
    for r in records:
        for c in chosen_candidates(r, negatives_per_user, seed):
            x.append(feature_vector(index.evidence(r, r.history, c)))
            y.append(c == r.positive)
    return np.asarray(x, np.float64), np.asarray(y, bool)


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(balanced accuracy, threshold) maximizing the balanced accuracy of ``scores >= threshold``: the
    lowest best cut, placed midway between the lowest score predicted positive and the next lower score."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    tp, fp = np.cumsum(y), np.cumsum(~y)
    last = np.r_[s[1:] != s[:-1], True]          # predicting positive for every score >= s[i]
    bacc = 0.5 * (tp / max(y.sum(), 1) + 1.0 - fp / max((~y).sum(), 1))
    bacc = np.where(last, bacc, -1.0)
    i = int(np.flatnonzero(bacc == bacc.max())[-1])
    below = s[i + 1] if i + 1 < len(s) else s[i] - 1.0
    return float(bacc[i]), round(float(s[i] + below) / 2, 4)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """P(score of a random positive > a random negative), ties counting one half."""
    from scipy.stats import rankdata

    r = rankdata(scores)
    npos, nneg = labels.sum(), (~labels).sum()
    return float((r[labels].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def fit(x: np.ndarray, y: np.ndarray, grid: dict[str, tuple[float, ...]] = GRID) -> dict:
    results = []
    for n, w in enumerate(itertools.product(*(grid[f] for f in FEATURES))):
        if not any(w):
            continue
        scores = x @ np.asarray(w)
        bacc, threshold = best_threshold(scores, y)
        results.append((round(bacc, 10), round(auc(scores, y), 10), -sum(w), -n, w, threshold))
    bacc, area, _, _, w, threshold = max(results)
    return {"weights": dict(zip(FEATURES, map(float, w))), "threshold": threshold, "balanced_accuracy": bacc,
            "auc": area, "grid_size": len(results)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m r2rank_jax.analyses.grounded_fit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmark", required=True)
    p.add_argument("--negatives_per_user", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max_users", type=int, default=None)
    p.add_argument("--eval_split", default="test")
    p.add_argument("--eval_users", type=int, default=500)
    args = p.parse_args(argv)
    train = load_split(args.benchmark, "train")
    index = EvidenceIndex.from_split(load_titles(load_items(args.benchmark)), train)
    x, y = train_pairs(index, train[:args.max_users], args.negatives_per_user, args.seed)
    out = {"train_pairs": int(len(y)), "train_positives": int(y.sum()), **fit(x, y)}
    from r2rank_jax.eval.evaluate import mean_metrics

    w = np.asarray([out["weights"][f] for f in FEATURES])
    records = load_split(args.benchmark, args.eval_split)[:args.eval_users]
    scores = np.asarray([[feature_vector(index.evidence(r, r.history, c)) for c in r.candidates] for r in records]) @ w
    out["rank"] = {"split": args.eval_split, "users": len(records),
                   **{k: round(v, 4) for k, v in mean_metrics(records, scores).items()}}
    out["defaults_match"] = (out["weights"] == {f: float(getattr(WEIGHTS, f)) for f in FEATURES}
                             and out["threshold"] == THRESHOLD)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
