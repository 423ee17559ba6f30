"""The run report: one self-contained HTML file of a finished workdir (`python -m r2rank_jax.report`).

    collect.py   workdir files -> `ReportData` (results, config, metrics, analyses plots, sampled users)
    plots.py     training curves (matplotlib, PNG) and image files -> data URIs
    page.py      `ReportData` -> HTML (every data or model text escaped)
    assets.py    the inline CSS and JS (sort by score, filter by user)

`write_report(workdir)` writes WORKDIR/eval/report.html; the launcher calls it after the eval stage.
"""
from r2rank_jax.report.build import DEFAULT_USERS, write_report

__all__ = ["DEFAULT_USERS", "write_report"]
