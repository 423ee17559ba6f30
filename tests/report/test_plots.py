"""The training-curve figure the study writes per trained method (report.plots.curves_png)."""
import io

import matplotlib.image

from r2rank_jax.report.plots import curves_png


def _image(png: bytes):
    return matplotlib.image.imread(io.BytesIO(png), format="png")


def test_one_panel_per_logged_curve_and_none_when_nothing_was_logged():
    sft = [{"stage": "sft", "step": s, "loss": 3.0 / s} for s in range(1, 21)]
    rl = [{"stage": "rl", "step": s, "reward": 0.1 * s, "clip_frac": 0.01} for s in range(1, 6)]
    one = curves_png({"sft": sft}, "sft only")
    three = curves_png({"sft": sft, "rl": rl}, "sft and rl")                 # SFT loss, RL reward, RL clip fraction
    assert one.startswith(b"\x89PNG") and three.startswith(b"\x89PNG")
    h1, w1 = _image(one).shape[:2]
    h3, w3 = _image(three).shape[:2]
    assert abs(h1 - h3) <= 0.2 * h1 and 2.5 < w3 / w1 < 3.5
    # TALLRec's and Prompt4NR's SFT validates by NDCG@10, not by a loss: a panel of its own.
    pointwise = curves_png({"sft": sft, "sft_eval": [{"stage": "sft_eval", "step": s, "valid_ndcg@10": 0.2} for s in (5, 10)]},
                           "pointwise")
    two_panels = _image(pointwise).shape[1] / w1
    assert two_panels > 1.5 and two_panels < 2.5
    assert curves_png({}, "nothing") is None
    assert curves_png({"eval": [{"stage": "eval", "step": 1, "ndcg@10": 0.5}]}, "no curve") is None
    # A non-finite value is left out, not drawn: a NaN-only curve gives no panel.
    assert curves_png({"sft": [{"stage": "sft", "step": 1, "loss": float("nan")}]}, "nan") is None
