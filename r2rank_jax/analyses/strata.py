"""Per-tier metrics: users bucketed by one number each (positive item's train frequency, history
length, ...), every method's mean metrics per tier, from the per-user score files alone.

Tiers are given by increasing edges e_1 < ... < e_{n-1}: tier 0 holds values <= e_1, tier i holds
e_i < value <= e_{i+1}, the last tier values > e_{n-1}. `quantile_edges` puts the edges at the
i/n quantiles of the values (repeated quantiles are merged, so heavily tied values give fewer tiers).
Per tier: users, the observed value range, the mean of each metric, a bootstrap CI of NDCG@10, and
the paired Wilcoxon p-value (and †/‡/§ marker) of each method against the reference on its users.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from r2rank_jax.eval import confidence, significance
from r2rank_jax.eval.per_user import METRICS

CI_RESAMPLES = 2000
TABLE_METRICS = ("ndcg@10", "hr@10", "mrr")
_HEADERS = {"ndcg@10": "NDCG@10", "hr@10": "HR@10", "mrr": "MRR"}


def quantile_edges(values: Sequence[float], num_tiers: int) -> list[float]:
    """Interior edges at the 1/n, ..., (n-1)/n quantiles of `values` (linear interpolation), deduplicated."""
    if num_tiers < 1:
        raise ValueError(f"need at least 1 tier, got {num_tiers}")
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no values to take quantiles of")
    qs = np.quantile(values, np.arange(1, num_tiers) / num_tiers) if num_tiers > 1 else []
    return sorted({float(q) for q in qs})


def parse_edges(text: str) -> list[float]:
    """``"5,20"`` -> [5.0, 20.0]; they must increase strictly."""
    try:
        edges = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--edges must be comma-separated numbers, got {text!r}") from None
    if not edges or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"--edges must be strictly increasing numbers, got {text!r}")
    return edges


def assign_tiers(values: Sequence[float], edges: Sequence[float]) -> np.ndarray:
    """`[N]` int tier of each value (module docstring: tier i = number of edges strictly below the value)."""
    return np.searchsorted(np.asarray(edges, dtype=np.float64), np.asarray(values, dtype=np.float64), side="left")


def tier_labels(edges: Sequence[float]) -> list[str]:
    g = [f"{e:g}" for e in edges]
    if not g:
        return ["all"]
    return [f"<= {g[0]}"] + [f"({a}, {b}]" for a, b in zip(g, g[1:])] + [f"> {g[-1]}"]


def stratify(per_user: Mapping[str, Mapping[str, np.ndarray]], values: Sequence[float], edges: Sequence[float],
             reference: str | None = None, seed: int = 0) -> dict:
    """per_user: method -> metric -> `[N]`; values `[N]`. Returns {"edges", "reference", "tiers": [...]}."""
    values = np.asarray(values, dtype=np.float64)
    names = list(per_user)
    for name in names:
        for m in METRICS:
            if len(per_user[name][m]) != len(values):
                raise ValueError(f"{name} {m}: {len(per_user[name][m])} users but {len(values)} values")
    reference = reference if reference in per_user else None
    tiers = assign_tiers(values, edges)
    out = []
    for t, label in enumerate(tier_labels(edges)):
        users = np.flatnonzero(tiers == t)
        entry: dict = {"tier": t, "label": label, "num_users": int(users.size),
                       "value_min": float(values[users].min()) if users.size else None,
                       "value_max": float(values[users].max()) if users.size else None, "methods": {}}
        for name in names:
            metrics: dict = {}
            if users.size:
                for m in METRICS:
                    metrics[m] = float(per_user[name][m][users].mean())
                lo, hi = confidence.bootstrap_ci(per_user[name]["ndcg@10"][users], num_resamples=CI_RESAMPLES, seed=seed)
                metrics["ndcg@10_ci"] = [float(lo), float(hi)]
                if reference is not None and name != reference:
                    p = significance.wilcoxon_p(per_user[name]["ndcg@10"][users], per_user[reference]["ndcg@10"][users])
                    metrics["ndcg@10_p_value"] = p
                    metrics["ndcg@10_marker"] = significance.marker(p)
            entry["methods"][name] = metrics
        out.append(entry)
    return {"edges": [float(e) for e in edges], "reference": reference, "tiers": out}


def render_markdown(title: str, what: str, result: dict) -> str:
    """One table per metric of `TABLE_METRICS`: rows = tiers, columns = methods (+ users per tier)."""
    tiers = result["tiers"]
    names = list(tiers[0]["methods"]) if tiers else []
    ref = result.get("reference")
    lines = [f"# {title}", "", what, ""]
    if ref:
        lines += [f"Markers: paired Wilcoxon on NDCG@10 against **{ref}** within the tier "
                  "(† p < 0.05, ‡ p < 0.01, § p < 0.001).", ""]
    for metric in TABLE_METRICS:
        lines += [f"## {_HEADERS[metric]}", "",
                  "| Tier | values | users | " + " | ".join(names) + " |", "|---|---|---:|" + "---:|" * len(names)]
        for tier in tiers:
            rng = ("-" if tier["value_min"] is None else f"{tier['value_min']:g}–{tier['value_max']:g}")
            cells = []
            for name in names:
                m = tier["methods"][name]
                if metric not in m:
                    cells.append("-")
                    continue
                mark = m.get("ndcg@10_marker", "") if metric == "ndcg@10" else ""
                cells.append(f"{m[metric]:.4f}{mark}")
            lines.append(f"| {tier['label']} | {rng} | {tier['num_users']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(result: dict, title: str, xlabel: str):
    """Grouped bars of NDCG@10 per tier and method, with the bootstrap CIs as error bars."""
    from r2rank_jax.analyses.common import figure

    fig, axes = figure()
    ax = axes[0, 0]
    tiers = [t for t in result["tiers"] if t["num_users"]]
    names = list(tiers[0]["methods"]) if tiers else []
    width = 0.8 / max(len(names), 1)
    x = np.arange(len(tiers))
    for j, name in enumerate(names):
        means = np.array([t["methods"][name]["ndcg@10"] for t in tiers])
        ci = np.array([t["methods"][name]["ndcg@10_ci"] for t in tiers]).reshape(-1, 2)
        err = np.stack([means - ci[:, 0], ci[:, 1] - means]).clip(min=0)
        ax.bar(x + (j - (len(names) - 1) / 2) * width, means, width, yerr=err, capsize=2, label=name)
    ax.set_xticks(x, [f"{t['label']}\n(n={t['num_users']})" for t in tiers])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("NDCG@10")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return fig
