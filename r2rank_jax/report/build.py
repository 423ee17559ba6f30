"""`write_report(workdir, num_users, out)`: collect, draw, render, write (default WORKDIR/eval/report.html)."""
from __future__ import annotations

import pathlib

from r2rank_jax.report import collect, page, plots

DEFAULT_USERS = 20
REPORT = "report.html"


def build_html(workdir: str | pathlib.Path, num_users: int = DEFAULT_USERS) -> str:
    data = collect.collect(workdir, num_users)
    curves = plots.training_curves(data.metrics)
    analyses = [(name, plots.file_uri(path)) for name, path in data.analyses.items()]
    return page.render(data, curves, analyses)


def write_report(workdir: str | pathlib.Path, num_users: int = DEFAULT_USERS,
                 out: str | pathlib.Path | None = None) -> pathlib.Path:
    path = pathlib.Path(out) if out is not None else pathlib.Path(workdir) / "eval" / REPORT
    text = build_html(workdir, num_users)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
