"""results.json and the Table-2-shaped results.md from per-user metrics of several methods.

results.json:

    {"methods": {NAME: {"ndcg@10": mean, "ndcg@10_ci": [lo, hi], ..., "ties": {...}}, ...},
     "significance": {"reference": NAME, "test": ..., "markers": {...},
                      "comparisons": {NAME: {metric: {"p_value", "marker", "mean_diff"}}}},
     "num_users": N, "benchmark": {"content_hash", "split", "path", "num_candidates"},
     "ci": {"method", "level", "resamples", "seed"}, "ties": "expected", "random_expectation": {...}}
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

import r2rank_jax.eval.confidence as confidence
import r2rank_jax.eval.significance as significance
from r2rank_jax.eval.per_user import CUTOFFS, METRICS
from r2rank_jax.ranking.metrics import expected_random_ndcg

_HEADERS = {m: m.replace("ndcg", "NDCG").replace("hr", "HR").replace("mrr", "MRR") for m in METRICS}


def random_expectation(num_candidates: int) -> dict[str, float]:
    """Metrics of a uniformly random ranking of K candidates with one positive."""
    out = {f"ndcg@{k}": expected_random_ndcg(k, num_candidates) for k in CUTOFFS}
    out |= {f"hr@{k}": min(k, num_candidates) / num_candidates for k in CUTOFFS}
    out["mrr"] = float(np.mean(1.0 / np.arange(1, num_candidates + 1)))
    return out


def build_results(
    per_user: Mapping[str, Mapping[str, np.ndarray]],
    reference: str,
    benchmark: Mapping[str, Any],
    ties: Mapping[str, Mapping[str, int]] | None = None,
    level: float = confidence.DEFAULT_LEVEL,
    resamples: int = confidence.DEFAULT_RESAMPLES,
    seed: int = 0,
    num_candidates: int | None = None,
) -> dict[str, Any]:
    """per_user: method -> metric -> `[N]` (same users in the same order for every method)."""
    names = list(per_user)
    sizes = {len(per_user[n][m]) for n in names for m in METRICS}
    if len(sizes) != 1:
        raise ValueError(f"methods disagree on the number of users: {sorted(sizes)}")
    (num_users,) = sizes
    stacked = np.stack([per_user[n][m] for n in names for m in METRICS], axis=1)  # [N, methods * metrics]
    lo, hi = confidence.bootstrap_ci(stacked, level, resamples, seed)
    methods: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(names):
        entry: dict[str, Any] = {}
        for j, metric in enumerate(METRICS):
            col = i * len(METRICS) + j
            entry[metric] = float(stacked[:, col].mean())
            entry[f"{metric}_ci"] = [float(lo[col]), float(hi[col])]
        if ties is not None and name in ties:
            entry["ties"] = dict(ties[name])
        methods[name] = entry
    results: dict[str, Any] = {
        "methods": methods,
        "significance": {
            "reference": reference,
            "test": significance.TEST_NAME,
            "markers": {sign: f"p < {t}" for t, sign in significance.MARKERS},
            "comparisons": significance.compare_to_reference(per_user, reference, METRICS),
        },
        "num_users": int(num_users),
        "benchmark": dict(benchmark),
        "ci": {"method": "percentile bootstrap over users (shared resamples)", "level": level,
               "resamples": resamples, "seed": seed},
        "ties": "expected value over random orders of tied candidates",
    }
    if num_candidates is not None:
        results["random_expectation"] = random_expectation(num_candidates)
    return results


CEILING = "oracle"   # r2rank_jax.baselines.oracle: shown as a ceiling, not a method


def render_markdown(results: Mapping[str, Any]) -> str:
    """A Table-2-style table (rows = methods, markers vs the reference), then CIs and p-values."""
    methods = results["methods"]
    sig = results["significance"]
    ref = sig["reference"]
    comparisons = sig["comparisons"]
    head = "| Method | " + " | ".join(_HEADERS[m] for m in METRICS) + " |"
    rule = "|---|" + "---:|" * len(METRICS)
    bench = results["benchmark"]
    out = [
        f"# Results ({bench.get('split', '?')} split, {results['num_users']} users, "
        f"benchmark {str(bench.get('content_hash', '?'))[:12]})",
        "",
        f"Markers: significance of each method against **{ref}** ({sig['test']}): "
        + ", ".join(f"{s} {d}" for s, d in sig["markers"].items()) + ". "
        "Ties in scores count as their expected value over random orders.",
        "", head, rule,
    ]
    for name, entry in methods.items():
        cells = []
        for m in METRICS:
            mark = comparisons.get(name, {}).get(m, {}).get("marker", "")
            cells.append(f"{entry[m]:.4f}{mark}")
        label = f"{name} (ref)" if name == ref else name
        if name == CEILING:
            label = f"*{name} (ceiling)*"
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    if "random_expectation" in results:
        rnd = results["random_expectation"]
        out.append("| *random (expected)* | " + " | ".join(f"{rnd[m]:.4f}" for m in METRICS) + " |")
    if CEILING in methods:
        out += ["", f"*{CEILING}*: the synthetic world's own attribute scores (it reads the items' hidden "
                "attributes, which no method sees): a ceiling, not a method."]
    ci = results["ci"]
    out += ["", f"## {int(ci['level'] * 100)}% confidence intervals ({ci['method']}, "
                f"{ci['resamples']} resamples, seed {ci['seed']})", "", head, rule]
    for name, entry in methods.items():
        out.append(f"| {name} | " + " | ".join(f"[{entry[m + '_ci'][0]:.4f}, {entry[m + '_ci'][1]:.4f}]" for m in METRICS) + " |")
    out += ["", f"## p-values against {ref}", "", head, rule]
    for name, per_metric in comparisons.items():
        out.append(f"| {name} | " + " | ".join(f"{per_metric[m]['p_value']:.3g}" for m in METRICS) + " |")
    tie_rows = [(n, e["ties"]) for n, e in methods.items() if "ties" in e]
    if tie_rows:
        out += ["", "## Tied scores", "", "| Method | users with ties | users with a tied positive |", "|---|---:|---:|"]
        out += [f"| {n} | {t['users_with_ties']} | {t['users_with_tied_positive']} |" for n, t in tie_rows]
    return "\n".join(out) + "\n"
