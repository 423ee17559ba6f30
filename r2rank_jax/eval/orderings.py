"""The paper's orderings ("A > B") tested on one table's per-user metrics, whichever way they fall.

Each ordering names the row the paper finds better and the row it finds worse. On the same users it gets
both means, their difference and the paired two-sided Wilcoxon p-value (`significance.wilcoxon_p`), and a
verdict:

- `holds`: the paper's better row is ahead and p < alpha;
- `reversed`: the paper's worse row is ahead and p < alpha;
- `not significant`: p >= alpha;
- `pending`: a row is not in the table yet (`missing` names it).

The position claim (a pointwise scorer's scores do not depend on where the positive sits; the listwise
baseline's do) is read from the position analysis (`analyses.position`): `position_claim`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from r2rank_jax.eval.significance import TEST_NAME, wilcoxon_p

ALPHA = 0.05


@dataclasses.dataclass(frozen=True)
class Ordering:
    better: str          # the row the paper finds better
    worse: str
    claim: str           # e.g. "SFT&RL > RL-only (Table 3)"


def check_orderings(per_user: Mapping[str, Mapping[str, np.ndarray]], orderings: Sequence[Ordering],
                   metric: str = "ndcg@10", alpha: float = ALPHA) -> list[dict[str, Any]]:
    """One entry per ordering (module docstring). per_user: row -> metric -> `[N]` on the same users."""
    out = []
    for o in orderings:
        entry: dict[str, Any] = {"claim": o.claim, "better": o.better, "worse": o.worse, "metric": metric}
        missing = [row for row in (o.better, o.worse) if row not in per_user]
        if missing:
            entry.update(verdict="pending", missing=missing)
            out.append(entry)
            continue
        a = np.asarray(per_user[o.better][metric], dtype=np.float64)
        b = np.asarray(per_user[o.worse][metric], dtype=np.float64)
        p = wilcoxon_p(a, b)
        diff = float(a.mean() - b.mean())
        verdict = "not significant"
        if p < alpha and diff > 0:
            verdict = "holds"
        elif p < alpha and diff < 0:
            verdict = "reversed"
        entry.update(mean_better=float(a.mean()), mean_worse=float(b.mean()), diff=diff, p_value=p, verdict=verdict)
        out.append(entry)
    return out


def position_claim(position: Mapping[str, Any] | None, method: str, listwise: str) -> dict[str, Any]:
    """Whether `method`'s scores stay within the analysis' tolerance when the positive moves while `listwise`'s
    change: `holds`, `fails` (the method's change), `untestable` (the listwise baseline never parsed, so its
    worst-case scores cannot move), or `pending` (no position analysis yet)."""
    entry: dict[str, Any] = {"claim": f"{method}'s scores unchanged when the positive moves; {listwise}'s change",
                             "method": method, "listwise": listwise}
    methods = (position or {}).get("methods", {})
    if method not in methods or listwise not in methods:
        return {**entry, "verdict": "pending", "missing": [m for m in (method, listwise) if m not in methods]}
    ours, theirs = methods[method], methods[listwise]
    entry.update(positions=list(position["positions"]), tolerance=position["tolerance"],
                 max_abs_change=ours["max_abs_change_overall"], listwise_max_abs_change=theirs["max_abs_change_overall"])
    never_parsed = all(per and per.get("any_parse_rate") == 0 for per in theirs.get("parse", {}).values()) \
        and bool(theirs.get("parse"))
    if not ours["invariant"]:
        verdict = "fails"
    elif theirs["invariant"]:
        verdict = "untestable" if never_parsed else "fails"
    else:
        verdict = "holds"
    return {**entry, "verdict": verdict}


def _num(x: float) -> str:
    return f"{x:.4f}"


def render_markdown(entries: Sequence[Mapping[str, Any]], alpha: float = ALPHA) -> str:
    """The orderings as a markdown section (a `#` heading; the caller demotes it)."""
    lines = ["# The paper's orderings", "",
             f"Each claim on the rows above, {TEST_NAME}; verdict at p < {alpha:g}: `holds` (the paper's better row "
             "is ahead), `reversed` (the other row is ahead), `not significant`, `pending` (a row is not in the table "
             "yet).", "",
             "| claim | paper's better row | other row | difference | p | verdict |", "|---|---:|---:|---:|---:|---|"]
    for e in entries:
        if "better" not in e:
            continue
        if e["verdict"] == "pending":
            lines.append(f"| {e['claim']} | {e['better']} | {e['worse']} | – | – | pending ({', '.join(e['missing'])} "
                         "not evaluated yet) |")
            continue
        lines.append(f"| {e['claim']} | {e['better']} {_num(e['mean_better'])} | {e['worse']} {_num(e['mean_worse'])} "
                     f"| {e['diff']:+.4f} | {e['p_value']:.2g} | {e['verdict']} |")
    for e in entries:
        if "listwise" not in e:
            continue
        if e["verdict"] == "pending":
            lines += ["", f"Position claim ({e['claim']}): pending (no position analysis of "
                      f"{', '.join(e['missing'])} yet)."]
            continue
        lines += ["", f"Position claim ({e['claim']}, positive at {'/'.join(map(str, e['positions']))}, tolerance "
                  f"{e['tolerance']:g}): **{e['verdict']}**; max abs score change {e['max_abs_change']:.3g} "
                  f"({e['method']}) and {e['listwise_max_abs_change']:.3g} ({e['listwise']})."
                  + (" The listwise baseline never parsed, so its worst-case scores could not move."
                     if e["verdict"] == "untestable" else "")]
    return "\n".join(lines) + "\n"
