"""Plots as data URIs: training curves drawn from metrics.jsonl records, and PNG files read as they are."""
from __future__ import annotations

import base64
import io
import math
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

# (stage, field, title) of the curves drawn when logged; any other stage's "loss" is drawn too.
CURVES = (
    ("sft", "loss", "SFT loss"),
    ("sft_eval", "eval_loss", "SFT validation loss"),
    ("sft_eval", "valid_ndcg@10", "SFT validation NDCG@10"),      # the pointwise LLM baselines (TALLRec, Prompt4NR)
    ("rl", "reward", "RL reward (NDCG@10 of sampled rankings)"),
    ("rl_eval", "valid_ndcg@10", "RL validation NDCG@10"),
    ("rl", "clip_frac", "RL PPO clip fraction"),
)
KNOWN_STAGES = {stage for stage, _, _ in CURVES}


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def file_uri(path: pathlib.Path) -> str:
    """A PNG file as a data URI (the analyses write PNG)."""
    data = path.read_bytes()
    if not data.startswith(b"\x89PNG"):
        raise ValueError(f"{path}: not a PNG file")
    return png_uri(data)


def series(records: Sequence[Mapping[str, Any]], field: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the finite numeric `field` values, in file order."""
    xs, ys = [], []
    for r in records:
        v, step = r.get(field), r.get("step")
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and isinstance(step, int):
            xs.append(float(step))
            ys.append(float(v))
    return xs, ys


def _draw(ax, xs: Sequence[float], ys: Sequence[float], title: str, ylabel: str) -> None:
    ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, markersize=3, linewidth=1.4, color="#3a6ea5")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return buf.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def curve_uri(xs: Sequence[float], ys: Sequence[float], title: str, ylabel: str) -> str:
    """A small line plot (markers when few points) as a PNG data URI."""
    fig, ax = _pyplot().subplots(figsize=(4.2, 2.6), dpi=90)
    _draw(ax, xs, ys, title, ylabel)
    return png_uri(_png(fig))


def _wanted(metrics: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[tuple[str, str, str]]:
    return list(CURVES) + [(s, "loss", f"{s} loss") for s in metrics if s not in KNOWN_STAGES]


def curves_png(metrics: Mapping[str, Sequence[Mapping[str, Any]]], title: str) -> bytes | None:
    """Every curve of `training_curves`, side by side in one PNG titled `title` (None when none was logged)."""
    logged = [(t, field, series(metrics.get(stage, ()), field)) for stage, field, t in _wanted(metrics)]
    logged = [(t, field, xy) for t, field, xy in logged if xy[0]]
    if not logged:
        return None
    fig, axes = _pyplot().subplots(1, len(logged), figsize=(3.4 * len(logged), 2.6), dpi=90, squeeze=False)
    for ax, (t, field, (xs, ys)) in zip(axes[0], logged):
        _draw(ax, xs, ys, t, field)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def training_curves(metrics: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[tuple[str, str]]:
    """[(title, data URI)] for every curve of `CURVES` that was logged, then other stages' losses."""
    out = []
    for stage, field, title in _wanted(metrics):
        xs, ys = series(metrics.get(stage, ()), field)
        if xs:
            out.append((title, curve_uri(xs, ys, title, field)))
    return out
