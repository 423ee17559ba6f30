"""The paper's orderings: means, differences and exact Wilcoxon p-values against hand-computed values."""
import numpy as np
import pytest

from r2rank_jax.eval.orderings import Ordering, check_orderings, position_claim, render_markdown


def _rows(**values):
    return {name: {"ndcg@10": np.asarray(v, dtype=np.float64)} for name, v in values.items()}


def test_each_way_an_ordering_can_fall():
    base = [0.5] * 6
    per_user = _rows(
        base=base,
        ahead6=[0.5 + 0.01 * k for k in range(1, 7)],     # 6 users, all ahead, distinct gaps
        ahead5=[0.5 + 0.01 * k for k in range(1, 6)] + [0.5],   # 5 ahead, one tie (dropped)
        behind6=[0.5 - 0.01 * k for k in range(1, 7)],
        same=base,
    )
    got = check_orderings(per_user, [Ordering("ahead6", "base", "a"), Ordering("ahead5", "base", "b"),
                                     Ordering("behind6", "base", "c"), Ordering("same", "base", "d"),
                                     Ordering("ahead6", "tallrec", "e")])
    # Exact signed-rank null: every one of the 2^n sign patterns equally likely; all n signs one way is the
    # most extreme pattern, two-sided p = 2 / 2^n.
    a, b, c, d, e = got
    assert a["p_value"] == pytest.approx(2 / 2 ** 6) and a["verdict"] == "holds"
    assert a["mean_better"] == pytest.approx(0.5 + 0.21 / 6) and a["mean_worse"] == pytest.approx(0.5)
    assert a["diff"] == pytest.approx(0.21 / 6)
    assert b["p_value"] == pytest.approx(2 / 2 ** 5) and b["verdict"] == "not significant"
    assert c["p_value"] == pytest.approx(2 / 2 ** 6) and c["verdict"] == "reversed" and c["diff"] < 0
    assert d["p_value"] == 1.0 and d["verdict"] == "not significant" and d["diff"] == 0
    assert e == {"claim": "e", "better": "ahead6", "worse": "tallrec", "metric": "ndcg@10", "verdict": "pending",
                 "missing": ["tallrec"]}


def _position(ours_change, theirs_change, parse_rate=None):
    def entry(change, parse=None):
        e = {"max_abs_change_overall": change, "invariant": change <= 1e-5}
        if parse is not None:
            e["parse"] = {label: {"parse_rate": parse, "any_parse_rate": parse} for label in ("original", "1", "10", "20")}
        return e
    return {"positions": [1, 10, 20], "tolerance": 1e-5,
            "methods": {"r2rank": entry(ours_change), "zero_shot_listwise": entry(theirs_change, parse_rate)}}


def test_the_position_claim_reads_the_position_analysis():
    assert position_claim(_position(3e-7, 0.4, 0.9), "r2rank", "zero_shot_listwise")["verdict"] == "holds"
    assert position_claim(_position(2e-3, 0.4, 0.9), "r2rank", "zero_shot_listwise")["verdict"] == "fails"
    assert position_claim(_position(3e-7, 0.0, 0.9), "r2rank", "zero_shot_listwise")["verdict"] == "fails"
    # A listwise baseline that never parses scores every user's worst case, whatever the order.
    untestable = position_claim(_position(3e-7, 0.0, 0.0), "r2rank", "zero_shot_listwise")
    assert untestable["verdict"] == "untestable" and untestable["max_abs_change"] == 3e-7
    pending = position_claim(None, "r2rank", "zero_shot_listwise")
    assert pending["verdict"] == "pending" and pending["missing"] == ["r2rank", "zero_shot_listwise"]


def test_the_section_shows_every_claim():
    per_user = _rows(r2rank=[0.6, 0.7, 0.8, 0.9, 0.65, 0.75], sasrec=[0.5] * 6)
    entries = check_orderings(per_user, [Ordering("r2rank", "sasrec", "R2Rank > SASRec"),
                                         Ordering("r2rank", "tallrec", "R2Rank > TALLRec")])
    entries.append(position_claim(_position(3e-7, 0.0, 0.0), "r2rank", "zero_shot_listwise"))
    md = render_markdown(entries)
    assert "| R2Rank > SASRec | r2rank 0.7333 | sasrec 0.5000 | +0.2333 | 0.031 | holds |" in md
    assert "| R2Rank > TALLRec | r2rank | tallrec | – | – | pending (tallrec not evaluated yet) |" in md
    assert "**untestable**" in md and "never parsed" in md
