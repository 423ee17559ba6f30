"""Evaluation: per-user metrics with a tie policy, bootstrap CIs, Wilcoxon tests, score files, reports.

    python -m r2rank_jax.eval --benchmark DIR --split test --scores NAME=PATH.jsonl ... --reference NAME --out DIR
"""
from r2rank_jax.eval.confidence import bootstrap_ci, normal_ci
from r2rank_jax.eval.evaluate import evaluate_score_files, evaluate_scores, mean_metrics
from r2rank_jax.eval.per_user import METRICS, per_user_metrics, tie_summary
from r2rank_jax.eval.report import build_results, render_markdown
from r2rank_jax.eval.score_files import align_scores, read_score_file, write_score_file
from r2rank_jax.eval.significance import marker, wilcoxon_p

__all__ = [
    "METRICS", "align_scores", "bootstrap_ci", "build_results", "evaluate_score_files", "evaluate_scores",
    "marker", "mean_metrics", "normal_ci", "per_user_metrics", "read_score_file", "render_markdown",
    "tie_summary", "wilcoxon_p", "write_score_file",
]
